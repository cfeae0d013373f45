"""``tinyml-course grade ...``: release labs, autograde submissions, feedback and export."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from tinyml_course.grading.batch import (
    autograde,
    export_grades,
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
    start = time.perf_counter()
    results = autograde(
        args.lab,
        args.submissions,
        workspace=args.workspace,
        timeout=args.timeout,
        memory_limit_mb=args.memory_mb,
        sandbox=not args.no_sandbox,
        solutions=args.solutions,
        feedback=not args.no_feedback,
        echo=True,
    )
    workspace = default_workspace(args.workspace)
    print(format_table(results))
    print(
        f"{len(results)} submission(s) in {time.perf_counter() - start:.1f} s; gradebook {workspace / 'gradebook.db'}, "
        f"grades {workspace / 'grades.csv'}, feedback {workspace / 'feedback'}, report {workspace / 'reports' / (args.lab + '.csv')}"
    )
    return 0


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
