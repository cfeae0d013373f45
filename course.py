#!/usr/bin/env python3
"""Set up and run the TinyML course with one command, on Linux, macOS or Windows.

    python3 course.py start   # create .venv (first time), install, open JupyterLab on notebooks/
    python3 course.py run     # headless: execute every notebook, write results/report.md (+ .json)
    python3 course.py test    # create .venv (first time), install, run ruff and the whole test suite

The virtual environment lives in .venv/ at the repository root. It is created on first
use and reused after; it is reinstalled only when pyproject.toml changes. Only the
Python standard library is needed to run this script.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".tinyml-course-installed"


def venv_bin(name: str) -> Path:
    folder = VENV / ("Scripts" if os.name == "nt" else "bin")
    return folder / (f"{name}.exe" if os.name == "nt" else name)


def ensure_environment() -> None:
    """Create .venv and install the course (with dev extras) unless already up to date."""
    if sys.version_info < (3, 10):  # noqa: UP036 - this script runs on the system Python
        sys.exit(f"The course needs Python 3.10 or newer; this is {sys.version.split()[0]}.")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not venv_bin("python").exists():
        print(f"creating the virtual environment in {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    if STAMP.exists() and STAMP.read_text().strip() == wanted:
        return
    python = str(venv_bin("python"))
    print("installing the course and its dependencies (first time: a few minutes) ...", flush=True)
    subprocess.check_call([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    subprocess.check_call(
        [python, "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[dev]"], cwd=ROOT
    )
    STAMP.write_text(wanted + "\n")


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
    if command not in {"start", "run", "test"}:
        print(f"unknown command {command!r}.\n{__doc__}", file=sys.stderr)
        return 2
    ensure_environment()
    tool = str(venv_bin("tinyml-course"))
    if command == "start":
        return run(tool, "lab", *rest)
    if command == "run":
        return run(tool, "run", *rest)
    ensure_sandbox_tool()
    code = run(str(venv_bin("ruff")), "check", "tinyml_course", "tests", "datasets", "notebooks", "solutions", "course.py")
    if code:
        return code
    return run(str(venv_bin("python")), "-m", "pytest", "-n", "2", *rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
