"""Autograding a batch: every submission sandboxed, graded in parallel, one writer, one report.

:func:`autograde` (and :func:`autograde_batch`, which also returns the batch's timings)
registers the lab in the workspace's gradebook, collects the submissions, and hands each
one to the grading engine (:mod:`tinyml_course.grading.engine`: Dask, a local cluster of
``jobs`` workers or an existing cluster). A worker grades it in a scratch course of its own
(:func:`tinyml_course.grading.worker.grade_submission`: ``nbgrader autograde`` with the
kernel in the sandbox, hidden tests and the tamper scan decided outside it, the feedback
page) and sends back the graded notebook, the per-cell scores and the page as data. This
process alone writes the workspace: the gradebook (one transaction per submission, in which
Ctrl-C is held back until it is complete), ``submitted/``, ``autograded/``, ``feedback/``,
the verdicts, and a record of what was graded from which files
(``private/graded/<lab>/<student>.json``), so running the same batch again grades only
what is missing or changed (``force`` grades everything again).

``jobs=1`` goes through the same engine with one worker, so the serial and the parallel
batch are the same code: same scores, per-cell grades, feedback pages and CSV. A worker that
dies or a submission that runs past its time limit is retried once, then reported as
``error`` with the reason; a bad submission never stops the batch.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import signal
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tinyml_course.grading.releases import generate_assignment
from tinyml_course.grading.submissions import Submission, collect, submission_files, unpack
from tinyml_course.grading.workspace import (
    LOG,
    SKIP_NAMES,
    GradingError,
    check_labs,
    course_config,
    course_root,
    default_workspace,
    nbgrader_environment,
    private_dir,
    rmtree,
    run_app,
    solutions_dir,
)

GRADED = ("full", "partial", "zero", "flagged")
STATUSES = ("full", "partial", "zero", "flagged", "invalid", "missing", "error")


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
        (nbgrader failed on it, or grading did not finish even when retried).
    reason : str
        Why points were lost, or what was wrong with the submission.
    seconds : float
        Wall time a worker spent autograding this submission.
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


@dataclass
class BatchReport:
    """What :func:`autograde_batch` did.

    Attributes
    ----------
    lab : str
    results : list of StudentResult
        One per student, sorted by student.
    graded : list of str
        Students graded in this run (the others were invalid, missing, or already graded).
    skipped : list of str
        Students whose identical submission was already graded (``force`` regrades them).
    retried : list of str
        Students whose grading was retried (a worker died, or it ran past its limit).
    seconds : float
        Wall time of the whole call.
    grading_seconds : float
        Wall time from the first submission sent to the engine to the last one recorded.
    solution_seconds : float
        Time spent running the solution for its hidden results (0 when they were cached).
    engine : str
        Where it ran, e.g. ``"2 local workers"``.
    jobs : int
        Submissions graded at once (worker threads used).
    phases : dict
        Seconds summed over the submissions graded in this run, per phase: on the workers
        ``setup``, ``kernel_start``, ``cells`` (the notebook's own code), ``kernel_shutdown``,
        ``autograde`` (all of nbgrader's autograde, the phases above included), ``collect``,
        ``feedback``, ``cleanup``, ``worker_total``; in this process ``record``.
    """

    lab: str
    results: list[StudentResult] = field(default_factory=list)
    graded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)
    seconds: float = 0.0
    grading_seconds: float = 0.0
    solution_seconds: float = 0.0
    engine: str = ""
    jobs: int = 0
    phases: dict[str, float] = field(default_factory=dict)


def _gradebook_score(workspace: Path, lab: str, student: str) -> tuple[float, float] | None:
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook("sqlite:///" + str(workspace / "gradebook.db")) as gb:
        try:
            submission = gb.find_submission(lab, student)
        except MissingEntry:
            return None
        return float(submission.score or 0.0), float(submission.max_score or 0.0)


# --------------------------------------------------------------------------- keys and records
def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _task_key(lab_key: str, settings: dict[str, Any], student: str, files: dict) -> str:
    """Changes when the lab, the library, the grading settings or the submission's files do."""
    return _digest(
        {
            "lab": lab_key,
            "settings": settings,
            "student": student,
            "files": [
                (rel, hashlib.sha256(data).hexdigest(), mode)
                for rel, (data, mode) in sorted(files.items())
            ],
        }
    )


def _marker(workspace: Path, lab: str, student: str) -> Path:
    return private_dir(workspace) / "graded" / lab / f"{student}.json"


def _already_graded(
    gb: Any, workspace: Path, lab: str, student: str, key: str, feedback: bool
) -> StudentResult | None:
    """The recorded result when this exact submission was graded with these settings."""
    from nbgrader.api import MissingEntry

    from tinyml_course.grading.verdict import verdict_path

    path = _marker(workspace, lab, student)
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if stored.get("key") != key:
        return None
    result = StudentResult(**stored["result"])
    try:
        gb.find_submission(lab, student)
    except MissingEntry:
        return None
    if result.status in GRADED:
        needed = [
            workspace / "autograded" / student / lab / f"{lab}.ipynb",
            verdict_path(private_dir(workspace), lab, student),
        ]
        if feedback:
            needed.append(workspace / "feedback" / student / lab / f"{lab}.html")
        if not all(p.is_file() for p in needed):
            return None
    return result


@contextlib.contextmanager
def _hold_interrupt() -> Iterator[None]:
    """Ctrl-C waits until the block is done (then raises): a submission is recorded whole."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(
            signal.SIGINT, previous if previous is not None else signal.default_int_handler
        )
        if caught:
            raise KeyboardInterrupt


def _replay(gb: Any, lab: str, student: str, graded: Any, config: Any) -> None:
    """Write a worker's grades into the gradebook as nbgrader's autograde would have.

    ``SaveAutoGrades``: every graded cell's ``auto_score`` and ``needs_manual_grade`` (a cell
    an instructor scored by hand keeps that score and is marked for review), every answer
    cell's automatic comment; ``AssignLatePenalties``: the late penalty, from this gradebook's
    due dates and extensions. A submission nbgrader could not grade keeps no automatic score:
    every cell is marked for manual grading.
    """
    from nbgrader.preprocessors import AssignLatePenalties

    gb.update_or_create_student(student)
    extra = {"timestamp": graded.timestamp} if graded.timestamp else {}
    submission = gb.update_or_create_submission(lab, student, **extra)
    scores = {(nb, gid): (auto, manual) for nb, gid, auto, manual in graded.grades}
    comments = {(nb, gid): text for nb, gid, text in graded.comments}
    for notebook in submission.notebooks:
        for grade in notebook.grades:
            if graded.ok and (notebook.name, grade.name) in scores:
                auto, needs_manual = scores[(notebook.name, grade.name)]
                grade.auto_score = auto
                grade.needs_manual_grade = bool(needs_manual or grade.manual_score is not None)
            else:
                grade.auto_score = None
                grade.needs_manual_grade = True
        for comment in notebook.comments:
            comment.auto_comment = (
                comments.get((notebook.name, comment.name)) if graded.ok else None
            )
    gb.db.commit()
    if not graded.ok:
        return
    late = AssignLatePenalties(config=config)
    late.init_plugin()
    gb.db.expire_all()
    submission = gb.find_submission(lab, student)
    seconds_late = submission.total_seconds_late
    for notebook in submission.notebooks:
        notebook.late_submission_penalty = None
        if seconds_late > 0:
            penalty = late.plugin_inst.late_submission_penalty(
                student, notebook.score, seconds_late
            )
            if penalty is not None:
                notebook.late_submission_penalty = late._check_late_penalty(notebook, penalty)
    gb.db.commit()


def _edited_by_hand(gb: Any, lab: str, student: str) -> bool:
    """Manual scores, comments, extra credit or a late penalty: the worker's page would differ."""
    submission = gb.find_submission(lab, student)
    for notebook in submission.notebooks:
        if notebook.late_submission_penalty:
            return True
        if any(g.manual_score is not None or g.extra_credit for g in notebook.grades):
            return True
        if any(c.manual_comment for c in notebook.comments):
            return True
    return False


def _write_json(path: Path, value: Any, **kwargs: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, **kwargs))
    tmp.replace(path)


def _record(
    gb: Any,
    workspace: Path,
    lab: str,
    task: Any,
    graded: Any,
    *,
    config: Any,
    feedback: bool,
) -> tuple[float, float]:
    """Write one graded submission into the workspace (this process is its only writer).

    Returns the submission's (score, max_score) in the gradebook (a score an instructor gave
    by hand in an earlier round counts, as in nbgrader).
    """
    from tinyml_course.grading.verdict import verdict_path
    from tinyml_course.grading.worker import write_files

    student = task.student
    submitted = workspace / "submitted" / student / lab
    rmtree(submitted)
    write_files(submitted, task.files)
    log = workspace / "logs" / lab / f"{student}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(graded.log)
    out = workspace / "autograded" / student / lab
    rmtree(out)
    if graded.autograded:
        write_files(out, graded.autograded)
    verdict = verdict_path(private_dir(workspace), lab, student)
    verdict.unlink(missing_ok=True)
    if graded.verdict is not None:
        _write_json(verdict, graded.verdict, indent=1)
    _replay(gb, lab, student, graded, config)
    if feedback and graded.ok:
        if graded.feedback and not _edited_by_hand(gb, lab, student):
            page = workspace / "feedback" / student / lab
            rmtree(page)
            write_files(page, graded.feedback)
        else:
            generate_feedback(lab, workspace=workspace, students=[student])
    gb.db.expire_all()
    submission = gb.find_submission(lab, student)
    return float(submission.score or 0.0), float(submission.max_score or 0.0)


# --------------------------------------------------------------------------- results
def _result(
    sub: Submission,
    graded: Any,
    error: str,
    max_score: float,
    sandboxed: bool,
) -> StudentResult:
    """The report's line for one submission the engine handled."""
    notes = [*sub.notes, *(graded.notes if graded is not None else [])]
    if not sandboxed:
        notes.append("graded without the sandbox (--no-sandbox)")
    seconds = round(graded.seconds, 1) if graded is not None else 0.0
    if error:
        return StudentResult(
            sub.student,
            0.0,
            max_score,
            "error",
            "; ".join(
                [f"not graded: {error}; retried once, grade it again later or by hand", *notes]
            ),
            seconds,
            sandboxed,
        )
    if not graded.ok:
        return StudentResult(
            sub.student,
            0.0,
            max_score,
            "error",
            "; ".join([f"nbgrader could not grade it: {graded.failure}", *notes]),
            seconds,
            sandboxed,
        )
    got, total = graded.score, graded.max_score
    flags = [f"flagged: {flag}" for flag in graded.verdict.get("flags", [])]
    if flags:
        status = "flagged"
    else:
        status = "full" if got >= total > 0 else ("zero" if got <= 0 else "partial")
    return StudentResult(
        sub.student,
        got,
        total,
        status,
        "; ".join([*flags, *graded.problems, *notes]),
        seconds,
        sandboxed,
    )


def _problem_result(
    gb: Any, lab: str, sub: Submission, max_score: float, workspace: Path, sandboxed: bool
) -> StudentResult:
    """A submission that cannot be graded (invalid, missing): reported, never sent to a worker."""
    from nbgrader.api import MissingEntry

    try:
        gb.find_submission(lab, sub.student)
        earlier = True
    except MissingEntry:
        earlier = False
    reason = sub.problem + (
        "; an earlier graded submission stays in the gradebook" if earlier else ""
    )
    log = workspace / "logs" / lab / f"{sub.student}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(reason + "\n")
    _marker(workspace, lab, sub.student).unlink(missing_ok=True)
    return StudentResult(
        sub.student,
        0.0,
        max_score,
        sub.status,
        "; ".join([reason, *sub.notes]),
        sandboxed=sandboxed,
    )


def _deadline(files: dict, release_nb: Path, lab: str, config: Any) -> float:
    """A submission's wall-clock limit: start-up plus every code cell's time limit, plus slack."""

    def code_cells(data: bytes) -> int:
        try:
            return sum(c.get("cell_type") == "code" for c in json.loads(data).get("cells", []))
        except (ValueError, AttributeError):
            return 0

    cells = max(code_cells(files[f"{lab}.ipynb"][0]), code_cells(release_nb.read_bytes()))
    per_cell = float(config.Execute.get("timeout", 180) or 180)
    startup = float(config.Execute.get("startup_timeout", 120) or 120)
    return startup + (per_cell + 10.0) * max(cells, 1) + 120.0


class _Progress:
    """A progress bar (rate, time left) on a terminal; one line per submission either way."""

    def __init__(self, total: int, echo: bool, lab: str) -> None:
        from tqdm import tqdm

        self.total, self.echo, self.done = total, echo, 0
        self.counts: Counter[str] = Counter()
        self.start = time.perf_counter()
        self.bar = tqdm(
            total=total,
            desc=lab,
            unit="submission",
            disable=not (echo and total and sys.stderr.isatty()),
            file=sys.stderr,
            dynamic_ncols=True,
            mininterval=0.5,
        )

    def update(self, result: StudentResult) -> None:
        self.done += 1
        self.counts[result.status] += 1
        if not self.echo:
            return
        elapsed = time.perf_counter() - self.start
        left = elapsed / self.done * (self.total - self.done)
        line = (
            f"  [{self.done}/{self.total}, {_clock(elapsed)} elapsed, ~{_clock(left)} left] "
            f"{result.student}: {result.score:g}/{result.max_score:g} {result.status} "
            f"({result.seconds:.1f} s)"
        )
        if result.status == "error":
            line += f": {result.reason[:160]}"
        self.bar.write(line, file=sys.stdout)
        self.bar.set_postfix_str(
            " ".join(f"{k}={self.counts[k]}" for k in STATUSES if self.counts[k]), refresh=False
        )
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


# --------------------------------------------------------------------------- the batch
def autograde_batch(
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
    jobs: int | None = None,
    scheduler: Any = None,
    force: bool = False,
    submission_timeout: float | None = None,
) -> BatchReport:
    """Autograde a batch of submissions of one lab, in parallel; return the results and timings.

    Parameters are those of :func:`autograde`.

    Returns
    -------
    BatchReport
        The per-student results, who was graded now, skipped or retried, and where the
        time went.

    Raises
    ------
    GradingError
        As :func:`autograde`.
    KeyboardInterrupt
        When interrupted: every submission recorded so far is complete in the gradebook,
        the CSVs are written, and running the same batch again grades the rest.
    """
    from nbgrader.api import Gradebook

    from tinyml_course.grading.engine import Engine, require_dask
    from tinyml_course.grading.sandbox import sandbox_status
    from tinyml_course.grading.verdict import _fingerprint, expected_path
    from tinyml_course.grading.worker import (
        EnvironmentMismatch,
        LabBundle,
        SubmissionTask,
        grade_submission,
        library_digest,
        read_files,
        run_solution,
        write_files,
    )
    from tinyml_course.grading.workspace import CONFIG_FILE

    begin = time.perf_counter()
    (lab,) = check_labs([lab], solutions)
    workspace = default_workspace(workspace)
    submissions = Path(submissions)
    if not submissions.exists():
        raise GradingError(
            f"submissions={str(submissions)!r} does not exist; give a folder of student folders or a .zip."
        )
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ValueError(
            f"jobs must be a positive integer (submissions graded at once); got {jobs!r}."
        )
    if submission_timeout is not None and not submission_timeout > 0:
        raise ValueError(
            f"submission_timeout must be a positive number of seconds; got {submission_timeout!r}."
        )
    if sandbox and scheduler is None:  # the kernels run on this machine
        ok, why = sandbox_status()
        if not ok:
            raise GradingError(f"cannot sandbox the grading kernels: {why}")
    require_dask()
    config = course_config(
        workspace, timeout=timeout, memory_limit_mb=memory_limit_mb, sandbox=sandbox
    )
    config.DecideHiddenTests.private_dir = str(private_dir(workspace))
    # The engine's own local workers run these very files; other workers must match them.
    library = library_digest() if scheduler is not None else None
    source = {
        rel: data
        for rel, data in read_files(solutions_dir(solutions) / lab).items()
        if not any(part in SKIP_NAMES for part in rel.split("/"))
    }
    settings = {
        "timeout": timeout,
        "memory_limit_mb": memory_limit_mb,
        "sandbox": bool(sandbox),
        "config": hashlib.sha256((course_root() / CONFIG_FILE).read_bytes()).hexdigest(),
    }
    report = BatchReport(lab)
    results: dict[str, StudentResult] = {}

    def finish() -> BatchReport:
        export_grades(workspace=workspace)
        report.results = sorted(results.values(), key=lambda r: r.student)
        _write_report(workspace / "reports" / f"{lab}.csv", report.results)
        report.seconds = time.perf_counter() - begin
        return report

    with contextlib.ExitStack() as stack:
        # Workers start, import nbgrader and build the lab's template while this process
        # registers the lab and collects the submissions.
        engine = stack.enter_context(Engine(jobs=jobs, scheduler=scheduler))
        preflight = engine.start_preflight(
            library, sandbox, LabBundle(lab, source, config, library)
        )
        release_nb = generate_assignment(lab, workspace, solutions) / f"{lab}.ipynb"
        lab_key = _fingerprint(workspace / "source" / lab / f"{lab}.ipynb")
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="tinyml-grade-"))
        subs = sorted(collect(lab, unpack(submissions, Path(tmp), lab)), key=lambda s: s.student)
        if not subs:
            raise GradingError(
                f"no student folders in {submissions}; expected <student>/{lab}.ipynb inside it."
            )
        stack.enter_context(nbgrader_environment())
        stack.enter_context(warnings.catch_warnings())
        # SQLAlchemy warnings about nbgrader's own bookkeeping (as in run_app).
        warnings.simplefilter("ignore")
        gb = stack.enter_context(Gradebook("sqlite:///" + str(workspace / "gradebook.db")))
        for sub in subs:  # in order, so every export lists students the same way
            gb.update_or_create_student(sub.student)
        max_score = float(gb.find_assignment(lab).max_score)
        todo: list[SubmissionTask] = []
        meta: dict[str, tuple[Submission, str]] = {}
        for sub in subs:
            if sub.problem:
                results[sub.student] = _problem_result(gb, lab, sub, max_score, workspace, sandbox)
                continue
            files = submission_files(sub, lab)
            key = _task_key(lab_key, settings, sub.student, files)
            done = (
                None if force else _already_graded(gb, workspace, lab, sub.student, key, feedback)
            )
            if done is not None:
                results[sub.student] = done
                report.skipped.append(sub.student)
                continue
            deadline = submission_timeout or _deadline(files, release_nb, lab, config)
            todo.append(SubmissionTask(sub.student, files, feedback, float(deadline)))
            meta[sub.student] = (sub, key)
        if echo:
            print(
                f"{lab}: {len(subs)} student(s): {len(todo)} to grade, "
                f"{len(report.skipped)} already graded (--force grades them again), "
                f"{len(subs) - len(todo) - len(report.skipped)} without a gradable notebook",
                flush=True,
            )
        if not todo:
            return finish()
        try:
            preflight()
            report.engine, report.jobs = engine.describe(), engine.slots()
            if echo:
                for note in engine.notes:
                    print(f"{lab}: note: {note}", flush=True)
            records = None
            cache = expected_path(private_dir(workspace), lab)
            if cache.is_file():
                stored = json.loads(cache.read_text())
                if stored.get("fingerprint") == lab_key:
                    records = stored["records"]
            if records is None:
                if echo:
                    print(
                        f"{lab}: the solution's hidden results (computed once per lab version) ...",
                        flush=True,
                    )
                start = time.perf_counter()
                (solved,) = engine.map(
                    run_solution,
                    [LabBundle(lab, source, config, library)],
                    name=lambda bundle: bundle.lab,
                    fatal=(EnvironmentMismatch, GradingError),
                )
                if solved.error:
                    raise GradingError(
                        f"the solution of {lab} could not run in the grader: {solved.error}"
                    )
                records = solved.value["records"]
                _write_json(cache, {"fingerprint": lab_key, "records": records})
                report.solution_seconds = time.perf_counter() - start
            bundle = LabBundle(lab, source, config, library, records)
            if echo:
                print(f"{lab}: grading on {report.engine}", flush=True)
            bar = _Progress(len(todo), echo, lab)

            def record(outcome: Any) -> None:
                task, graded = outcome.item, outcome.value
                sub, key = meta[task.student]
                start = time.perf_counter()
                with _hold_interrupt():
                    marker = _marker(workspace, lab, task.student)
                    marker.unlink(missing_ok=True)
                    if outcome.error:
                        submitted = workspace / "submitted" / task.student / lab
                        rmtree(submitted)
                        write_files(submitted, task.files)
                        result = _result(sub, None, outcome.error, max_score, sandbox)
                    else:
                        graded.score, graded.max_score = _record(
                            gb, workspace, lab, task, graded, config=config, feedback=feedback
                        )
                        result = _result(sub, graded, "", max_score, sandbox)
                        _write_json(marker, {"key": key, "result": asdict(result)})
                results[task.student] = result
                report.graded.append(task.student)
                if outcome.attempts > 1:
                    report.retried.append(task.student)
                if graded is not None and not outcome.error:
                    for phase, seconds in graded.timings.items():
                        report.phases[phase] = report.phases.get(phase, 0.0) + seconds
                    report.phases["worker_total"] = (
                        report.phases.get("worker_total", 0.0) + graded.seconds
                    )
                report.phases["record"] = (
                    report.phases.get("record", 0.0) + time.perf_counter() - start
                )
                bar.update(result)

            grading = time.perf_counter()
            try:
                engine.map(
                    grade_submission,
                    todo,
                    args=(bundle,),
                    name=lambda task: task.student,
                    time_limit=lambda task: (
                        2 * task.deadline + 180.0
                    ),  # (behind one on a multi-thread worker)
                    retry=lambda graded: (
                        f"did not finish within its time limit of {graded.seconds:.0f} s"
                        if graded.hung
                        else ""
                    ),
                    fatal=(EnvironmentMismatch, GradingError),
                    on_outcome=record,
                )
            finally:
                bar.close()
                report.grading_seconds = time.perf_counter() - grading
        except KeyboardInterrupt:
            finish()
            raise
        return finish()


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
    jobs: int | None = None,
    scheduler: Any = None,
    force: bool = False,
    submission_timeout: float | None = None,
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
        Print progress (a progress bar with the rate and the time left, one line per student).
    jobs : int, optional
        Submissions graded at once: worker processes of the local cluster (default 1), or,
        with ``scheduler``, the most to grade at once (default: one per worker of the cluster).
    scheduler : str or distributed.Client, optional
        Grade on an existing Dask cluster: its scheduler's address (``tcp://host:8786``) or
        a connected client. Default: a local cluster of ``jobs`` workers, started and
        stopped here.
    force : bool
        Grade every submission again, also those already graded from the same files with
        the same lab version and settings (by default they keep their recorded result).
    submission_timeout : float, optional
        Wall-clock seconds for one submission, all its cells together (default: the kernel's
        start-up time plus the per-cell limit for each code cell, plus slack). A submission
        past it is stopped, retried once, then reported as ``error``.

    Returns
    -------
    list of StudentResult
        Sorted by student. Also written to ``<workspace>/reports/<lab>.csv``; the
        gradebook's CSV export is ``<workspace>/grades.csv``.

    Raises
    ------
    GradingError
        If the lab is unknown, ``submissions`` is not a folder or zip, the sandbox is asked
        for but cannot run here (or on a worker), a worker runs another version of the
        course, the solution fails under the grader, or the lab cannot be registered in the
        gradebook. Problems with single submissions never raise.
    """
    return autograde_batch(
        lab,
        submissions,
        workspace=workspace,
        solutions=solutions,
        timeout=timeout,
        memory_limit_mb=memory_limit_mb,
        sandbox=sandbox,
        feedback=feedback,
        echo=echo,
        jobs=jobs,
        scheduler=scheduler,
        force=force,
        submission_timeout=submission_timeout,
    ).results


def format_summary(report: BatchReport) -> str:
    """Counts per status, and how the batch went (graded, skipped, retried, throughput)."""
    counts = Counter(r.status for r in report.results)
    lines = [
        f"{report.lab}: {len(report.results)} student(s): "
        + ", ".join(f"{counts[s]} {s}" for s in STATUSES)
    ]
    if report.graded:
        rate = len(report.graded) / report.grading_seconds * 60 if report.grading_seconds else 0.0
        lines.append(
            f"graded {len(report.graded)} in {report.grading_seconds:.1f} s on {report.engine} "
            f"({rate:.1f} submissions/min); whole run {report.seconds:.1f} s"
        )
    else:
        lines.append("nothing to grade")
    if report.skipped:
        lines.append(
            f"{len(report.skipped)} already graded from the same files and settings, kept "
            "(--force grades them again)"
        )
    if report.retried:
        lines.append(f"retried once: {', '.join(report.retried)}")
    return "\n".join(lines)


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
