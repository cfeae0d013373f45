"""Packaging: the pins agree everywhere, and the dependency set resolves on the students' platforms."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _pyproject_requirements() -> list[str]:
    """Everything: the course and every extra (what `python3 course.py test` installs)."""
    project = _pyproject()
    return project["dependencies"] + [
        r for extra in project["optional-dependencies"].values() for r in extra
    ]


def _course_py():
    """``course.py`` as a module (it is a script, standard library only)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("course_script", ROOT / "course.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _environment_yml_requirements() -> list[str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = lines.index("  - pip:")
    reqs = [
        re.sub(r'^\s*-\s*"?(.*?)"?\s*$', r"\1", line)
        for line in lines[start + 1 :]
        if line.strip().startswith("-")
    ]
    return [r for r in reqs if r != "-e ."]


def test_environment_yml_is_the_student_install_with_the_same_pins_as_pyproject() -> None:
    """Binder and JupyterHub images are built from environment.yml: students, no grading or
    developer tools, and the course itself (`-e .`)."""
    assert sorted(_environment_yml_requirements()) == sorted(_pyproject()["dependencies"])
    assert '      - "-e ."' in (ROOT / "environment.yml").read_text().splitlines()


def test_three_installs_students_instructors_developers() -> None:
    """The course for students; nbgrader only for instructors; test, lint and browser tools
    only for developers."""
    from packaging.requirements import Requirement

    def names(requirements: list[str]) -> set[str]:
        return {Requirement(r).name for r in requirements}

    project = _pyproject()
    extras = project["optional-dependencies"]
    assert {"instructor", "dev"} <= set(extras)
    student = names(project["dependencies"])
    assert "nbgrader" in names(extras["instructor"]) and "nbgrader" not in student
    developer = {"pytest", "pytest-xdist", "pytest-timeout", "ruff", "playwright"}
    assert developer <= names(extras["dev"])
    assert not developer & (student | names(extras["instructor"]))
    course = _course_py()
    assert course.INSTALLS == {
        "student": (),
        "instructor": ("instructor",),
        "dev": ("instructor", "dev"),
    }
    assert course.COMMANDS == {
        "start": "student",
        "run": "student",
        "instructor": "instructor",
        "test": "dev",
    }
    assert all(extra in extras for install in course.INSTALLS.values() for extra in install)


def test_course_py_installs_what_a_command_needs_and_keeps_what_is_there(
    tmp_path, monkeypatch
) -> None:
    import hashlib
    import json

    course = _course_py()
    monkeypatch.setattr(course, "VENV", tmp_path / ".venv")
    monkeypatch.setattr(course, "STAMP", tmp_path / ".venv" / "stamp")
    assert course.plan("student") == [] and course.plan("dev") == ["dev", "instructor"]
    python = course.venv_bin("python")
    python.parent.mkdir(parents=True)
    python.write_text("")
    current = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()

    def stamp(digest: str, extras: list[str]) -> None:
        course.STAMP.write_text(json.dumps({"pyproject": digest, "extras": extras}))

    stamp(current, [])
    assert course.plan("student") is None
    assert course.plan("instructor") == ["instructor"]
    stamp(current, ["instructor"])
    assert course.plan("student") is None  # an instructor's `start` keeps the grading tools
    assert course.plan("dev") == ["dev", "instructor"]
    stamp("an older pyproject.toml", ["instructor"])
    assert course.plan("student") == ["instructor"]  # reinstalled, nothing dropped
    course.STAMP.write_text(current)  # the stamp before the three installs: everything
    assert course.plan("dev") is None
    assert course.pip_target([]) == str(ROOT)
    assert course.pip_target(["dev", "instructor"]) == f"{ROOT}[dev,instructor]"


def test_course_py_instructor_takes_no_options(capsys) -> None:
    assert _course_py().main(["instructor", "--port", "8899"]) == 2
    assert "takes no options" in capsys.readouterr().err


def test_opencv_is_pinned_below_5_and_tflite_micro_is_platform_marked() -> None:
    from packaging.requirements import Requirement

    reqs = {Requirement(r).name: Requirement(r) for r in _pyproject_requirements()}
    assert not reqs["opencv-python-headless"].specifier.contains("5.0.0"), (
        "opencv 5 dropped the Haar face detector"
    )
    marker = reqs["tflite-micro"].marker
    assert marker is not None
    assert marker.evaluate({"sys_platform": "linux", "platform_machine": "x86_64"})
    assert not marker.evaluate({"sys_platform": "darwin", "platform_machine": "arm64"})
    assert not marker.evaluate({"sys_platform": "win32", "platform_machine": "AMD64"})


def test_readme_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python3 course.py test" in readme
    assert re.search(r"^python3 course.py test\s*$", ci, re.M)


PLATFORMS = {
    "linux-x86_64": (
        # pip takes --platform tags literally: name every manylinux level the stack uses.
        (
            "manylinux_2_28_x86_64",
            "manylinux_2_27_x86_64",
            "manylinux_2_17_x86_64",
            "manylinux2014_x86_64",
        ),
        {
            "sys_platform": "linux",
            "platform_machine": "x86_64",
            "platform_system": "Linux",
            "os_name": "posix",
        },
    ),
    "macos-arm64": (
        ("macosx_12_0_arm64",),
        {
            "sys_platform": "darwin",
            "platform_machine": "arm64",
            "platform_system": "Darwin",
            "os_name": "posix",
        },
    ),
    "windows-x86_64": (
        ("win_amd64",),
        {
            "sys_platform": "win32",
            "platform_machine": "AMD64",
            "platform_system": "Windows",
            "os_name": "nt",
        },
    ),
}


def _resolve(lines: list[str], platform_name: str, tmp_path: Path) -> dict[str, str]:
    """Resolve ``lines`` for a platform without installing: {name: version} pip would install.

    pip evaluates markers for the running interpreter even with --platform, so they are
    filtered here first.
    """
    import json

    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    tags, values = PLATFORMS[platform_name]
    environment = {
        **default_environment(),
        **values,
        "python_version": "3.11",
        "python_full_version": "3.11.9",
    }
    kept = []
    for line in lines:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(environment):
            req.marker = None
            kept.append(str(req))
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("\n".join(kept) + "\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--only-binary=:all:",
            *(option for tag in tags for option in ("--platform", tag)),
            "--python-version",
            "3.11",
            "--target",
            str(tmp_path / "target"),
            "--quiet",
            "--report",
            str(tmp_path / "report.json"),
            "-r",
            str(requirements),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    if result.returncode != 0 and (
        "Network is unreachable" in result.stderr
        or "Failed to establish a new connection" in result.stderr
    ):
        pytest.skip("no access to the package index: cannot resolve the dependencies")
    assert result.returncode == 0, result.stderr[-3000:]
    return {
        canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
        for item in json.loads((tmp_path / "report.json").read_text())["install"]
    }


COURSE_STACK = {
    "tensorflow",
    "tf-keras",
    "ai-edge-litert",
    "opencv-python-headless",
    "ziglang",
    "unicorn",
    "pyelftools",
    "capstone",
    "espeakng-loader",
    "scipy",
}


@pytest.mark.slow
@pytest.mark.parametrize("platform_name", sorted(set(PLATFORMS) - {"linux-x86_64"}))
def test_dependencies_resolve_for_other_platforms(platform_name: str, tmp_path: Path) -> None:
    """All three installs (the course and every extra) resolve on macOS and Windows."""
    installed = _resolve(_pyproject_requirements(), platform_name, tmp_path)
    assert "tflite-micro" not in installed
    assert COURSE_STACK | {"nbgrader", "pytest", "playwright"} <= set(installed)


# repo2docker's own server environment for Python 3.11 (its conda lock of 2025-10):
# environment.yml's pip packages go on top of it, so they must resolve together with it.
REPO2DOCKER_SERVER_PY311 = [
    "jupyterlab==4.4.9",
    "notebook==7.4.7",
    "jupyter-server==2.17.0",
    "jupyterhub==5.4.0",  # jupyterhub-singleuser on conda-forge
    "ipywidgets==8.1.7",
    "ipykernel==7.0.1",
    "tornado==6.5.2",
    "traitlets==5.14.3",
]


@pytest.mark.slow
def test_binder_environment_resolves_on_repo2dockers_server_environment(tmp_path: Path) -> None:
    """Binder / a JupyterHub image: environment.yml's pip packages with repo2docker's server."""
    installed = _resolve(
        _environment_yml_requirements() + REPO2DOCKER_SERVER_PY311, "linux-x86_64", tmp_path
    )
    assert COURSE_STACK | {"tflite-micro", "jupyterlab", "jupyterhub"} <= set(installed)
    assert installed["jupyterlab"] == "4.4.9"
    assert not {"nbgrader", "pytest", "playwright"} & set(installed)
