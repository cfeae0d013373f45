"""Release and autograde the course's exercises with nbgrader, no JupyterHub needed.

``solutions/<lab>/<lab>.ipynb`` is the single source of every exercise (nbgrader metadata,
answers between ``### BEGIN SOLUTION`` / ``### END SOLUTION``, visible and hidden tests).
This module wraps nbgrader 0.9 for the three jobs around it:

* **release**: regenerate ``exercises/<lab>/`` from the source (``nbgrader
  generate_assignment``) and check that the committed copy has not drifted;
* **autograde** a batch of submissions, a folder with one sub-folder per student
  (``<student>/<lab>.ipynb`` or ``<student>/<lab>/<lab>.ipynb``) or a ``.zip`` of one, in
  a *grading workspace* (default ``results/grading/``): copy them into nbgrader's
  ``submitted/<student>/<lab>/`` layout, ``nbgrader autograde`` each student, write
  feedback HTML, export ``grades.csv``, and report one line per student;
* **feedback** and **export** again on their own.

A bad submission never stops the batch: a file that is not a notebook or a missing
notebook is reported and scores 0 without running; a syntax error, an endless loop (per-cell
timeout), a huge allocation (kernel memory limit, see :mod:`tinyml_course.grading_kernel`)
or an exception fails only its own cells; edited or deleted test cells are restored from
the gradebook by nbgrader before grading. Grading the same batch again gives the same
scores and leaves every other student's results in the gradebook.

The workspace is a plain nbgrader course folder: ``source/`` (a copy of the lab's
solution), ``release/``, ``submitted/``, ``autograded/``, ``feedback/``, ``gradebook.db``
(SQLite), ``grades.csv``, ``reports/<lab>.csv`` and ``logs/<lab>/<student>.log``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import difflib
import filecmp
import io
import json
import logging
import os
import re
import shutil
import stat
import sys
import tempfile
import time
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinyml_course.paths import repo_root, results_dir

CONFIG_FILE = "nbgrader_config.py"
_LAB_NAME = re.compile(r"^lab\d\d_[A-Za-z0-9_]+$")
_STUDENT_OK = re.compile(r"[^A-Za-z0-9._@-]")
_SKIP_NAMES = {"__MACOSX", ".ipynb_checkpoints", "__pycache__"}
_LOG = logging.getLogger("tinyml_course.grading.nbgrader")


class GradingError(RuntimeError):
    """Grading could not run at all (not a problem with one submission); the message says why."""


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
        ``"full"``, ``"partial"``, ``"zero"`` (graded), ``"invalid"`` (not a notebook),
        ``"missing"`` (no notebook) or ``"error"`` (nbgrader failed on it).
    reason : str
        Why points were lost, or what was wrong with the submission.
    seconds : float
        Wall time spent autograding this submission.
    """

    student: str
    score: float
    max_score: float
    status: str
    reason: str = ""
    seconds: float = 0.0


@dataclass
class _Submission:
    student: str
    folder: Path | None = None  # what to copy into submitted/<student>/<lab>/
    notebook: Path | None = None
    problem: str = ""  # non-empty: do not grade
    status: str = ""
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- paths and labs
def _root() -> Path:
    root = repo_root()
    if root is None or not (root / CONFIG_FILE).is_file():
        raise GradingError(
            f"the course repository (with {CONFIG_FILE} and solutions/) was not found; "
            "run grading from a clone of the course installed with `pip install -e .`."
        )
    return root


def list_labs() -> list[str]:
    """The labs with a source notebook ``solutions/<lab>/<lab>.ipynb``, sorted."""
    solutions = _root() / "solutions"
    return sorted(
        p.parent.name
        for p in solutions.glob("*/*.ipynb")
        if p.stem == p.parent.name and _LAB_NAME.match(p.stem)
    )


def _check_labs(labs: Sequence[str] | None) -> list[str]:
    known = list_labs()
    if not labs:
        return known
    unknown = [lab for lab in labs if lab not in known]
    if unknown:
        raise GradingError(f"unknown lab(s) {unknown}; the labs in solutions/ are {known}.")
    return list(labs)


@contextlib.contextmanager
def _nbgrader_environment() -> Iterator[None]:
    """The environment's ``bin/`` first on PATH (nbgrader runs ``alembic``), restored after."""
    saved = os.environ.get("PATH", "")
    bin_dir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bin_dir + os.pathsep + saved
    try:
        yield
    finally:
        os.environ["PATH"] = saved


def course_config(
    workspace: Path,
    *,
    timeout: int | None = None,
    memory_limit_mb: int | None = None,
) -> Any:
    """nbgrader configuration: the course's ``nbgrader_config.py`` with folders in ``workspace``.

    Parameters
    ----------
    workspace : Path
        The nbgrader course folder to work in (``source/``, ``release/``, ``submitted/``,
        ``autograded/``, ``feedback/``, ``gradebook.db``).
    timeout : int, optional
        Seconds allowed per cell (``Execute.timeout``); the config file's value otherwise.
    memory_limit_mb : int, optional
        Address-space limit of the grading kernel in MiB (0: none).

    Returns
    -------
    traitlets.config.Config

    Raises
    ------
    ValueError
        If ``timeout`` or ``memory_limit_mb`` is out of range.
    """
    from traitlets.config.loader import PyFileConfigLoader

    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds per cell; got {timeout}.")
    if memory_limit_mb is not None and memory_limit_mb < 0:
        raise ValueError(f"memory_limit_mb must be >= 0 (0: no limit); got {memory_limit_mb}.")
    root = _root()
    config = PyFileConfigLoader(CONFIG_FILE, path=str(root)).load_config()
    workspace = Path(workspace).resolve()
    cd = config.CourseDirectory
    cd.root = str(workspace)
    cd.source_directory = "source"
    cd.release_directory = "release"
    cd.submitted_directory = "submitted"
    cd.autograded_directory = "autograded"
    cd.feedback_directory = "feedback"
    cd.db_url = "sqlite:///" + str(workspace / "gradebook.db")
    config.HTMLExporter.template_name = "feedback"
    if timeout is not None:
        config.Execute.timeout = int(timeout)
    if memory_limit_mb is not None:
        config.LimitedExecute.memory_limit_mb = int(memory_limit_mb)
    return config


def _run(
    app_class: Any, config: Any, *, assignment: str, student: str = ".", **attrs: Any
) -> tuple[bool, str]:
    """Run one nbgrader converter; return (success, captured log and traceback)."""
    import traceback

    from nbgrader.coursedir import CourseDirectory

    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
    _LOG.addHandler(handler)
    _LOG.setLevel(logging.INFO)
    _LOG.propagate = False
    ok = True
    try:
        with _nbgrader_environment(), warnings.catch_warnings():
            # SQLAlchemy and nbformat warnings about nbgrader's own bookkeeping: not the user's business.
            warnings.simplefilter("ignore")
            coursedir = CourseDirectory(config=config, log=_LOG)
            coursedir.assignment_id = assignment
            coursedir.student_id = student
            app = app_class(coursedir=coursedir, config=config, log=_LOG)
            for name, value in attrs.items():
                setattr(app, name, value)
            app.start()
    except Exception:
        ok = False
        buffer.write(traceback.format_exc())
    finally:
        _LOG.removeHandler(handler)
    return ok, buffer.getvalue()


def _rmtree(path: Path) -> None:
    """Remove a tree, including nbgrader's read-only files."""

    def _writable(func: Any, name: str, _exc: Any) -> None:
        os.chmod(name, stat.S_IWRITE | stat.S_IREAD | stat.S_IEXEC)
        func(name)

    if path.exists():
        shutil.rmtree(path, onerror=_writable)


def _copy_source(lab: str, workspace: Path) -> None:
    """Snapshot ``solutions/<lab>/`` into ``<workspace>/source/<lab>/``."""
    target = workspace / "source" / lab
    _rmtree(target)
    shutil.copytree(
        _root() / "solutions" / lab, target, ignore=shutil.ignore_patterns(*_SKIP_NAMES)
    )


def generate_assignment(lab: str, workspace: Path) -> Path:
    """``nbgrader generate_assignment`` for one lab in ``workspace``; returns the release folder.

    The lab is (re)registered in the workspace's gradebook, with its hidden tests, which
    autograding restores into every submission.

    Raises
    ------
    GradingError
        If nbgrader fails, e.g. when the solution's cells changed after students were
        graded in this workspace (nbgrader then refuses to change the gradebook).
    """
    from nbgrader.converters import GenerateAssignment

    (lab,) = _check_labs([lab])
    workspace = Path(workspace).resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    _copy_source(lab, workspace)
    ok, log = _run(
        GenerateAssignment,
        course_config(workspace),
        assignment=lab,
        force=True,
        create_assignment=True,
    )
    if not ok:
        hint = ""
        if "because there are submissions" in log:
            hint = (
                f" The cells of solutions/{lab} changed after submissions were graded in {workspace}; "
                "grade the new version in a new --workspace (or delete that lab's submissions there)."
            )
        raise GradingError(f"nbgrader generate_assignment {lab} failed.{hint}\n{_tail(log)}")
    return workspace / "release" / lab


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# --------------------------------------------------------------------------- release
def _generated(labs: Sequence[str], scratch: Path) -> dict[str, Path]:
    return {lab: generate_assignment(lab, scratch) for lab in labs}


def release(labs: Sequence[str] | None = None) -> list[Path]:
    """Regenerate ``exercises/<lab>/`` from ``solutions/<lab>/`` for the labs (all by default).

    Generated into a scratch folder first, then copied over, so a failure never leaves a
    half-deleted exercise; files in ``exercises/<lab>/`` that the release no longer has are
    removed. Returns the updated exercise folders.
    """
    labs = _check_labs(labs)
    exercises = _root() / "exercises"
    out = []
    with tempfile.TemporaryDirectory(prefix="tinyml-release-") as tmp:
        for lab, generated in _generated(labs, Path(tmp)).items():
            target = exercises / lab
            target.mkdir(parents=True, exist_ok=True)
            fresh = {p.relative_to(generated) for p in generated.rglob("*") if p.is_file()}
            for old in [p for p in target.rglob("*") if p.is_file()]:
                if old.relative_to(target) not in fresh:
                    old.unlink()
            for rel in sorted(fresh):
                (target / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(generated / rel, target / rel)
            out.append(target)
    return out


def check_release(labs: Sequence[str] | None = None) -> list[str]:
    """Regenerate into a scratch folder and compare with the committed ``exercises/``.

    Returns
    -------
    list of str
        One line per drifted file (missing, extra, or differing, with the first changed
        lines); empty when everything matches.
    """
    labs = _check_labs(labs)
    exercises = _root() / "exercises"
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="tinyml-check-release-") as tmp:
        for lab, generated in _generated(labs, Path(tmp)).items():
            committed = exercises / lab
            fresh = {p.relative_to(generated) for p in generated.rglob("*") if p.is_file()}
            present = (
                {p.relative_to(committed) for p in committed.rglob("*") if p.is_file()}
                if committed.is_dir()
                else set()
            )
            for rel in sorted(fresh - present):
                problems.append(
                    f"exercises/{lab}/{rel}: missing (run `tinyml-course grade release {lab}`)"
                )
            for rel in sorted(present - fresh):
                problems.append(
                    f"exercises/{lab}/{rel}: not produced by the release any more (run `tinyml-course grade release {lab}`)"
                )
            for rel in sorted(fresh & present):
                if not filecmp.cmp(generated / rel, committed / rel, shallow=False):
                    diff = list(
                        difflib.unified_diff(
                            (committed / rel).read_text(errors="replace").splitlines(),
                            (generated / rel).read_text(errors="replace").splitlines(),
                            "committed",
                            "regenerated",
                            n=0,
                            lineterm="",
                        )
                    )
                    changed = [
                        line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")
                    ]
                    preview = " | ".join(line.strip()[:80] for line in changed[:4])
                    problems.append(
                        f"exercises/{lab}/{rel}: differs from solutions/{lab} ({len(changed)} changed lines: {preview}); "
                        f"run `tinyml-course grade release {lab}`"
                    )
    return problems


# --------------------------------------------------------------------------- collecting submissions
def _student_id(name: str) -> str:
    return _STUDENT_OK.sub("_", name.strip())


def _find_notebook(folder: Path, lab: str) -> tuple[Path | None, Path | None, str]:
    """(folder to copy, notebook, note) for one student's folder."""
    nested = folder / lab / f"{lab}.ipynb"
    if nested.is_file():
        return folder / lab, nested, ""
    flat = folder / f"{lab}.ipynb"
    if flat.is_file():
        return None, flat, ""
    candidates = [
        p
        for p in sorted(folder.rglob("*.ipynb"))
        if not any(
            part in _SKIP_NAMES or part.startswith(".") for part in p.relative_to(folder).parts
        )
    ]
    if len(candidates) == 1:
        return None, candidates[0], f"graded {candidates[0].relative_to(folder)} as {lab}.ipynb"
    return None, None, ""


def _unpack(submissions: Path, scratch: Path, lab: str) -> Path:
    """The folder that holds the student folders (a zip is extracted into ``scratch``)."""
    if submissions.is_file() and zipfile.is_zipfile(submissions):
        target = scratch / "unzipped"
        target.mkdir(parents=True)
        with zipfile.ZipFile(submissions) as archive:
            for member in archive.infolist():
                destination = (target / member.filename).resolve()
                if (
                    not str(destination).startswith(str(target.resolve()) + os.sep)
                    and destination != target.resolve()
                ):
                    raise GradingError(
                        f"{submissions}: member {member.filename!r} points outside the archive; not extracting it."
                    )
            archive.extractall(target)
        folder = target
        # A zip of one folder that holds the student folders: step into it.
        while True:
            entries = [
                p
                for p in folder.iterdir()
                if p.name not in _SKIP_NAMES and not p.name.startswith(".")
            ]
            if (
                len(entries) == 1
                and entries[0].is_dir()
                and entries[0].name != lab
                and not list(entries[0].glob("*.ipynb"))
                and all(p.is_dir() for p in entries[0].iterdir() if not p.name.startswith("."))
            ):
                folder = entries[0]
                continue
            return folder
    if submissions.is_dir():
        return submissions
    raise GradingError(
        f"submissions={str(submissions)!r} is neither a folder nor a .zip; give a folder with one "
        "sub-folder per student (<student>/<lab>.ipynb) or a zip of such folders."
    )


def collect(lab: str, folder: Path) -> list[_Submission]:
    """One entry per student sub-folder of ``folder``, with its notebook or the problem."""
    import nbformat

    subs: list[_Submission] = []
    seen: dict[str, str] = {}
    for entry in sorted(folder.iterdir()):
        if not entry.is_dir() or entry.name in _SKIP_NAMES or entry.name.startswith("."):
            continue
        student = _student_id(entry.name)
        sub = _Submission(student)
        if student in seen:
            sub.problem, sub.status = (
                f"two submission folders map to the id {student!r} ({seen[student]!r}, {entry.name!r})",
                "error",
            )
            subs.append(sub)
            continue
        seen[student] = entry.name
        if student != entry.name:
            sub.notes.append(f"folder {entry.name!r} graded as student {student!r}")
        copy_folder, notebook, note = _find_notebook(entry, lab)
        if note:
            sub.notes.append(note)
        if notebook is None:
            found = sorted(str(p.relative_to(entry)) for p in entry.rglob("*") if p.is_file())
            sub.problem, sub.status = (
                f"missing notebook: expected {entry.name}/{lab}.ipynb or {entry.name}/{lab}/{lab}.ipynb"
                + (f"; found {found[:5]}" if found else "; the folder is empty"),
                "missing",
            )
        else:
            try:
                nb = nbformat.read(notebook, as_version=4)
                nbformat.validate(nb)
            except Exception as err:  # not JSON, not a notebook, or an invalid one
                message = (
                    str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                )
                sub.problem, sub.status = (
                    f"{notebook.name} is not a valid notebook ({type(err).__name__}: {message[:160]})",
                    "invalid",
                )
            sub.folder, sub.notebook = copy_folder, notebook
        subs.append(sub)
    return subs


def _place(sub: _Submission, lab: str, workspace: Path) -> None:
    """Copy a submission into ``submitted/<student>/<lab>/`` (replacing an earlier one)."""
    target = workspace / "submitted" / sub.student / lab
    _rmtree(target)
    if sub.folder is not None:
        shutil.copytree(sub.folder, target, ignore=shutil.ignore_patterns(*_SKIP_NAMES))
    target.mkdir(parents=True, exist_ok=True)
    assert sub.notebook is not None
    if (
        sub.folder is None
        or sub.notebook.parent != sub.folder
        or sub.notebook.name != f"{lab}.ipynb"
    ):
        shutil.copyfile(sub.notebook, target / f"{lab}.ipynb")


# --------------------------------------------------------------------------- reading results
def _notebook_problems(notebook: Path) -> list[str]:
    """Errors in an autograded notebook's answer cells, then why each graded cell lost points."""
    try:
        cells = json.loads(notebook.read_text()).get("cells", [])
    except (OSError, ValueError):
        return []
    return _answer_problems(cells) + _cell_problems(cells)


def _cell_problems(cells: list[dict]) -> list[str]:
    """Why each graded cell of an autograded notebook lost its points."""
    problems = []
    for cell in cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if not meta.get("grade") or cell.get("cell_type") != "code":
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                name, value = output.get("ename", "error"), str(output.get("evalue", ""))
                if name == "CellTimeoutError" or "Timeout" in name:
                    what = "timed out (cell time limit)"
                elif name == "KeyboardInterrupt":
                    what = "interrupted (cell time limit)"
                else:
                    what = f"{name}: {value}".strip().rstrip(":")
                problems.append(f"{meta.get('grade_id')}: {what[:200]}")
                break
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                text = output.get("text", "")
                text = text if isinstance(text, str) else "".join(text)
                problems.append(
                    f"{meta.get('grade_id')}: wrote to stderr ({text.strip().splitlines()[0][:120] if text.strip() else ''})"
                )
                break
    return problems


def _answer_problems(cells: list[dict]) -> list[str]:
    """Errors raised in answer (solution) cells: often the root cause of failing tests."""
    problems = []
    for cell in cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade") or not meta.get("solution") or cell.get("cell_type") != "code":
            continue
        for output in cell.get("outputs", []):
            if (
                output.get("output_type") == "error"
                and output.get("ename") != "NotImplementedError"
            ):
                name, value = output.get("ename", "error"), str(output.get("evalue", ""))
                what = (
                    "timed out (cell time limit)"
                    if "Timeout" in name or name == "KeyboardInterrupt"
                    else f"{name}: {value}"
                )
                problems.append(f"in answer {meta.get('grade_id')}: {what[:160]}")
                break
    return problems


def _restore_deleted_cells(release: Path, target: Path) -> list[str]:
    """Put the release's cells that a submission deleted back in place; return what was restored.

    nbgrader restores deleted *test* cells only, and fails on the whole notebook when the
    cell before a deleted test cell is gone too (an answer deleted with its test). Putting
    every missing nbgrader cell of the release back first (answers blank, so their tests
    score 0) lets the rest of the notebook be graded.
    """
    import uuid

    import nbformat

    original = nbformat.read(release, as_version=4)
    nb = nbformat.read(target, as_version=4)

    def grade_id(cell: Any) -> str | None:
        return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")

    present = {grade_id(c) for c in nb.cells} - {None}
    ids = {c.get("id") for c in nb.cells}
    notes: list[str] = []
    previous: str | None = None
    for cell in original.cells:
        gid = grade_id(cell)
        if gid is None:
            continue
        if gid not in present:
            index = 0
            if previous is not None:
                index = next(i for i, c in enumerate(nb.cells) if grade_id(c) == previous) + 1
            restored = copy.deepcopy(cell)
            if restored.get("id") in ids:
                restored["id"] = uuid.uuid4().hex[:8]
            ids.add(restored.get("id"))
            nb.cells.insert(index, restored)
            present.add(gid)
            meta = cell.metadata["nbgrader"]
            if meta.get("solution") and not meta.get("locked"):
                notes.append(f"answer cell {gid} was deleted: restored blank")
            else:
                notes.append(f"locked cell {gid} was deleted: restored from the release")
        previous = gid
    if notes:
        nbformat.write(nb, target)
    return notes


def _tamper_notes(release: Path, submitted: Path) -> list[str]:
    """Locked cells of the release that the submission edited (nbgrader restores them)."""
    try:
        original = json.loads(release.read_text())
        handed_in = json.loads(submitted.read_text())
    except (OSError, ValueError):
        return []

    def cells(nb: dict, *, only_locked: bool) -> dict[str, str]:
        found = {}
        for cell in nb.get("cells", []):
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if meta.get("grade_id") and (meta.get("locked") or not only_locked):
                source = cell.get("source", "")
                found[meta["grade_id"]] = source if isinstance(source, str) else "".join(source)
        return found

    theirs = cells(handed_in, only_locked=False)
    notes = []
    for grade_id, source in cells(original, only_locked=True).items():
        if grade_id in theirs and theirs[grade_id].strip() != source.strip():
            notes.append(f"locked cell {grade_id} was edited: restored from the source")
    return notes


_KNOWN_FAILURES = {
    "add_missing_grade_cells": "deleted cells could not be put back",
    "DeadKernelError": "the kernel died while running it (os._exit, a crash, or the machine ran out of memory)",
    "UnresponsiveKernelError": "the kernel stopped responding and could not be interrupted",
    "ValidationError": "its nbgrader cell metadata is corrupted (cells copied or ids edited)",
    "Inconsistent checksums": "a locked cell could not be restored",
}


def _failure_reason(log: str) -> str:
    """The most telling line of a failed nbgrader run."""
    for key, text in _KNOWN_FAILURES.items():
        if key in log:
            return text
    errors = [
        line.strip()
        for line in log.splitlines()
        if re.match(r"^\s*[\w.]+(Error|Exception): ", line) and "NbGraderException" not in line
    ]
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    return (errors[-1] if errors else lines[-1] if lines else "unknown error")[:200]


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

    with _nbgrader_environment(), Gradebook("sqlite:///" + str(workspace / "gradebook.db")) as gb:
        gb.update_or_create_student(student)


# --------------------------------------------------------------------------- autograde
def autograde(
    lab: str,
    submissions: Path | str,
    *,
    workspace: Path | str | None = None,
    timeout: int | None = None,
    memory_limit_mb: int | None = None,
    feedback: bool = True,
    echo: bool = False,
) -> list[StudentResult]:
    """Autograde a batch of submissions of one lab; return one result per student.

    Parameters
    ----------
    lab : str
        The lab, e.g. ``"lab00_budget"`` (a folder of ``solutions/``).
    submissions : path
        A folder with one sub-folder per student, holding ``<lab>.ipynb`` or
        ``<lab>/<lab>.ipynb`` (a single other notebook is accepted and noted), or a
        ``.zip`` of such folders.
    workspace : path, optional
        The grading workspace (an nbgrader course folder); default ``results/grading``.
    timeout : int, optional
        Seconds per cell (default: ``nbgrader_config.py``'s ``Execute.timeout``).
    memory_limit_mb : int, optional
        Kernel address-space limit in MiB (default: ``LimitedExecute.memory_limit_mb``).
    feedback : bool
        Also write ``feedback/<student>/<lab>/<lab>.html``.
    echo : bool
        Print one progress line per student.

    Returns
    -------
    list of StudentResult
        Sorted by student. Also written to ``<workspace>/reports/<lab>.csv``; the
        gradebook's CSV export is ``<workspace>/grades.csv``.

    Raises
    ------
    GradingError
        If the lab is unknown, ``submissions`` is not a folder or zip, or the lab cannot
        be registered in the gradebook. Problems with single submissions never raise.
    """
    from nbgrader.converters import Autograde

    (lab,) = _check_labs([lab])
    workspace = Path(workspace).resolve() if workspace is not None else results_dir() / "grading"
    submissions = Path(submissions)
    if not submissions.exists():
        raise GradingError(
            f"submissions={str(submissions)!r} does not exist; give a folder of student folders or a .zip."
        )
    release_nb = generate_assignment(lab, workspace) / f"{lab}.ipynb"
    max_score = _assignment_max(workspace, lab)
    config = course_config(workspace, timeout=timeout, memory_limit_mb=memory_limit_mb)
    results: list[StudentResult] = []
    with tempfile.TemporaryDirectory(prefix="tinyml-grade-") as tmp:
        subs = collect(lab, _unpack(submissions, Path(tmp), lab))
        if not subs:
            raise GradingError(
                f"no student folders in {submissions}; expected <student>/{lab}.ipynb inside it."
            )
        for sub in subs:
            start = time.perf_counter()
            log_path = workspace / "logs" / lab / f"{sub.student}.log"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            if sub.problem:
                _register_student(workspace, sub.student)
                earlier = _gradebook_score(workspace, lab, sub.student)
                reason = sub.problem + (
                    "; an earlier graded submission stays in the gradebook" if earlier else ""
                )
                log_path.write_text(reason + "\n")
                result = StudentResult(
                    sub.student, 0.0, max_score, sub.status, "; ".join([reason, *sub.notes])
                )
            else:
                _place(sub, lab, workspace)
                try:
                    restored = _restore_deleted_cells(
                        release_nb, workspace / "submitted" / sub.student / lab / f"{lab}.ipynb"
                    )
                except Exception:  # leave the repair to nbgrader
                    restored = []
                ok, log = _run(
                    Autograde,
                    config,
                    assignment=lab,
                    student=sub.student,
                    force=True,
                    create_student=True,
                )
                log_path.write_text(log)
                score = _gradebook_score(workspace, lab, sub.student)
                graded = workspace / "autograded" / sub.student / lab / f"{lab}.ipynb"
                notes = [*sub.notes, *_tamper_notes(release_nb, sub.notebook), *restored]
                if not ok or score is None or not graded.is_file():
                    why = _failure_reason(log)
                    result = StudentResult(
                        sub.student,
                        0.0,
                        max_score,
                        "error",
                        "; ".join([f"nbgrader could not grade it: {why}", *notes]),
                    )
                else:
                    got, total = score
                    problems = _notebook_problems(graded)
                    status = "full" if got >= total > 0 else ("zero" if got <= 0 else "partial")
                    result = StudentResult(
                        sub.student, got, total, status, "; ".join([*problems, *notes])
                    )
            result = StudentResult(
                **{**result.__dict__, "seconds": round(time.perf_counter() - start, 1)}
            )
            results.append(result)
            if echo:
                print(
                    f"  {result.student}: {result.score:g}/{result.max_score:g} {result.status} ({result.seconds:.1f} s)",
                    flush=True,
                )
    graded_ok = [r.student for r in results if r.status in ("full", "partial", "zero")]
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

    workspace = Path(workspace).resolve() if workspace is not None else results_dir() / "grading"
    config = course_config(workspace)
    if students is None:
        students = (
            sorted(p.name for p in (workspace / "autograded").glob(f"*/{lab}") if p.is_dir())
            if (workspace / "autograded").is_dir()
            else []
        )
    written = []
    for student in students:
        ok, log = _run(GenerateFeedback, config, assignment=lab, student=student, force=True)
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

    workspace = Path(workspace).resolve() if workspace is not None else results_dir() / "grading"
    db = workspace / "gradebook.db"
    if not db.is_file():
        raise GradingError(
            f"no gradebook at {db}; autograde a batch first (tinyml-course grade autograde LAB SUBMISSIONS)."
        )
    path = Path(to) if to is not None else workspace / "grades.csv"
    with _nbgrader_environment(), Gradebook("sqlite:///" + str(db)) as gb:
        CsvExportPlugin(to=str(path), log=_LOG).export(gb)
    return path


def _write_report(path: Path, results: Sequence[StudentResult]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student", "score", "max_score", "status", "reason", "seconds"])
        for r in sorted(results, key=lambda r: r.student):
            writer.writerow([r.student, r.score, r.max_score, r.status, r.reason, r.seconds])


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


# --------------------------------------------------------------------------- command line
def _cmd_labs(args: argparse.Namespace) -> int:
    for lab in list_labs():
        print(lab)
    return 0


def _cmd_release(args: argparse.Namespace) -> int:
    for folder in release(args.labs):
        print(f"released {folder.relative_to(_root())}/")
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
        feedback=not args.no_feedback,
        echo=True,
    )
    workspace = Path(args.workspace).resolve() if args.workspace else results_dir() / "grading"
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
