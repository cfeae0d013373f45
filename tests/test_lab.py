"""Starting the course in JupyterLab: options passed through, and the student and instructor interfaces.

The fast tests check the command line and the interface files. Two slow ones start real
servers: ``python3 course.py start --no-browser --port ...`` must answer on that port, and
Chromium must show each interface's panels (the browser one is also marked ``browser``)::

    flock /tmp/tinyml-cpu.lock .venv/bin/pytest tests/test_lab.py -m slow

To drive a real student install instead of this environment with the student interface
switched on, point ``TINYML_COURSE_STUDENT_PYTHON`` at its Python (``<clone>/.venv/bin/python``).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tinyml_course import cli
from tinyml_course.lab import (
    INSTRUCTOR_PLUGINS,
    INSTRUCTOR_SERVER_EXTENSIONS,
    PAGE_CONFIG,
    SERVER_CONFIG,
    current_interface,
    lab_command,
    nbgrader_installed,
    set_interface,
)
from tinyml_course.paths import repo_root, results_dir

ROOT = repo_root()
VALIDATE = "@jupyter/nbgrader:validate-assignment"


# ----------------------------------------------------------------------------- the command
def test_lab_passes_every_option_it_does_not_know_to_jupyterlab(monkeypatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(cli.subprocess, "call", lambda command: calls.append(command) or 0)
    options = ["--no-browser", "--port", "8899", "--ip", "0.0.0.0", "--allow-root"]
    options += ["--ServerApp.token=abc", "--no", "--help-all"]  # no abbreviation of anything
    assert cli.main(["lab", *options]) == 0
    (command,) = calls
    assert command[1:4] == ["-m", "jupyter", "lab"]
    assert command[-len(options) :] == options
    assert f"--ServerApp.root_dir={ROOT}" in command
    assert "--LabApp.default_url=/lab/tree/notebooks" in command


def test_other_commands_still_reject_unknown_options(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["report", "--port", "8899"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --port 8899" in capsys.readouterr().err


def test_lab_command_outside_the_clone_says_what_to_do(monkeypatch) -> None:
    import tinyml_course.lab as lab

    monkeypatch.setattr(lab, "repo_root", lambda: None)
    with pytest.raises(FileNotFoundError, match="course's clone"):
        lab_command(["--no-browser"])
    assert lab_command(root=Path("/srv/course"))[4] == "--ServerApp.root_dir=/srv/course"


def test_grading_without_the_instructor_install_says_how_to_get_it() -> None:
    """A student install has no nbgrader: `tinyml-course grade` explains instead of crashing."""
    code = (
        "import sys; sys.modules['nbgrader'] = None\n"
        "from tinyml_course.cli import main\n"
        "sys.exit(main(['grade', 'autograde', 'lab00_budget', 'submissions/']))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert "needs nbgrader" in result.stderr and "course.py instructor" in result.stderr
    code = code.replace("'grade', 'autograde', 'lab00_budget', 'submissions/'", "'--help'")
    help_text = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert "instructor install" in help_text and "lab" in help_text


def test_readme_shows_the_remote_wsl_container_and_instructor_starts() -> None:
    readme = (ROOT / "README.md").read_text()
    for line in (
        "python3 course.py start --no-browser --port 8899",
        "ssh -N -L 8899:localhost:8899",
        "In **WSL**",
        "--ip 0.0.0.0 --port 8888 --allow-root",
        "python3 course.py instructor",
    ):
        assert line in readme, line


# ----------------------------------------------------------------------------- the interfaces
def _read(folder: Path) -> tuple[dict, dict]:
    page = json.loads((folder / PAGE_CONFIG).read_text())
    server = json.loads((folder / SERVER_CONFIG).read_text())
    return page, server["ServerApp"]["jpserver_extensions"]


def test_student_interface_turns_the_instructor_panels_off_and_instructor_back_on(
    tmp_path,
) -> None:
    set_interface("student", folder=tmp_path)
    page, server = _read(tmp_path)
    assert page["disabledExtensions"] == dict.fromkeys(INSTRUCTOR_PLUGINS, True)
    assert VALIDATE not in page["disabledExtensions"]  # the student's Validate button stays
    assert not any(page["lockedExtensions"].values())
    assert server == dict.fromkeys(INSTRUCTOR_SERVER_EXTENSIONS, False)
    assert "nbgrader.server_extensions.validate_assignment" not in server

    set_interface("instructor", folder=tmp_path)
    page, server = _read(tmp_path)
    assert page["disabledExtensions"] == dict.fromkeys(INSTRUCTOR_PLUGINS, False)
    assert server == dict.fromkeys(INSTRUCTOR_SERVER_EXTENSIONS, True)


def test_interface_names_are_checked() -> None:
    with pytest.raises(ValueError, match="interface must be one of.*'teacher'"):
        set_interface("teacher")  # type: ignore[arg-type]


def test_the_course_file_wins_over_nbgraders_own_in_the_same_folder(tmp_path) -> None:
    """nbgrader installs ``jupyter_server_config.d/nbgrader.json`` enabling everything; the
    course's file sorts after it, so in the same folder the student choice wins."""
    from jupyter_server.extension.config import ExtensionConfigManager

    own = tmp_path / "jupyter_server_config.d" / "nbgrader.json"
    own.parent.mkdir(parents=True)
    everything = [*INSTRUCTOR_SERVER_EXTENSIONS, "nbgrader.server_extensions.validate_assignment"]
    own.write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": dict.fromkeys(everything, True)}})
    )
    set_interface("student", folder=tmp_path)
    enabled = ExtensionConfigManager(read_config_path=[str(tmp_path)]).get_jpserver_extensions()
    assert {name for name, on in enabled.items() if on} == {
        "nbgrader.server_extensions.validate_assignment"
    }


def test_current_interface_reads_the_configuration_jupyterlab_reads(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", "0")  # the folder above wins over the venv's
    set_interface("student", folder=tmp_path)
    assert current_interface() == "student"
    set_interface("instructor", folder=tmp_path)
    assert current_interface() == ("instructor" if nbgrader_installed() else "student")


# ----------------------------------------------------------------------------- real servers
def _port() -> int:
    """8899, the port the README uses, when it is free; another free port otherwise."""
    for port in (8899, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError("no free port")


def _get(url: str, token: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, b""


@pytest.mark.slow
def test_course_py_start_serves_the_course_on_the_port_given(tmp_path) -> None:
    """`python3 course.py start --no-browser --port 8899` (plus a token): JupyterLab answers
    on that port and serves notebooks/."""
    port, token = _port(), secrets.token_hex(16)
    command = [
        sys.executable, str(ROOT / "course.py"), "start", "--no-browser", "--port", str(port),
        f"--ServerApp.token={token}", "--ServerApp.port_retries=0",
    ]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers: JupyterLab's own option
        command.append("--allow-root")
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
    }
    log = tmp_path / "start.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, f"course.py start exited:\n{log.read_text()[-3000:]}"
            try:
                status, _ = _get(f"http://127.0.0.1:{port}/api/status", token)
                if status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (
                f"no answer on port {port}:\n{log.read_text()[-3000:]}"
            )
            time.sleep(0.5)
        status, body = _get(f"http://127.0.0.1:{port}/api/contents/notebooks", token)
        names = {item["name"] for item in json.loads(body)["content"]}
        assert status == 200 and "00_tinyml_budget.ipynb" in names
        status, body = _get(f"http://127.0.0.1:{port}/lab/tree/notebooks", token)
        assert status == 200 and b"jupyter-config-data" in body
    finally:
        for signal in (15, 9):
            try:
                os.killpg(process.pid, signal)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                continue
            break


_PANELS = """async () => {
  const app = window.jupyterapp;
  if (!app) return null;
  await app.restored;
  const menus = [...document.querySelectorAll('.lm-MenuBar-itemLabel')].map(e => e.textContent);
  const right = [...app.shell.widgets('right')].map(w => w.title.label);
  return {
    menus, right,
    commands: ['nbgrader:open-formgrader', 'nbgrader:open-create-assignment',
               'nbgrader:open-assignment-list', 'nbgrader:open-course-list']
              .filter(c => app.commands.hasCommand(c)),
    validate: document.querySelectorAll('.jp-NotebookPanel-toolbar .validate-button').length > 0,
  };
}"""


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("interface", ["student", "instructor"])
def test_each_install_shows_its_panels(interface: str, tmp_path) -> None:
    """Chromium: the student interface shows no instructor panel, menu or formgrader; the
    instructor interface shows them. The student interface is this environment with the
    student configuration (or, with ``TINYML_COURSE_STUDENT_PYTHON``, a real student install)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    from browser_helpers import (
        CHROMIUM_ARGS,
        copy_notebook,
        ensure_chromium,
        jupyter_lab,
        open_notebook,
    )

    chromium, reason = ensure_chromium()
    if chromium is None:
        pytest.skip(f"no Chromium for the browser test: {reason}")
    python = os.environ.get("TINYML_COURSE_STUDENT_PYTHON") if interface == "student" else None
    state = tmp_path / "state"
    if python is None:
        set_interface(interface, folder=state / "config")  # wins over the venv's own choice
    probe = subprocess.run([python or sys.executable, "-c", "import nbgrader"], capture_output=True)
    has_nbgrader = probe.returncode == 0
    if interface == "instructor" and not has_nbgrader:
        pytest.skip("nbgrader (the instructor install) is not installed here")
    exercise = ROOT / "exercises" / "lab00_budget" / "lab00_budget.ipynb"
    copy_notebook(exercise, tmp_path / "course" / "exercises")
    relative = f"exercises/{exercise.name}"
    screenshots = results_dir() / "browser"
    screenshots.mkdir(parents=True, exist_ok=True)

    with jupyter_lab(tmp_path / "course", state, python=python) as lab:
        formgrader, _ = _get(f"{lab.url}/formgrader", lab.token)
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS, timeout=120_000
            )
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                open_notebook(page, lab, relative)
                time.sleep(1)  # toolbar items are added as the notebook panel settles
                panels = page.evaluate(_PANELS)
                page.screenshot(path=str(screenshots / f"interface_{interface}.png"))
            finally:
                browser.close()
        lab.shutdown_kernels()
    (screenshots / f"interface_{interface}.json").write_text(
        json.dumps({**panels, "formgrader_http_status": formgrader}, indent=2)
    )
    if interface == "student":
        assert "Nbgrader" not in panels["menus"], panels
        assert "Create Assignment" not in panels["right"], panels
        assert panels["commands"] == [], panels
        assert formgrader == 404
        assert panels["validate"] == has_nbgrader  # kept where nbgrader is installed
    else:
        assert "Nbgrader" in panels["menus"], panels
        assert "Create Assignment" in panels["right"], panels
        assert "nbgrader:open-formgrader" in panels["commands"], panels
        assert formgrader == 200
        assert panels["validate"], panels


def test_no_stray_server_config(tmp_path) -> None:
    """Writing an interface touches only the course's two files."""
    set_interface("student", folder=tmp_path)
    files = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert files == sorted([PAGE_CONFIG, SERVER_CONFIG])
