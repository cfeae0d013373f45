"""Releasing labs: ``exercises/`` generated from the sources, drift checks, a student-only tree.

``<solutions>/<lab>/<lab>.ipynb`` is the single source of every exercise. :func:`release`
regenerates the committed ``exercises/`` (nbgrader ``generate_assignment``: answers become
``raise NotImplementedError()``, hidden tests are removed), :func:`check_release` reports
drift, and :func:`release_student_tree` writes a tree for a graded class that holds nothing
a student should not see.
"""

from __future__ import annotations

import difflib
import filecmp
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tinyml_course.grading.workspace import (
    SKIP_NAMES,
    GradingError,
    check_labs,
    course_config,
    course_root,
    rmtree,
    run_app,
    solutions_dir,
    tail,
)


def _copy_source(lab: str, workspace: Path, solutions: Path | str | None = None) -> None:
    """Snapshot ``<solutions>/<lab>/`` into ``<workspace>/source/<lab>/``."""
    target = workspace / "source" / lab
    rmtree(target)
    shutil.copytree(
        solutions_dir(solutions) / lab, target, ignore=shutil.ignore_patterns(*SKIP_NAMES)
    )


def generate_assignment(lab: str, workspace: Path, solutions: Path | str | None = None) -> Path:
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

    (lab,) = check_labs([lab], solutions)
    workspace = Path(workspace).resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    _copy_source(lab, workspace, solutions)
    ok, log = run_app(
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
        raise GradingError(f"nbgrader generate_assignment {lab} failed.{hint}\n{tail(log)}")
    return workspace / "release" / lab


def _generated(
    labs: Sequence[str], scratch: Path, solutions: Path | str | None = None
) -> dict[str, Path]:
    return {lab: generate_assignment(lab, scratch, solutions) for lab in labs}


def release(labs: Sequence[str] | None = None) -> list[Path]:
    """Regenerate ``exercises/<lab>/`` from ``solutions/<lab>/`` for the labs (all by default).

    Generated into a scratch folder first, then copied over, so a failure never leaves a
    half-deleted exercise; files in ``exercises/<lab>/`` that the release no longer has are
    removed. Returns the updated exercise folders.
    """
    labs = check_labs(labs)
    exercises = course_root() / "exercises"
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
    labs = check_labs(labs)
    exercises = course_root() / "exercises"
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


# Parts of the course repository a student of a graded class gets (everything public but the
# sources of the labs: no solutions/, no hidden tests, no nbgrader source or workspace).
_STUDENT_TREE = ("README.md", "LICENSE", "course.py", "pyproject.toml", "environment.yml",
                 "notebooks", "datasets", "tinyml_course", "docs")  # fmt: skip


def release_student_tree(
    target: Path | str,
    *,
    labs: Sequence[str] | None = None,
    solutions: Path | str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a student-only copy of the course for a graded class.

    The tree holds the notebooks, the library, the shipped data and freshly generated
    ``exercises/`` (answers blank, hidden tests removed), and nothing else: no
    ``solutions/``, no hidden tests, no nbgrader source, no grading workspace, no tests.

    Parameters
    ----------
    target : path
        A new folder (or an empty one).
    labs : sequence of str, optional
        The labs to release (default: all).
    solutions : path, optional
        The folder holding the lab sources, if kept outside the public course.
    overwrite : bool
        Replace ``target`` if it exists and is not empty.

    Raises
    ------
    GradingError
        If ``target`` exists and is not empty (and ``overwrite`` is false), or lies inside
        the course repository's ``solutions/``.
    """
    target = Path(target).expanduser().resolve()
    root = course_root()
    if target.exists() and any(target.iterdir()):
        if not overwrite:
            raise GradingError(
                f"{target} exists and is not empty; choose a new folder or pass --overwrite to replace it."
            )
        rmtree(target)
    if target == root or root in target.parents and target.relative_to(root).parts[0] != "results":
        raise GradingError(
            f"{target} is inside the course repository; write the student tree elsewhere "
            "(or under results/)."
        )
    labs = check_labs(labs, solutions)
    target.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns(*SKIP_NAMES, "*.pyc", "*.egg-info")
    for name in _STUDENT_TREE:
        source = root / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=ignore)
        elif source.is_file():
            shutil.copy2(source, target / name)
    with tempfile.TemporaryDirectory(prefix="tinyml-student-tree-") as tmp:
        for lab, generated in _generated(labs, Path(tmp), solutions).items():
            shutil.copytree(generated, target / "exercises" / lab, ignore=ignore)
    return target
