"""Where grading happens: the course's labs, the grading workspace and nbgrader's configuration.

The *workspace* is an nbgrader course folder (default ``results/grading/``): ``source/``,
``release/``, ``submitted/``, ``autograded/``, ``feedback/``, ``gradebook.db``, plus the
course's own ``private/`` (expected hidden-test results, per-submission verdicts),
``reports/`` and ``logs/``. Nothing in it is ever visible inside a grading sandbox except
the one submission's own ``autograded/<student>/<lab>/`` folder.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import re
import shutil
import stat
import sys
import traceback
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tinyml_course.paths import repo_root, results_dir

CONFIG_FILE = "nbgrader_config.py"
SKIP_NAMES = {"__MACOSX", ".ipynb_checkpoints", "__pycache__"}
LOG = logging.getLogger("tinyml_course.grading.nbgrader")
_LAB_NAME = re.compile(r"^lab\d\d_[A-Za-z0-9_]+$")


class GradingError(RuntimeError):
    """Grading could not run at all (not a problem with one submission); the message says why."""


def course_root() -> Path:
    """The course repository (with ``nbgrader_config.py``); a :class:`GradingError` otherwise."""
    root = repo_root()
    if root is None or not (root / CONFIG_FILE).is_file():
        raise GradingError(
            f"the course repository (with {CONFIG_FILE} and solutions/) was not found; "
            "run grading from a clone of the course installed with `pip install -e .`."
        )
    return root


def solutions_dir(solutions: Path | str | None = None) -> Path:
    """The folder holding ``<lab>/<lab>.ipynb`` sources: ``solutions`` or the course's ``solutions/``.

    An instructor who keeps the solutions private (outside the public course) passes that
    folder here (``--solutions DIR`` on the command line).
    """
    folder = Path(solutions).expanduser().resolve() if solutions else course_root() / "solutions"
    if not folder.is_dir():
        raise GradingError(
            f"solutions={str(folder)!r} is not a folder; give the folder that holds "
            "<lab>/<lab>.ipynb (the course's solutions/ or your private copy of it)."
        )
    return folder


def default_workspace(workspace: Path | str | None = None) -> Path:
    """The grading workspace: ``workspace`` if given, else ``<results>/grading``, resolved."""
    return Path(workspace).expanduser().resolve() if workspace else results_dir() / "grading"


def private_dir(workspace: Path) -> Path:
    """The workspace's folder that no sandbox sees: expected hidden results and verdicts."""
    return Path(workspace) / "private"


def list_labs(solutions: Path | str | None = None) -> list[str]:
    """The labs with a source notebook ``<solutions>/<lab>/<lab>.ipynb``, sorted."""
    return sorted(
        p.parent.name
        for p in solutions_dir(solutions).glob("*/*.ipynb")
        if p.stem == p.parent.name and _LAB_NAME.match(p.stem)
    )


def check_labs(labs: Sequence[str] | None, solutions: Path | str | None = None) -> list[str]:
    """``labs`` checked against :func:`list_labs` (all labs when empty)."""
    known = list_labs(solutions)
    if not labs:
        return known
    unknown = [lab for lab in labs if lab not in known]
    if unknown:
        raise GradingError(f"unknown lab(s) {unknown}; the labs in solutions/ are {known}.")
    return list(labs)


def _alembic_head_in_process() -> None:
    """Have nbgrader read its schema version in this process, once, instead of a subprocess.

    Creating a gradebook, nbgrader runs ``alembic heads`` as a program (about a second of
    CPU, once per gradebook: every grading worker creates one). The answer is fixed for an
    installed nbgrader; alembic's API gives it directly. Falls back to nbgrader's own way.
    """
    import nbgrader.api

    original = nbgrader.api.get_alembic_version
    if getattr(original, "in_process", False):
        return

    @functools.lru_cache(maxsize=1)
    def get_alembic_version() -> str:
        try:
            from alembic.script import ScriptDirectory

            head = ScriptDirectory(
                str(Path(nbgrader.api.__file__).parent / "alembic")
            ).get_current_head()
        except Exception:  # pragma: no cover - alembic's layout changed: ask it as nbgrader does
            head = None
        return head or original()

    get_alembic_version.in_process = True  # type: ignore[attr-defined]
    nbgrader.api.get_alembic_version = get_alembic_version


@contextlib.contextmanager
def nbgrader_environment() -> Iterator[None]:
    """The environment's ``bin/`` first on PATH (nbgrader runs ``alembic``), restored after."""
    _alembic_head_in_process()
    saved = os.environ.get("PATH", "")
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + saved
    try:
        yield
    finally:
        os.environ["PATH"] = saved


def course_config(
    workspace: Path,
    *,
    timeout: int | None = None,
    memory_limit_mb: int | None = None,
    sandbox: bool | None = None,
) -> Any:
    """nbgrader configuration: the course's ``nbgrader_config.py`` with folders in ``workspace``.

    Parameters
    ----------
    workspace : Path
        The nbgrader course folder to work in.
    timeout : int, optional
        Seconds allowed per cell (``Execute.timeout``); the config file's value otherwise.
    memory_limit_mb : int, optional
        Address-space limit of the grading kernel in MiB (0: none).
    sandbox : bool, optional
        Run each graded kernel in the sandbox (default: the config file's, on).

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
    config = PyFileConfigLoader(CONFIG_FILE, path=str(course_root())).load_config()
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
        config.SandboxedExecute.memory_limit_mb = int(memory_limit_mb)
    if sandbox is not None:
        config.SandboxedExecute.sandbox = bool(sandbox)
    return config


def run_app(
    app_class: Any, config: Any, *, assignment: str, student: str = ".", **attrs: Any
) -> tuple[bool, str]:
    """Run one nbgrader converter; return (success, captured log and traceback)."""
    from nbgrader.coursedir import CourseDirectory

    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    LOG.propagate = False
    ok = True
    try:
        with nbgrader_environment(), warnings.catch_warnings():
            # SQLAlchemy and nbformat warnings about nbgrader's own bookkeeping: not the user's business.
            warnings.simplefilter("ignore")
            coursedir = CourseDirectory(config=config, log=LOG)
            coursedir.assignment_id = assignment
            coursedir.student_id = student
            app = app_class(coursedir=coursedir, config=config, log=LOG)
            for name, value in attrs.items():
                setattr(app, name, value)
            app.start()
    except Exception:
        ok = False
        buffer.write(traceback.format_exc())
    finally:
        LOG.removeHandler(handler)
    return ok, buffer.getvalue()


def rmtree(path: Path) -> None:
    """Remove a tree, including nbgrader's read-only files; never follows a symlink."""

    def _writable(func: Any, name: str, _exc: Any) -> None:
        os.chmod(name, stat.S_IWRITE | stat.S_IREAD | stat.S_IEXEC)
        func(name)

    if path.is_symlink():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path, onerror=_writable)


def tail(text: str, lines: int = 15) -> str:
    """The last ``lines`` non-blank lines of a log."""
    return "\n".join(text.strip().splitlines()[-lines:])
