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


def results_dir() -> Path:
    """The ignored output folder: ``$TINYML_COURSE_RESULTS``, else ``<repo>/results``.

    Everything the course generates (trained models, ``.tflite`` files, C headers,
    grading runs, the results report) goes here, never into the source tree.
    """
    env = os.environ.get("TINYML_COURSE_RESULTS")
    if env:
        path = Path(env).expanduser().resolve()
    else:
        root = repo_root()
        path = (root if root is not None else Path.cwd()) / "results"
    path.mkdir(parents=True, exist_ok=True)
    return path


def output_path(*parts: str) -> Path:
    """A path inside :func:`results_dir`, its parent folder created.

    Examples
    --------
    >>> p = output_path("models", "baseline.tflite")  # doctest: +SKIP
    """
    path = results_dir().joinpath(*parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
