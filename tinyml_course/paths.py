"""Where the course finds its shipped files and writes what it generates."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def repo_root() -> Path | None:
    """The course repository (the folder holding ``pyproject.toml``), if installed from it."""
    candidate = PACKAGE_DIR.parent
    if (candidate / "pyproject.toml").is_file() and (candidate / "notebooks").is_dir():
        return candidate
    return None


RESULTS_ENV = "TINYML_COURSE_RESULTS"
FALLBACK_RESULTS = "tinyml-course-results"


def results_dir() -> Path:
    """The output folder: ``$TINYML_COURSE_RESULTS``, else ``<repo>/results``.

    Everything the course generates (trained models, ``.tflite`` files, C headers,
    grading runs, the results report) goes here, never into the source tree. Where the
    course's folder cannot be written (installed read-only, as in a shared JupyterHub
    image) and ``TINYML_COURSE_RESULTS`` is not set, it is ``~/tinyml-course-results``.

    Raises
    ------
    OSError
        If ``TINYML_COURSE_RESULTS`` names a folder that cannot be created or written,
        or no folder above can be.
    """
    env = os.environ.get(RESULTS_ENV)
    if env:
        path = Path(env).expanduser().resolve()
        if not _writable_folder(path):
            raise OSError(
                f"{RESULTS_ENV}={env!r} is not a folder this user can write to; set it to one "
                f"that is (for example: export {RESULTS_ENV}=~/{FALLBACK_RESULTS})."
            )
        return path
    root = repo_root()
    path = (root if root is not None else Path.cwd()) / "results"
    if _writable_folder(path):
        return path
    fallback = Path.home() / FALLBACK_RESULTS
    if _writable_folder(fallback):
        return fallback
    raise OSError(
        f"neither {path} nor {fallback} can be written; set {RESULTS_ENV} to a folder this "
        "user can write to."
    )


def _writable_folder(path: Path) -> bool:
    """Create ``path`` if needed; whether it is then a folder this process can write to."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return path.is_dir() and os.access(path, os.W_OK)


def output_path(*parts: str) -> Path:
    """A path inside :func:`results_dir`, its parent folder created.

    Examples
    --------
    >>> p = output_path("models", "baseline.tflite")  # doctest: +SKIP
    """
    path = results_dir().joinpath(*parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
