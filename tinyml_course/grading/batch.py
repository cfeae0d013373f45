"""Autograding a batch: every submission sandboxed, hidden tests decided outside, one report.

:func:`autograde` registers the lab in the workspace's gradebook, computes the solution's
hidden results once (:func:`tinyml_course.grading.verdict.expected_results`), copies every
submission into nbgrader's ``submitted/<student>/<lab>/`` layout, runs ``nbgrader autograde``
for each student (kernel in the sandbox, :mod:`tinyml_course.grading.sandbox`; hidden tests
and the tamper scan decided by :class:`~tinyml_course.grading.verdict.DecideHiddenTests`),
writes feedback, exports the grades and reports one line per student. A bad submission never
stops the batch; grading the same batch again gives the same scores and keeps every other
student's results.
"""

from __future__ import annotations

import csv
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tinyml_course.grading.diagnose import (
    edited_locked_cells,
    failure_reason,
    notebook_problems,
)
from tinyml_course.grading.releases import generate_assignment
from tinyml_course.grading.restore import deleted_cells
from tinyml_course.grading.submissions import Submission, collect, place, unpack
from tinyml_course.grading.workspace import (
    LOG,
    GradingError,
    check_labs,
    course_config,
    default_workspace,
    nbgrader_environment,
    private_dir,
    run_app,
)


@dataclass(frozen=True)
class StudentResult:
    """One student's outcome in an autograde batch.

    Attributes
    ----------
    student : str
        The student id (the submission folder's name).
    score, max_score : float
        Points from the gradebook (0 when the submission could not be graded).
    status : str
        ``"full"``, ``"partial"``, ``"zero"`` (graded), ``"flagged"`` (graded, and the
        tamper scan found something: the tests it could have influenced score 0; review
        it), ``"invalid"`` (not a notebook), ``"missing"`` (no notebook) or ``"error"``
        (nbgrader failed on it).
    reason : str
        Why points were lost, or what was wrong with the submission.
    seconds : float
        Wall time spent autograding this submission.
    sandboxed : bool
        Whether its kernel ran in the grading sandbox (``--no-sandbox``: false).
    """

    student: str
    score: float
    max_score: float
    status: str
    reason: str = ""
    seconds: float = 0.0
    sandboxed: bool = True


def _gradebook_score(workspace: Path, lab: str, student: str) -> tuple[float, float] | None:
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook("sqlite:///" + str(workspace / "gradebook.db")) as gb:
        try:
            submission = gb.find_submission(lab, student)
        except MissingEntry:
            return None
        return float(submission.score or 0.0), float(submission.max_score or 0.0)


def _assignment_max(workspace: Path, lab: str) -> float:
    from nbgrader.api import Gradebook

    with Gradebook("sqlite:///" + str(workspace / "gradebook.db")) as gb:
        return float(gb.find_assignment(lab).max_score)


def _register_student(workspace: Path, student: str) -> None:
    from nbgrader.api import Gradebook

    with nbgrader_environment(), Gradebook("sqlite:///" + str(workspace / "gradebook.db")) as gb:
        gb.update_or_create_student(student)


def _grade_one(
    sub: Submission, lab: str, workspace: Path, config: Any, release_nb: Path, sandboxed: bool
) -> StudentResult:
    """Grade one collected submission; never raises for a problem of the submission."""
    from nbgrader.converters import Autograde

    from tinyml_course.grading.verdict import verdict_path

    log_path = workspace / "logs" / lab / f"{sub.student}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if sub.problem:
        _register_student(workspace, sub.student)
        earlier = _gradebook_score(workspace, lab, sub.student)
        reason = sub.problem + (
            "; an earlier graded submission stays in the gradebook" if earlier else ""
        )
        log_path.write_text(reason + "\n")
        max_score = _assignment_max(workspace, lab)
        return StudentResult(
            sub.student,
            0.0,
            max_score,
            sub.status,
            "; ".join([reason, *sub.notes]),
            sandboxed=sandboxed,
        )
    place(sub, lab, workspace)
    submitted = workspace / "submitted" / sub.student / lab / f"{lab}.ipynb"
    restored = deleted_cells(release_nb, submitted)
    verdict_file = verdict_path(private_dir(workspace), lab, sub.student)
    verdict_file.unlink(missing_ok=True)
    ok, log = run_app(
        Autograde, config, assignment=lab, student=sub.student, force=True, create_student=True
    )
    log_path.write_text(log)
    score = _gradebook_score(workspace, lab, sub.student)
    graded = workspace / "autograded" / sub.student / lab / f"{lab}.ipynb"
    assert sub.notebook is not None
    notes = [*sub.notes, *edited_locked_cells(release_nb, sub.notebook), *restored]
    if not sandboxed:
        notes.append("graded without the sandbox (--no-sandbox)")
    if not ok or score is None or not graded.is_file() or not verdict_file.is_file():
        why = failure_reason(log)
        return StudentResult(
            sub.student,
            0.0,
            _assignment_max(workspace, lab),
            "error",
            "; ".join([f"nbgrader could not grade it: {why}", *notes]),
            sandboxed=sandboxed,
        )
    got, total = score
    verdict = json.loads(verdict_file.read_text())
    flags = [f"flagged: {flag}" for flag in verdict.get("flags", [])]
    if flags:
        status = "flagged"
    else:
        status = "full" if got >= total > 0 else ("zero" if got <= 0 else "partial")
    problems = notebook_problems(graded)
    return StudentResult(
        sub.student, got, total, status, "; ".join([*flags, *problems, *notes]), sandboxed=sandboxed
    )


def autograde(
    lab: str,
    submissions: Path | str,
    *,
    workspace: Path | str | None = None,
    solutions: Path | str | None = None,
    timeout: int | None = None,
    memory_limit_mb: int | None = None,
    sandbox: bool = True,
    feedback: bool = True,
    echo: bool = False,
) -> list[StudentResult]:
    """Autograde a batch of submissions of one lab; return one result per student.

    Parameters
    ----------
    lab : str
        The lab, e.g. ``"lab00_budget"`` (a folder of the solutions).
    submissions : path
        A folder with one sub-folder per student, holding ``<lab>.ipynb`` or
        ``<lab>/<lab>.ipynb`` (a single other notebook is accepted and noted), or a
        ``.zip`` of such folders.
    workspace : path, optional
        The grading workspace (an nbgrader course folder); default ``results/grading``.
    solutions : path, optional
        The folder holding ``<lab>/<lab>.ipynb`` sources, when the instructor keeps them
        outside the public course (default: the course's ``solutions/``).
    timeout : int, optional
        Seconds per cell (default: ``nbgrader_config.py``'s ``Execute.timeout``).
    memory_limit_mb : int, optional
        Kernel address-space limit in MiB (default: ``SandboxedExecute.memory_limit_mb``).
    sandbox : bool
        Run every kernel in the grading sandbox (default). False grades without isolation;
        every result is then marked unsandboxed.
    feedback : bool
        Also write ``feedback/<student>/<lab>/<lab>.html``.
    echo : bool
        Print progress.

    Returns
    -------
    list of StudentResult
        Sorted by student. Also written to ``<workspace>/reports/<lab>.csv``; the
        gradebook's CSV export is ``<workspace>/grades.csv``.

    Raises
    ------
    GradingError
        If the lab is unknown, ``submissions`` is not a folder or zip, the sandbox is asked
        for but cannot run here, the solution fails under the grader, or the lab cannot be
        registered in the gradebook. Problems with single submissions never raise.
    """
    from tinyml_course.grading.sandbox import sandbox_status
    from tinyml_course.grading.verdict import expected_results

    (lab,) = check_labs([lab], solutions)
    workspace = default_workspace(workspace)
    submissions = Path(submissions)
    if not submissions.exists():
        raise GradingError(
            f"submissions={str(submissions)!r} does not exist; give a folder of student folders or a .zip."
        )
    if sandbox:
        ok, why = sandbox_status()
        if not ok:
            raise GradingError(f"cannot sandbox the grading kernels: {why}")
    release_nb = generate_assignment(lab, workspace, solutions) / f"{lab}.ipynb"
    config = course_config(
        workspace, timeout=timeout, memory_limit_mb=memory_limit_mb, sandbox=sandbox
    )
    config.DecideHiddenTests.private_dir = str(private_dir(workspace))
    if echo:
        print(
            f"{lab}: the solution's hidden results (computed once per lab version) ...", flush=True
        )
    expected_results(
        workspace / "source" / lab / f"{lab}.ipynb", private_dir(workspace), config=config
    )
    results: list[StudentResult] = []
    with tempfile.TemporaryDirectory(prefix="tinyml-grade-") as tmp:
        subs = collect(lab, unpack(submissions, Path(tmp), lab))
        if not subs:
            raise GradingError(
                f"no student folders in {submissions}; expected <student>/{lab}.ipynb inside it."
            )
        for sub in subs:
            start = time.perf_counter()
            result = _grade_one(sub, lab, workspace, config, release_nb, sandbox)
            result = replace(result, seconds=round(time.perf_counter() - start, 1))
            results.append(result)
            if echo:
                print(
                    f"  {result.student}: {result.score:g}/{result.max_score:g} {result.status} ({result.seconds:.1f} s)",
                    flush=True,
                )
    graded_ok = [r.student for r in results if r.status in ("full", "partial", "zero", "flagged")]
    if feedback and graded_ok:
        generate_feedback(lab, workspace=workspace, students=graded_ok)
    export_grades(workspace=workspace)
    _write_report(workspace / "reports" / f"{lab}.csv", results)
    return sorted(results, key=lambda r: r.student)


def generate_feedback(
    lab: str, *, workspace: Path | str | None = None, students: Sequence[str] | None = None
) -> list[Path]:
    """``nbgrader generate_feedback``: one HTML page per autograded student.

    Returns the feedback files written (``<workspace>/feedback/<student>/<lab>/<lab>.html``).
    """
    from nbgrader.converters import GenerateFeedback

    workspace = default_workspace(workspace)
    config = course_config(workspace)
    if students is None:
        students = (
            sorted(p.name for p in (workspace / "autograded").glob(f"*/{lab}") if p.is_dir())
            if (workspace / "autograded").is_dir()
            else []
        )
    written = []
    for student in students:
        ok, log = run_app(GenerateFeedback, config, assignment=lab, student=student, force=True)
        page = workspace / "feedback" / student / lab / f"{lab}.html"
        if ok and page.is_file():
            written.append(page)
        else:
            (workspace / "logs" / lab).mkdir(parents=True, exist_ok=True)
            (workspace / "logs" / lab / f"{student}.feedback.log").write_text(log)
    return written


def export_grades(*, workspace: Path | str | None = None, to: Path | str | None = None) -> Path:
    """``nbgrader export``: every student and assignment of the gradebook to CSV.

    Students with no submission get 0. Returns the CSV path (default ``<workspace>/grades.csv``).
    """
    from nbgrader.api import Gradebook
    from nbgrader.plugins.export import CsvExportPlugin

    workspace = default_workspace(workspace)
    db = workspace / "gradebook.db"
    if not db.is_file():
        raise GradingError(
            f"no gradebook at {db}; autograde a batch first (tinyml-course grade autograde LAB SUBMISSIONS)."
        )
    path = Path(to) if to is not None else workspace / "grades.csv"
    with nbgrader_environment(), Gradebook("sqlite:///" + str(db)) as gb:
        CsvExportPlugin(to=str(path), log=LOG).export(gb)
    return path


def _write_report(path: Path, results: Sequence[StudentResult]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["student", "score", "max_score", "status", "reason", "seconds", "sandboxed"]
        )
        for r in sorted(results, key=lambda r: r.student):
            writer.writerow(
                [
                    r.student,
                    r.score,
                    r.max_score,
                    r.status,
                    r.reason,
                    r.seconds,
                    "yes" if r.sandboxed else "no",
                ]
            )


def format_table(results: Sequence[StudentResult]) -> str:
    """The per-student results as a text table."""
    width = max([len("student"), *(len(r.student) for r in results)])
    lines = [
        f"{'student':<{width}}  {'score':>7}  {'max':>5}  {'status':<8} reason",
        "-" * (width + 40),
    ]
    for r in results:
        lines.append(
            f"{r.student:<{width}}  {r.score:>7g}  {r.max_score:>5g}  {r.status:<8} {r.reason}"
        )
    return "\n".join(lines)
