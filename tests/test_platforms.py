"""Binder, JupyterHub and read-only installs: the start-up files, and the output folder.

A shared JupyterHub image installs the course where users cannot write; everything the
course generates must then go to ``$TINYML_COURSE_RESULTS`` (or, unset, to
``~/tinyml-course-results``). The slow test runs the course from a read-only bind mount
of this repository (bubblewrap), as such an image would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tinyml_course import paths
from tinyml_course.lab import PAGE_CONFIG, SERVER_CONFIG
from tinyml_course.paths import output_path, repo_root, results_dir

ROOT = repo_root()


# ----------------------------------------------------------------------------- Binder
def test_repo2docker_reads_the_files_at_the_root() -> None:
    """A binder/ (or .binder/) folder, or a Dockerfile, would make repo2docker ignore
    environment.yml and postBuild; the Python version is what repo2docker builds."""
    assert not (ROOT / "binder").exists() and not (ROOT / ".binder").exists()
    assert not (ROOT / "Dockerfile").exists()
    text = (ROOT / "environment.yml").read_text()
    assert "  - python=3.11\n" in text and '      - "-e ."\n' in text
    post_build = ROOT / "postBuild"
    assert os.access(post_build, os.X_OK), "postBuild must be executable"
    lines = post_build.read_text().splitlines()
    assert lines[0] == "#!/bin/bash" and "set -euo pipefail" in lines
    assert subprocess.run(["bash", "-n", str(post_build)]).returncode == 0


def test_readme_binder_link_opens_the_notebooks() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "mybinder.org/v2/gh/" in readme and "urlpath=lab/tree/notebooks" in readme


def test_postbuild_opens_jupyterlab_on_notebooks_with_the_student_interface(tmp_path) -> None:
    prefix = tmp_path / "notebook-env"  # repo2docker's $NB_PYTHON_PREFIX
    env = {
        **os.environ,
        "NB_PYTHON_PREFIX": str(prefix),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    result = subprocess.run(
        [str(ROOT / "postBuild")], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = prefix / "etc" / "jupyter"
    start = json.loads(
        (config / "jupyter_server_config.d" / "tinyml-course-start.json").read_text()
    )
    for app in ("ServerApp", "LabApp", "JupyterNotebookApp"):
        assert start[app]["default_url"] == "/lab/tree/notebooks"
    page = json.loads((config / PAGE_CONFIG).read_text())
    assert all(page["disabledExtensions"].values())
    server = json.loads((config / SERVER_CONFIG).read_text())
    assert not any(server["ServerApp"]["jpserver_extensions"].values())
    written = {p.relative_to(prefix) for p in prefix.rglob("*") if p.is_file()}
    assert len(written) == 3, written  # nothing else, nowhere else


# ----------------------------------------------------------------------------- the output folder
def test_the_output_folder_follows_the_environment_variable(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TINYML_COURSE_RESULTS", str(tmp_path / "out"))
    assert results_dir() == tmp_path / "out"
    assert output_path("models", "m.tflite") == tmp_path / "out" / "models" / "m.tflite"
    from tinyml_course.mcu.build import work_dir

    assert work_dir().is_relative_to(tmp_path / "out")  # the virtual board's build cache
    pytest.importorskip("nbgrader", reason="grading is the instructor install")
    from tinyml_course.grading.workspace import default_workspace

    assert default_workspace() == tmp_path / "out" / "grading"


def test_nbgrader_config_keeps_grading_in_the_output_folder(tmp_path, monkeypatch) -> None:
    """Plain `nbgrader` reads nbgrader_config.py: its folders follow TINYML_COURSE_RESULTS."""
    from traitlets.config.loader import PyFileConfigLoader

    monkeypatch.setenv("TINYML_COURSE_RESULTS", str(tmp_path))
    config = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT)).load_config()
    for folder in ("submitted_directory", "autograded_directory", "feedback_directory"):
        assert Path(config.CourseDirectory[folder]).is_relative_to(tmp_path / "grading")
    assert str(tmp_path / "grading" / "gradebook.db") in config.CourseDirectory.db_url


def test_a_read_only_course_writes_to_the_home_folder(tmp_path, monkeypatch) -> None:
    course = tmp_path / "course"
    course.mkdir()
    (course / "results").write_text("not a folder")  # cannot be created, even by root
    monkeypatch.delenv("TINYML_COURSE_RESULTS", raising=False)
    monkeypatch.setattr(paths, "repo_root", lambda: course)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert results_dir() == tmp_path / "home" / "tinyml-course-results"


def test_an_unusable_output_folder_is_named_with_the_fix(tmp_path, monkeypatch) -> None:
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("TINYML_COURSE_RESULTS", str(tmp_path / "file"))
    with pytest.raises(OSError, match="TINYML_COURSE_RESULTS=.*file.*export TINYML_COURSE_RESULTS"):
        results_dir()


_READ_ONLY_CHECK = """
import os, sys
from pathlib import Path

root, out = Path(sys.argv[1]), Path(os.environ["TINYML_COURSE_RESULTS"])
assert not os.access(root, os.W_OK), "the repository is not read-only"
from tinyml_course.paths import results_dir
from tinyml_course.results import record_figure
from tinyml_course.mcu.build import work_dir

assert results_dir() == out
record_figure("read_only_check", "answer", 42)
assert (out / "figures" / "read_only_check.json").is_file()
assert work_dir().is_relative_to(out)
try:
    from tinyml_course.grading.workspace import course_config, default_workspace
except ModuleNotFoundError:  # a student install
    pass
else:
    config = course_config(default_workspace())  # loads nbgrader_config.py
    assert Path(config.CourseDirectory.root) == out / "grading"
print("read-only ok")
"""


@pytest.mark.slow
def test_the_course_runs_from_a_read_only_checkout(tmp_path) -> None:
    """The repository (and its .venv) bind-mounted read-only, TINYML_COURSE_RESULTS elsewhere:
    the library, grading's configuration and a whole notebook run write only there."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        pytest.skip("bubblewrap is not installed (Debian: apt-get install bubblewrap)")
    out = tmp_path / "results"
    script = tmp_path / "check.py"
    script.write_text(_READ_ONLY_CHECK)
    read_only = [bwrap, "--bind", "/", "/", "--ro-bind", str(ROOT), str(ROOT)]
    read_only += ["--dev", "/dev", "--proc", "/proc", "--die-with-parent"]
    env = {**os.environ, "TINYML_COURSE_RESULTS": str(out)}
    probe = subprocess.run([*read_only, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"bubblewrap cannot make a read-only mount here: {probe.stderr.strip()}")

    result = subprocess.run(
        [*read_only, sys.executable, str(script), str(ROOT)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0 and "read-only ok" in result.stdout, result.stderr[-3000:]

    notebook = "notebooks/00_tinyml_budget.ipynb"
    result = subprocess.run(
        [*read_only, sys.executable, "-m", "tinyml_course", "run", "--quick", notebook],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert (out / "executed" / "00_tinyml_budget.ipynb").is_file()
    assert json.loads((out / "figures" / "00_tinyml_budget.json").read_text())
    assert (out / "report.md").is_file()
