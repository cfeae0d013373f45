"""``tinyml-course grade ...``: release labs, autograde submissions, feedback and export."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tinyml_course.cli import positive_int
from tinyml_course.grading.batch import (
    autograde_batch,
    export_grades,
    format_summary,
    format_table,
    generate_feedback,
)
from tinyml_course.grading.releases import check_release, release, release_student_tree
from tinyml_course.grading.workspace import GradingError, course_root, default_workspace, list_labs


def _cmd_labs(args: argparse.Namespace) -> int:
    for lab in list_labs():
        print(lab)
    return 0


def _cmd_release(args: argparse.Namespace) -> int:
    if args.student_tree:
        tree = release_student_tree(
            args.student_tree, labs=args.labs, solutions=args.solutions, overwrite=args.overwrite
        )
        print(f"student-only course (no solutions, no hidden tests) written to {tree}")
        return 0
    if args.solutions:
        raise GradingError(
            "--solutions only applies with --student-tree (exercises/ is released from solutions/)."
        )
    for folder in release(args.labs):
        print(f"released {folder.relative_to(course_root())}/")
    return 0


def _cmd_check_release(args: argparse.Namespace) -> int:
    problems = check_release(args.labs)
    for line in problems:
        print(line)
    if problems:
        print(
            f"{len(problems)} exercise file(s) drifted from solutions/; run `tinyml-course grade release`."
        )
        return 1
    print("exercises/ matches solutions/")
    return 0


def _cmd_autograde(args: argparse.Namespace) -> int:
    workspace = default_workspace(args.workspace)
    try:
        report = autograde_batch(
            args.lab,
            args.submissions,
            workspace=args.workspace,
            timeout=args.timeout,
            memory_limit_mb=args.memory_mb,
            sandbox=not args.no_sandbox,
            solutions=args.solutions,
            feedback=not args.no_feedback,
            echo=True,
            jobs=args.jobs,
            scheduler=args.scheduler,
            force=args.force,
            submission_timeout=args.submission_timeout,
        )
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: every submission recorded so far is complete in {workspace / 'gradebook.db'}; "
            "run the same command again to grade the rest.",
            file=sys.stderr,
        )
        return 130
    print(format_table(report.results))
    print(format_summary(report))
    print(
        f"gradebook {workspace / 'gradebook.db'}, grades {workspace / 'grades.csv'}, "
        f"feedback {workspace / 'feedback'}, report {workspace / 'reports' / (args.lab + '.csv')}"
    )
    return 0


def bench_command(args: argparse.Namespace) -> int:
    """``tinyml-course bench --grading N``: grade N submissions serially and in parallel, compare."""
    from tinyml_course.grading.bench import format_bench, run_bench

    def run(args: argparse.Namespace) -> int:
        result = run_bench(
            args.lab,
            submissions=args.grading,
            jobs=args.jobs,
            workspace=args.workspace,
            scheduler=args.scheduler,
            echo=True,
        )
        print(format_bench(result))
        return 0 if result["identical"] else 1

    return _main_guard(run)(args)


def _cmd_feedback(args: argparse.Namespace) -> int:
    for page in generate_feedback(
        args.lab, workspace=args.workspace, students=args.students or None
    ):
        print(page)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    print(export_grades(workspace=args.workspace, to=args.to))
    return 0


def _main_guard(func: Any) -> Any:
    def wrapped(args: argparse.Namespace) -> int:
        try:
            return int(func(args) or 0)
        except (GradingError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2

    return wrapped


def register(subparsers: Any) -> None:
    """Add ``tinyml-course grade ...`` to the course command line."""
    grade = subparsers.add_parser(
        "grade", help="release exercises and autograde submissions (nbgrader, no JupyterHub)"
    )
    sub = grade.add_subparsers(dest="grade_command", required=True)

    p = sub.add_parser("labs", help="list the labs in solutions/")
    p.set_defaults(func=_main_guard(_cmd_labs))

    p = sub.add_parser(
        "release", help="regenerate exercises/ from solutions/ (nbgrader generate_assignment)"
    )
    p.add_argument("labs", nargs="*", help="labs to release (default: all)")
    p.add_argument(
        "--student-tree",
        metavar="DIR",
        help="instead, write a student-only copy of the course to DIR (no solutions/, no hidden tests)",
    )
    p.add_argument(
        "--solutions",
        metavar="DIR",
        help="lab sources kept outside the course (with --student-tree)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace DIR if it is not empty")
    p.set_defaults(func=_main_guard(_cmd_release))

    p = sub.add_parser(
        "check-release", help="fail if the committed exercises/ drifted from solutions/"
    )
    p.add_argument("labs", nargs="*", help="labs to check (default: all)")
    p.set_defaults(func=_main_guard(_cmd_check_release))

    workspace_help = "grading workspace, an nbgrader course folder (default: results/grading)"
    p = sub.add_parser(
        "autograde",
        help="grade a folder or zip of student submissions, write feedback and grades.csv",
    )
    p.add_argument("lab", help="the lab, e.g. lab00_budget")
    p.add_argument(
        "submissions",
        help="folder with one sub-folder per student (<student>/<lab>.ipynb), or a .zip of them",
    )
    p.add_argument("--workspace", help=workspace_help)
    p.add_argument(
        "--timeout", type=int, help="seconds allowed per cell (default: nbgrader_config.py)"
    )
    p.add_argument(
        "--memory-mb",
        type=int,
        help="kernel address-space limit in MiB, 0 for none (default: nbgrader_config.py)",
    )
    p.add_argument("--no-feedback", action="store_true", help="skip the feedback HTML")
    p.add_argument(
        "--solutions",
        metavar="DIR",
        help="the lab sources, if kept outside the public course (default: solutions/)",
    )
    p.add_argument(
        "--no-sandbox",
        action="store_true",
        help="grade without the sandbox (only where it cannot run; results are marked unsandboxed)",
    )
    p.add_argument(
        "--jobs",
        "-j",
        type=positive_int,
        default=None,
        metavar="N",
        help="grade N submissions at once (local Dask workers; default 1). With --scheduler: "
        "at most N in flight (default: every worker thread of the cluster)",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="grade on a running Dask cluster (tcp://HOST:8786) instead of local workers",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="grade again submissions already graded from the same files and settings",
    )
    p.add_argument(
        "--submission-timeout",
        type=float,
        metavar="SECONDS",
        help="wall-clock limit of one whole submission (default: start-up + the cell limit per "
        "code cell); past it the submission is retried once, then reported as error",
    )
    p.set_defaults(func=_main_guard(_cmd_autograde))

    p = sub.add_parser("feedback", help="write feedback HTML for autograded students")
    p.add_argument("lab")
    p.add_argument("students", nargs="*", help="students (default: all autograded)")
    p.add_argument("--workspace", help=workspace_help)
    p.set_defaults(func=_main_guard(_cmd_feedback))

    p = sub.add_parser("export", help="export the gradebook to CSV")
    p.add_argument("--workspace", help=workspace_help)
    p.add_argument("--to", help="CSV path (default: <workspace>/grades.csv)")
    p.set_defaults(func=_main_guard(_cmd_export))
