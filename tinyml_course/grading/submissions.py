"""Collecting submissions: a folder (or zip) of student folders into nbgrader's layout."""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from tinyml_course.grading.workspace import SKIP_NAMES, GradingError, rmtree

_STUDENT_OK = re.compile(r"[^A-Za-z0-9._@-]")


@dataclass
class Submission:
    """One student's folder: what to grade, or why it cannot be graded."""

    student: str
    folder: Path | None = None  # what to copy into submitted/<student>/<lab>/
    notebook: Path | None = None
    problem: str = ""  # non-empty: do not grade
    status: str = ""
    notes: list[str] = field(default_factory=list)


def student_id(name: str) -> str:
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
            part in SKIP_NAMES or part.startswith(".") for part in p.relative_to(folder).parts
        )
    ]
    if len(candidates) == 1:
        return None, candidates[0], f"graded {candidates[0].relative_to(folder)} as {lab}.ipynb"
    return None, None, ""


def unpack(submissions: Path, scratch: Path, lab: str) -> Path:
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
                if p.name not in SKIP_NAMES and not p.name.startswith(".")
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


def collect(lab: str, folder: Path) -> list[Submission]:
    """One entry per student sub-folder of ``folder``, with its notebook or the problem."""
    import nbformat

    subs: list[Submission] = []
    seen: dict[str, str] = {}
    for entry in sorted(folder.iterdir()):
        if not entry.is_dir() or entry.name in SKIP_NAMES or entry.name.startswith("."):
            continue
        student = student_id(entry.name)
        sub = Submission(student)
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


def submission_files(sub: Submission, lab: str) -> dict[str, tuple[bytes, int]]:
    """What goes into ``submitted/<student>/<lab>/``: relative path -> (bytes, mode).

    The student's ``<lab>/`` folder when they handed one in (without ``__MACOSX``,
    checkpoints and caches; symlinks are skipped: a submission is files), and the notebook
    as ``<lab>.ipynb``.
    """
    if sub.notebook is None:
        raise ValueError(f"{sub.student}: no notebook to grade ({sub.problem or 'none found'}).")
    files: dict[str, tuple[bytes, int]] = {}
    if sub.folder is not None:
        for path in sorted(sub.folder.rglob("*")):
            rel = path.relative_to(sub.folder)
            if any(part in SKIP_NAMES for part in rel.parts):
                continue
            if path.is_symlink() or not path.is_file():
                continue
            files[rel.as_posix()] = (path.read_bytes(), path.stat().st_mode & 0o777)
    files[f"{lab}.ipynb"] = (sub.notebook.read_bytes(), sub.notebook.stat().st_mode & 0o777)
    return files


def place(sub: Submission, lab: str, workspace: Path) -> None:
    """Copy a submission into ``submitted/<student>/<lab>/`` (replacing an earlier one)."""
    from tinyml_course.grading.worker import write_files

    target = workspace / "submitted" / sub.student / lab
    rmtree(target)
    write_files(target, submission_files(sub, lab))
