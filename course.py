#!/usr/bin/env python3
"""Set up and run the TinyML course with one command, on Linux, macOS or Windows.

    python3 course.py start [JUPYTERLAB OPTIONS...]  # install the course (first time), open JupyterLab on notebooks/
    python3 course.py run [NOTEBOOK...]              # headless: execute the notebooks, write results/report.md (+ .json)
    python3 course.py instructor                     # add the grading tools (nbgrader) and their JupyterLab panels
    python3 course.py test [PYTEST OPTIONS...]       # install everything (first time), run ruff and the test suite

`start` passes every option to JupyterLab: `--no-browser --port 8899` on a remote machine (then
`ssh -N -L 8899:localhost:8899 HOST` on your laptop), `--ip 0.0.0.0 --allow-root` in a container.

One virtual environment, .venv/ at the repository root, holds the install you need: `start` and
`run` install what students need, `instructor` adds the grading tools, `test` adds the developer
tools (tests, linters, the browser driver) too. It is created on first use and updated when
pyproject.toml changes or a command needs more; nothing is taken out of it. Only the Python
standard library is needed to run this script.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".tinyml-course-installed"
# The three installs: pyproject.toml's extras each needs on top of the course itself.
INSTALLS = {"student": (), "instructor": ("instructor",), "dev": ("instructor", "dev")}
COMMANDS = {"start": "student", "run": "student", "instructor": "instructor", "test": "dev"}


def venv_bin(name: str) -> Path:
    folder = VENV / ("Scripts" if os.name == "nt" else "bin")
    return folder / (f"{name}.exe" if os.name == "nt" else name)


def installed() -> tuple[str, frozenset[str]]:
    """(pyproject.toml's hash, extras) of the last install into .venv; ("", {}) if none."""
    try:
        text = STAMP.read_text()
    except OSError:
        return "", frozenset()
    try:
        data = json.loads(text)
        return str(data["pyproject"]), frozenset(data["extras"])
    except (ValueError, KeyError, TypeError):  # a stamp from before the three installs:
        return text.strip(), frozenset(INSTALLS["dev"])  # that .venv had everything


def plan(install: str) -> list[str] | None:
    """The extras to install for ``install``, or None when .venv already has them.

    What is installed stays: an instructor's .venv keeps the grading tools when `start` runs.
    """
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    have_hash, have = installed()
    need = set(INSTALLS[install])
    if venv_bin("python").exists() and have_hash == wanted and need <= have:
        return None
    return sorted(need | have)


def pip_target(extras: list[str]) -> str:
    """The editable requirement: the repository with ``extras``."""
    return f"{ROOT}[{','.join(extras)}]" if extras else str(ROOT)


def ensure_environment(install: str) -> bool:
    """Create .venv and install ``install`` (student, instructor, dev) unless already there.

    Returns whether anything was installed. A new install also sets JupyterLab's interface:
    instructor when the grading tools are in, student otherwise.
    """
    if sys.version_info < (3, 10):  # noqa: UP036 - this script runs on the system Python
        sys.exit(f"The course needs Python 3.10 or newer; this is {sys.version.split()[0]}.")
    extras = plan(install)
    if extras is None:
        return False
    if not venv_bin("python").exists():
        print(f"creating the virtual environment in {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    python = str(venv_bin("python"))
    tools = f" with its {' and '.join(extras)} tools" if extras else ""
    print(f"installing the course{tools} (first time: a few minutes) ...", flush=True)
    subprocess.check_call([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    subprocess.check_call(
        [python, "-m", "pip", "install", "--quiet", "-e", pip_target(extras)], cwd=ROOT
    )
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    STAMP.write_text(json.dumps({"pyproject": wanted, "extras": extras}) + "\n")
    interface = "instructor" if "instructor" in extras else "student"
    subprocess.check_call([str(venv_bin("tinyml-course")), "interface", interface])
    return True


def ensure_sandbox_tool() -> None:
    """Linux: install bubblewrap (the grading sandbox) with apt-get when missing and we are root.

    Grading runs every student's kernel in a bubblewrap sandbox (docs/grading.md). It is an
    OS package, so pip cannot install it; elsewhere (macOS, Windows) there is none, and the
    grader says so and names the opt-out.
    """
    import shutil

    if not sys.platform.startswith("linux") or shutil.which("bwrap"):
        return
    if shutil.which("apt-get") is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        print(
            "note: bubblewrap (the grading sandbox) is not installed; install the OS package "
            "(Debian/Ubuntu: sudo apt-get install bubblewrap) to run the grading tests.",
            flush=True,
        )
        return
    print("installing bubblewrap (the grading sandbox) with apt-get ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "bubblewrap"]):
        subprocess.call(command, env=env, stdout=subprocess.DEVNULL)


def run(*args: str) -> int:
    env = dict(os.environ)
    # nbgrader shells out to alembic: the environment's bin/ must be on PATH.
    env["PATH"] = str(venv_bin("python").parent) + os.pathsep + env.get("PATH", "")
    env["VIRTUAL_ENV"] = str(VENV)
    return subprocess.call(list(args), cwd=ROOT, env=env)


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "help"
    rest = argv[1:]
    if command in {"-h", "--help", "help"}:
        print(__doc__)
        return 0
    if command not in COMMANDS:
        print(f"unknown command {command!r}.\n{__doc__}", file=sys.stderr)
        return 2
    if command == "instructor" and rest:
        print(f"`instructor` takes no options (got {' '.join(rest)}).", file=sys.stderr)
        return 2
    fresh = ensure_environment(COMMANDS[command])
    tool = str(venv_bin("tinyml-course"))
    if command == "start":
        return run(tool, "lab", *rest)
    if command == "run":
        return run(tool, "run", *rest)
    if command == "instructor":  # a fresh install has just turned the panels on
        code = 0 if fresh else run(tool, "interface", "instructor")
        if code == 0:
            print(
                "The grading tools are installed. `python3 course.py start` now shows nbgrader's "
                "panels (Create Assignment, Formgrader); grade a class with "
                f"`{tool} grade ...` (docs/grading.md)."
            )
        return code
    ensure_sandbox_tool()
    code = run(str(venv_bin("ruff")), "check", "tinyml_course", "tests", "datasets", "notebooks", "solutions", "course.py")
    if code:
        return code
    return run(str(venv_bin("python")), "-m", "pytest", "-n", "2", "--durations=20", *rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
