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


def _pyproject_requirements() -> list[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return data["project"]["dependencies"] + data["project"]["optional-dependencies"]["dev"]


def _environment_yml_requirements() -> list[str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = lines.index("  - pip:")
    reqs = [
        re.sub(r'^\s*-\s*"?(.*?)"?\s*$', r"\1", line)
        for line in lines[start + 1 :]
        if line.strip().startswith("-")
    ]
    return [r for r in reqs if r != "-e ."]


def test_environment_yml_has_the_same_pins_as_pyproject() -> None:
    assert sorted(_environment_yml_requirements()) == sorted(_pyproject_requirements())


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
    "macos-arm64": (
        "macosx_12_0_arm64",
        {
            "sys_platform": "darwin",
            "platform_machine": "arm64",
            "platform_system": "Darwin",
            "os_name": "posix",
        },
    ),
    "windows-x86_64": (
        "win_amd64",
        {
            "sys_platform": "win32",
            "platform_machine": "AMD64",
            "platform_system": "Windows",
            "os_name": "nt",
        },
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("platform_name", sorted(PLATFORMS))
def test_dependencies_resolve_for_other_platforms(platform_name: str, tmp_path: Path) -> None:
    """pip evaluates markers for the running interpreter even with --platform, so filter them here."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    tag, values = PLATFORMS[platform_name]
    environment = {
        **default_environment(),
        **values,
        "python_version": "3.11",
        "python_full_version": "3.11.9",
    }
    kept = []
    for line in _pyproject_requirements():
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(environment):
            req.marker = None
            kept.append(str(req))
    assert not any(r.startswith("tflite-micro") for r in kept)
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
            "--platform",
            tag,
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
        pytest.skip("no access to the package index: cannot resolve for other platforms")
    assert result.returncode == 0, result.stderr[-3000:]
    import json

    from packaging.utils import canonicalize_name

    installed = {
        canonicalize_name(item["metadata"]["name"])
        for item in json.loads((tmp_path / "report.json").read_text())["install"]
    }
    assert {
        "tensorflow",
        "tf-keras",
        "ai-edge-litert",
        "opencv-python-headless",
        "ziglang",
        "unicorn",
        "pyelftools",
        "capstone",
    } <= installed
