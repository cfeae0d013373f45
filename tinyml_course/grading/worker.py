"""What a grading worker does: one submission in, its graded notebook and scores out, as data.

The expensive, sandboxed part of autograding runs here, on a worker of the grading engine
(:mod:`tinyml_course.grading.engine`: a Dask worker on this machine or another one), never
in the process that owns the gradebook. Each call works in a private scratch folder: the
submission's files (sent with the task) go into an nbgrader course of its own, with a
*template* (the lab's source, its release and a gradebook with only the lab registered),
``nbgrader autograde`` runs there exactly as it would in the workspace (the kernel in the
sandbox, hidden tests decided outside it, the tamper scan), then feedback is rendered, and
everything the client needs travels back: the graded folder and the feedback page as bytes,
each graded cell's score and comment, the verdict and the log. The scratch folder is deleted.

Shared between the submissions a worker grades, because none of it can carry anything from
one submission to the next: the worker's Python process (nbgrader, nbconvert and SQLAlchemy
imported once), the template (built once per lab version, read-only afterwards) and the
solution's expected hidden results. Never shared: the kernel, its sandbox, its ``/tmp``, the
scratch course and its gradebook; every submission gets new ones.

Everything here is a plain function of picklable arguments (:class:`LabBundle`,
:class:`SubmissionTask`), so the engine can ship it to any machine with the course
environment installed (the same commit: :func:`worker_check` compares the library).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import platform
import shutil
import socket
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from tinyml_course.paths import PACKAGE_DIR, repo_root

Files = dict[str, tuple[bytes, int]]  # relative POSIX path -> (content, permission bits)


class EnvironmentMismatch(RuntimeError):
    """A worker's course environment differs from the client's: grading there would not be fair."""


def library_digest() -> str:
    """SHA-256 over the course library's Python files (what the verdict's fingerprint uses)."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE_DIR).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _datasets_digest() -> str:
    root = repo_root()
    sums = root / "datasets" / "SHA256SUMS" if root is not None else None
    if sums is None or not sums.is_file():
        return "none"
    return hashlib.sha256(sums.read_bytes()).hexdigest()


def worker_check(sandbox: bool, warm: LabBundle | None = None) -> dict[str, Any]:
    """What the client checks on every worker before it sends work; also warms the worker up.

    Parameters
    ----------
    sandbox : bool
        Check that the grading sandbox works here.
    warm : LabBundle, optional
        Build the lab's template now (:func:`template`), while the client prepares the batch.

    Returns
    -------
    dict
        ``host``, ``pid``, ``python``, ``nbgrader`` versions, the ``library`` and
        ``datasets`` digests, and ``sandbox``: ``[ok, reason]`` (checked only when asked).
    """
    import nbgrader

    if sandbox:
        from tinyml_course.grading.sandbox import sandbox_status

        ok, why = sandbox_status()
    else:
        ok, why = True, "not asked for (--no-sandbox)"
    info = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "python": platform.python_version(),
        "nbgrader": nbgrader.__version__,
        "library": library_digest(),
        "datasets": _datasets_digest(),
        "sandbox": [ok, why],
    }
    if warm is not None and (warm.library is None or warm.library == info["library"]):
        template(warm)
    return info


# --------------------------------------------------------------------------- what travels
@dataclass(frozen=True)
class LabBundle:
    """One lab, as every worker needs it: sent once per batch.

    Attributes
    ----------
    lab : str
        The lab's name.
    source : dict
        The files of ``<solutions>/<lab>/`` (relative path -> (bytes, mode)).
    config : traitlets.config.Config
        The client's nbgrader configuration (time-outs, limits, sandbox); the worker points
        its folders at its scratch course.
    library : str, optional
        The client's :func:`library_digest`; a worker with another library refuses. None
        skips the check (the engine's own local workers run the client's files).
    records : dict, optional
        The solution's hidden-test results (None while computing them).
    """

    lab: str
    source: Files
    config: Any
    library: str | None
    records: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        """Identifies the lab's files, configuration and library (the worker's template).

        The expected results are not part of it: they are installed into the template when
        they change (:func:`template`).
        """
        digest = hashlib.sha256(self.lab.encode())
        for rel, (data, mode) in sorted(self.source.items()):
            digest.update(f"{rel}\0{mode}\0".encode())
            digest.update(hashlib.sha256(data).digest())
        digest.update(json.dumps(_config_dict(self.config), sort_keys=True, default=str).encode())
        digest.update(str(self.library).encode())
        return digest.hexdigest()[:32]


@dataclass(frozen=True)
class SubmissionTask:
    """One student's submission, as collected: what a worker grades.

    Attributes
    ----------
    student : str
        The student id.
    files : dict
        The files to put in ``submitted/<student>/<lab>/`` (``<lab>.ipynb`` among them).
    feedback : bool
        Also render the feedback page.
    deadline : float
        Wall-clock seconds for the whole submission; past it the kernel is killed and the
        result says so (``hung``).
    """

    student: str
    files: Files
    feedback: bool = True
    deadline: float = 3600.0


@dataclass
class GradedSubmission:
    """What a worker sends back for one submission (all plain data).

    ``ok`` is false when nbgrader could not grade it (``failure`` says why); ``hung`` when
    it ran past ``SubmissionTask.deadline``. ``grades`` holds ``(notebook, grade_id,
    auto_score, needs_manual_grade)`` and ``comments`` ``(notebook, grade_id, auto_comment)``
    for every graded cell, as nbgrader's ``SaveAutoGrades`` wrote them into the scratch
    gradebook. ``timings`` splits ``seconds`` into phases (see :mod:`~tinyml_course.grading.bench`).
    """

    student: str
    ok: bool
    log: str
    score: float = 0.0
    max_score: float = 0.0
    timestamp: str | None = None
    grades: list[tuple[str, str, float | None, bool]] = field(default_factory=list)
    comments: list[tuple[str, str, str | None]] = field(default_factory=list)
    verdict: dict[str, Any] | None = None
    autograded: Files = field(default_factory=dict)
    feedback: Files = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    failure: str = ""
    hung: bool = False
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    worker: str = ""


# --------------------------------------------------------------------------- files as data
def read_files(folder: Path) -> Files:
    """Every regular file under ``folder`` (symlinks are skipped), as :data:`Files`."""
    out: Files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        out[path.relative_to(folder).as_posix()] = (path.read_bytes(), path.stat().st_mode & 0o777)
    return out


def write_files(folder: Path, files: Files) -> None:
    """Write :data:`Files` under ``folder``; a path that would leave it is refused."""
    folder.mkdir(parents=True, exist_ok=True)
    for rel, (data, mode) in sorted(files.items()):
        parts = PurePosixPath(rel).parts
        if not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
            raise ValueError(f"refusing to write {rel!r} outside {folder}")
        target = folder.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            target.chmod(0o644)
            target.unlink()
        target.write_bytes(data)
        target.chmod(mode or 0o644)


# --------------------------------------------------------------------------- the template
_TEMPLATES: OrderedDict[str, Path] = OrderedDict()
_TEMPLATE_LOCK = threading.Lock()
# One grading at a time per worker process, even on a worker with several threads: nbgrader's
# log, os.environ and the kernel watch are per process (start workers with --nthreads 1).
_GRADING_LOCK = threading.Lock()
_KEEP_TEMPLATES = 4


def _config_dict(config: Any) -> dict[str, Any]:
    return {section: dict(values) for section, values in dict(config).items()}


def _configure(bundle: LabBundle, root: Path, scratch: Path | None) -> Any:
    """The bundle's config with nbgrader's folders in ``root`` (and ``scratch`` per submission)."""
    import copy

    config = copy.deepcopy(bundle.config)
    cd = config.CourseDirectory
    cd.root = str(root)
    cd.source_directory = "source"
    cd.release_directory = "release"
    place = scratch if scratch is not None else root
    cd.submitted_directory = str(place / "submitted")
    cd.autograded_directory = str(place / "autograded")
    cd.feedback_directory = str(place / "feedback")
    cd.db_url = "sqlite:///" + str(place / "gradebook.db")
    config.DecideHiddenTests.private_dir = str(place / "private")
    return config


def _check_library(bundle: LabBundle) -> None:
    if bundle.library is None:
        return
    mine = library_digest()
    if mine != bundle.library:
        raise EnvironmentMismatch(
            f"the course library on worker {socket.gethostname()} (pid {os.getpid()}) differs from "
            f"the client's ({mine[:12]} vs {bundle.library[:12]}); install the same commit of "
            "the course there (pip install -e '.[instructor]' in the same clone) and restart it."
        )


def template(bundle: LabBundle) -> Path:
    """This worker's read-only course for the bundle's lab, built on first use.

    ``source/<lab>/`` (the bundle's files), ``release/<lab>/`` and ``gradebook.db`` (from
    ``nbgrader generate_assignment``, so the lab's cells and checksums are nbgrader's own),
    and ``private/expected/<lab>.json`` when the bundle carries the expected results.
    """
    from nbgrader.converters import GenerateAssignment

    from tinyml_course.grading.workspace import GradingError, rmtree, run_app, tail

    key = bundle.key
    with _TEMPLATE_LOCK:
        if key in _TEMPLATES and _TEMPLATES[key].is_dir():
            _TEMPLATES.move_to_end(key)
            root = _TEMPLATES[key]
        else:
            root = Path(tempfile.mkdtemp(prefix="tinyml-grading-template-"))
            atexit.register(rmtree, root)
            try:
                write_files(root / "source" / bundle.lab, bundle.source)
                ok, log = run_app(
                    GenerateAssignment,
                    _configure(bundle, root, None),
                    assignment=bundle.lab,
                    force=True,
                    create_assignment=True,
                )
                if not ok:
                    raise GradingError(
                        f"nbgrader generate_assignment {bundle.lab} failed on worker "
                        f"{socket.gethostname()}:\n{tail(log)}"
                    )
            except BaseException:
                rmtree(root)
                raise
            _TEMPLATES[key] = root
            while len(_TEMPLATES) > _KEEP_TEMPLATES:
                _, old = _TEMPLATES.popitem(last=False)
                rmtree(old)
        if bundle.records is not None:
            _install_expected(root, bundle)
        return root


def _install_expected(root: Path, bundle: LabBundle) -> None:
    """Put the bundle's expected results into the template (if they are not there already)."""
    from tinyml_course.grading.verdict import _fingerprint, expected_path

    cache = expected_path(root / "private", bundle.lab)
    source_nb = root / "source" / bundle.lab / f"{bundle.lab}.ipynb"
    content = json.dumps({"fingerprint": _fingerprint(source_nb), "records": bundle.records})
    if not cache.is_file() or cache.read_text() != content:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(content)


# --------------------------------------------------------------------------- the tasks
def run_solution(bundle: LabBundle) -> dict[str, Any]:
    """Run the lab's solution in the sandbox and return its hidden-test results.

    Returns ``{"records": ..., "seconds": ..., "worker": ...}``; raises
    :class:`~tinyml_course.grading.workspace.GradingError` when the solution fails.
    """
    with _GRADING_LOCK:
        return _run_solution(bundle)


def _run_solution(bundle: LabBundle) -> dict[str, Any]:
    from tinyml_course.grading.verdict import expected_results
    from tinyml_course.grading.workspace import rmtree

    start = time.perf_counter()
    _check_library(bundle)
    root = template(bundle)
    scratch = Path(tempfile.mkdtemp(prefix="tinyml-grading-solution-"))
    try:
        config = _configure(bundle, root, scratch)
        records = expected_results(
            root / "source" / bundle.lab / f"{bundle.lab}.ipynb",
            scratch / "private",
            config=config,
            force=True,
        )
    finally:
        rmtree(scratch)
    return {
        "records": records,
        "seconds": time.perf_counter() - start,
        "worker": f"{socket.gethostname()}:{os.getpid()}",
    }


def _read_gradebook(db: Path, lab: str, student: str) -> dict[str, Any] | None:
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook("sqlite:///" + str(db)) as gb:
        try:
            submission = gb.find_submission(lab, student)
        except MissingEntry:
            return None
        grades, comments = [], []
        for notebook in submission.notebooks:
            for grade in notebook.grades:
                grades.append(
                    (
                        notebook.name,
                        grade.name,
                        grade.auto_score,
                        bool(grade.needs_manual_grade),
                    )
                )
            for comment in notebook.comments:
                comments.append((notebook.name, comment.name, comment.auto_comment))
        return {
            "score": float(submission.score or 0.0),
            "max_score": float(submission.max_score or 0.0),
            "timestamp": submission.timestamp.isoformat() if submission.timestamp else None,
            "grades": sorted(grades, key=lambda g: (g[0], g[1])),
            "comments": sorted(comments, key=lambda c: (c[0], c[1])),
        }


def grade_submission(bundle: LabBundle, task: SubmissionTask) -> GradedSubmission:
    """Autograde one submission in a scratch course; return everything the client records.

    Never raises for a problem of the submission (that is a result with ``ok`` false); raises
    :class:`EnvironmentMismatch` when this worker's library differs from the client's, and
    lets other errors of the worker itself propagate (the engine retries them once).
    """
    with _GRADING_LOCK:
        return _grade_submission(bundle, task)


def _grade_submission(bundle: LabBundle, task: SubmissionTask) -> GradedSubmission:
    from nbgrader.converters import Autograde, GenerateFeedback

    from tinyml_course.grading.diagnose import (
        edited_locked_cells,
        failure_reason,
        notebook_problems,
    )
    from tinyml_course.grading.restore import deleted_cells
    from tinyml_course.grading.sandbox import KernelWatch
    from tinyml_course.grading.verdict import expected_path, verdict_path
    from tinyml_course.grading.workspace import rmtree, run_app

    start = time.perf_counter()
    timings: dict[str, float] = {}
    lab, student = bundle.lab, task.student
    _check_library(bundle)
    mark = time.perf_counter()
    root = template(bundle)
    scratch = Path(tempfile.mkdtemp(prefix="tinyml-grading-"))
    try:
        shutil.copyfile(root / "gradebook.db", scratch / "gradebook.db")
        expected = expected_path(root / "private", lab)
        if expected.is_file():
            target = expected_path(scratch / "private", lab)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(expected, target)
        config = _configure(bundle, root, scratch)
        submitted = scratch / "submitted" / student / lab
        write_files(submitted, task.files)
        release_nb = root / "release" / lab / f"{lab}.ipynb"
        notebook = submitted / f"{lab}.ipynb"
        notes = [*edited_locked_cells(release_nb, notebook), *deleted_cells(release_nb, notebook)]
        timings["setup"] = time.perf_counter() - mark

        mark = time.perf_counter()
        with KernelWatch(task.deadline) as watch:
            ok, log = run_app(
                Autograde, config, assignment=lab, student=student, force=True, create_student=True
            )
        timings.update(watch.phases)
        timings["autograde"] = time.perf_counter() - mark

        mark = time.perf_counter()
        graded_dir = scratch / "autograded" / student / lab
        graded_nb = graded_dir / f"{lab}.ipynb"
        verdict_file = verdict_path(scratch / "private", lab, student)
        book = _read_gradebook(scratch / "gradebook.db", lab, student)
        ok = ok and book is not None and graded_nb.is_file() and verdict_file.is_file()
        result = GradedSubmission(
            student,
            ok=ok,
            log=log,
            notes=notes,
            hung=watch.fired,
            worker=f"{socket.gethostname()}:{os.getpid()}",
        )
        if book is not None:
            result.score, result.max_score = book["score"], book["max_score"]
            result.timestamp = book["timestamp"]
            result.grades, result.comments = book["grades"], book["comments"]
        if graded_dir.is_dir():
            result.autograded = read_files(graded_dir)
        if ok:
            result.verdict = json.loads(verdict_file.read_text())
            result.problems = notebook_problems(graded_nb)
        else:
            result.failure = failure_reason(log)
        timings["collect"] = time.perf_counter() - mark

        if ok and task.feedback:
            mark = time.perf_counter()
            done, feedback_log = run_app(
                GenerateFeedback, config, assignment=lab, student=student, force=True
            )
            page_dir = scratch / "feedback" / student / lab
            if done and (page_dir / f"{lab}.html").is_file():
                result.feedback = read_files(page_dir)
            else:
                result.log += "\n[feedback]\n" + feedback_log
            timings["feedback"] = time.perf_counter() - mark
    finally:
        mark = time.perf_counter()
        rmtree(scratch)
        timings["cleanup"] = time.perf_counter() - mark
    result.timings = timings
    result.seconds = time.perf_counter() - start
    return result


def probe_kernel(
    config: Any, code: str = "import tinyml_course\nfrom tinyml_course import keras"
) -> dict[str, float]:
    """Time a bare graded kernel on this worker: its start, and running ``code`` in it.

    The benchmark's reference for what every submission pays before its own code runs
    (``kernel_start``) and for importing TensorFlow with tf-keras, as every lab does (``code``,
    timed as ``cells``). Runs in the sandbox (or only
    under limits) exactly as a submission's kernel does.
    """
    import nbformat

    from tinyml_course.grading.sandbox import KernelWatch, SandboxedExecute, autograde_environment
    from tinyml_course.grading.workspace import rmtree

    folder = Path(tempfile.mkdtemp(prefix="tinyml-grading-probe-"))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    try:
        with autograde_environment(), KernelWatch(600) as watch:
            executed, _ = SandboxedExecute(config=config).preprocess(
                nb, {"metadata": {"path": str(folder)}}
            )
    finally:
        rmtree(folder)
    errors = [o for o in executed.cells[0].outputs if o.get("output_type") == "error"]
    if errors:
        raise RuntimeError(
            f"the probe kernel failed: {errors[0].get('ename')}: {errors[0].get('evalue')}"
        )
    return dict(watch.phases)
