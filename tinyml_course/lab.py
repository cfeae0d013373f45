"""The course in JupyterLab: the start command, and the student and instructor interfaces.

``tinyml-course lab [JUPYTERLAB OPTIONS...]`` (what ``python3 course.py start`` runs) opens
JupyterLab on ``notebooks/``. Every option it is given goes to JupyterLab unchanged, so the
course starts wherever JupyterLab does: ``--no-browser --port 8899`` on a remote machine
reached through an SSH tunnel or in WSL, ``--ip 0.0.0.0 --allow-root`` in a container,
``--ServerApp.token=...`` anywhere.

The *interface* decides which of nbgrader's JupyterLab extensions a user sees. The course
grades with ``tinyml-course grade`` and no nbgrader exchange, so a student needs none of
them: the student interface turns off the instructor's panels (Create Assignment, the
formgrader, the course and assignment lists, the Nbgrader menu) and their server
extensions, and keeps nbgrader's Validate button where nbgrader is installed. The
instructor interface turns them back on. A student install has no nbgrader at all, and
``python3 course.py instructor`` installs it with the instructor interface; the switch
matters where one environment serves both (a teaching assistant checking what students
see, an image built with the instructor tools). It is two small configuration files of the
course's own in the environment's Jupyter configuration, so nothing else is touched.

    >>> sorted(INTERFACES)
    ['instructor', 'student']
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, get_args

from tinyml_course.paths import repo_root

Interface = Literal["student", "instructor"]
INTERFACES: tuple[str, ...] = get_args(Interface)

#: nbgrader's JupyterLab plugins a student of this course has no use for.
INSTRUCTOR_PLUGINS = (
    "@jupyter/nbgrader:create-assignment",  # the Create Assignment panel (cell metadata)
    "@jupyter/nbgrader:formgrader",  # the formgrader: gradebook, manual grading
    "@jupyter/nbgrader:course-list",  # a JupyterHub instructor's courses
    "@jupyter/nbgrader:assignment-list",  # the nbgrader exchange, which the course does not use
    "@jupyter/nbgrader:menu",  # the Nbgrader menu that opens the four above
)
#: The server extensions behind them (nbgrader's ``validate_assignment`` stays on).
INSTRUCTOR_SERVER_EXTENSIONS = (
    "nbgrader.server_extensions.formgrader",
    "nbgrader.server_extensions.course_list",
    "nbgrader.server_extensions.assignment_list",
)
#: The course's own configuration files, beside the ones packages install (``*.d`` folders
#: are read before the folder's main file, so ``jupyter labextension enable`` still wins).
PAGE_CONFIG = Path("labconfig", "page_config.d", "tinyml-course-interface.json")
SERVER_CONFIG = Path("jupyter_server_config.d", "tinyml-course-interface.json")
DEFAULT_URL = "/lab/tree/notebooks"


def lab_command(options: Sequence[str] = (), *, root: Path | None = None) -> list[str]:
    """The command that starts JupyterLab on the course's ``notebooks/``.

    Parameters
    ----------
    options : sequence of str
        JupyterLab options, passed on unchanged after the course's own (so a later
        ``--ServerApp.root_dir=...`` overrides the course's).
    root : Path, optional
        The folder JupyterLab serves; the course repository by default.

    Returns
    -------
    list of str

    Raises
    ------
    FileNotFoundError
        If no ``root`` is given and the course was not installed from its clone.

    Examples
    --------
    >>> lab_command(["--no-browser", "--port", "8899"], root=Path("/course"))[-3:]
    ['--no-browser', '--port', '8899']
    """
    if root is None:
        root = repo_root()
        if root is None:
            raise FileNotFoundError(
                "the course repository was not found: start JupyterLab from the course's clone "
                "(installed with `pip install -e .`), or pass root=<folder to serve>."
            )
    return [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.default_url={DEFAULT_URL}",
        *options,
    ]


def nbgrader_installed() -> bool:
    """Whether nbgrader (the instructor install) is in this environment."""
    return importlib.util.find_spec("nbgrader") is not None


def config_dir() -> Path:
    """This environment's Jupyter configuration folder (``<sys.prefix>/etc/jupyter``)."""
    return Path(sys.prefix, "etc", "jupyter")


def set_interface(interface: Interface, *, folder: Path | None = None) -> list[Path]:
    """Show JupyterLab's student or instructor interface; returns the files written.

    Parameters
    ----------
    interface : {"student", "instructor"}
        ``student`` turns nbgrader's instructor panels and their server extensions off,
        ``instructor`` turns them on.
    folder : Path, optional
        The Jupyter configuration folder to write to; this environment's by default.

    Raises
    ------
    ValueError
        If ``interface`` is not one of the names above.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     [p.parent.name for p in set_interface("student", folder=Path(folder))]
    ['page_config.d', 'jupyter_server_config.d']
    """
    if interface not in INTERFACES:
        raise ValueError(f"interface must be one of {list(INTERFACES)}; got {interface!r}.")
    folder = Path(folder) if folder is not None else config_dir()
    student = interface == "student"
    page = {
        "disabledExtensions": dict.fromkeys(INSTRUCTOR_PLUGINS, student),
        # Present, so JupyterLab does not "migrate" the disabled plugins into locked ones:
        # a user may still turn a plugin on in JupyterLab's plugin manager.
        "lockedExtensions": dict.fromkeys(INSTRUCTOR_PLUGINS, False),
    }
    server = {
        "ServerApp": {
            "jpserver_extensions": dict.fromkeys(INSTRUCTOR_SERVER_EXTENSIONS, not student)
        }
    }
    written = []
    for relative, data in ((PAGE_CONFIG, page), (SERVER_CONFIG, server)):
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2) + "\n")
        written.append(path)
    return written


def current_interface() -> Interface:
    """The interface JupyterLab shows here: ``student`` when nbgrader is absent or its
    instructor panels are turned off in the Jupyter configuration that applies."""
    if not nbgrader_installed():
        return "student"
    from jupyterlab_server.config import get_static_page_config

    disabled = get_static_page_config(level="all").get("disabledExtensions", {})
    if isinstance(disabled, list):
        disabled = dict.fromkeys(disabled, True)
    return "student" if any(disabled.get(p) for p in INSTRUCTOR_PLUGINS) else "instructor"
