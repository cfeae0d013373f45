"""Plumbing for the real-browser test: Debian's Chromium, a private JupyterLab, a notebook page.

Used by ``tests/test_browser.py``. Nothing here downloads anything except Debian's
``chromium`` package (with apt-get, when it is missing and we are root).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


# ------------------------------------------------------------------------- Chromium
def ensure_chromium(*, timeout: float = 1200) -> tuple[Path | None, str]:
    """Debian's Chromium, installed with apt-get when missing.

    Returns
    -------
    (path, reason)
        The browser's path, or ``None`` and why it cannot be had here (the caller skips).
    """
    if CHROMIUM.exists():
        return CHROMIUM, ""
    # pytest-xdist workers may get here together: one installs, the others wait for it.
    with _install_lock():
        return _install_chromium(timeout)


@contextmanager
def _install_lock() -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX; apt-get is not there either
        yield
        return
    with open(Path(tempfile.gettempdir()) / "tinyml-course-chromium-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _install_chromium(timeout: float) -> tuple[Path | None, str]:
    if CHROMIUM.exists():  # another worker installed it meanwhile
        return CHROMIUM, ""
    if shutil.which("apt-get") is None:
        return (
            None,
            f"{CHROMIUM} is missing and this system has no apt-get to install Debian's chromium package.",
        )
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return (
            None,
            f"{CHROMIUM} is missing and installing it needs root: run `sudo apt-get install chromium`.",
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log = []
    for command in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "chromium", "fonts-liberation"],
    ):
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return (
                None,
                f"`{' '.join(command)}` took more than {timeout:.0f} s; Chromium could not be installed.",
            )
        log.append(done.stdout[-1500:] + done.stderr[-1500:])
        if done.returncode != 0:
            return (
                None,
                f"`{' '.join(command)}` failed (exit {done.returncode}): {log[-1].strip()[-600:]}",
            )
    if not CHROMIUM.exists():  # e.g. Ubuntu's chromium package is a snap stub
        return (
            None,
            f"apt-get installed chromium but {CHROMIUM} does not exist (a snap-only distribution?).",
        )
    return CHROMIUM, ""


# ------------------------------------------------------------------------- JupyterLab
def free_port() -> int:
    """A free local TCP port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Lab:
    """A running JupyterLab server."""

    url: str
    token: str
    root: Path
    process: subprocess.Popen[bytes]
    log: Path

    def api(self, method: str, path: str) -> Any:
        """Call the server's REST API; returns the decoded JSON (or None)."""
        request = urllib.request.Request(
            f"{self.url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else None

    def page_url(self, relative: str) -> str:
        """URL that opens a file of the server's root folder in JupyterLab."""
        return f"{self.url}/lab/tree/{relative}?token={self.token}&reset"

    def shutdown_kernels(self) -> None:
        """Shut every running kernel down (frees memory between notebooks)."""
        for session in self.api("GET", "/api/sessions") or []:
            self.api("DELETE", f"/api/sessions/{session['id']}")
        for kernel in self.api("GET", "/api/kernels") or []:
            self.api("DELETE", f"/api/kernels/{kernel['id']}")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def _lab_settings(folder: Path) -> None:
    """User settings for the private JupyterLab: every cell in the DOM, no news, no update checks."""
    settings = {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
    }
    for name, value in settings.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


@contextmanager
def jupyter_lab(
    root: Path,
    state: Path,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    python: Path | str | None = None,
) -> Iterator[Lab]:
    """Start JupyterLab from this environment on a free port, serving ``root``; stop it on exit.

    Config, runtime, settings and workspace folders are private (under ``state``), so a
    user's own JupyterLab set-up cannot interfere; the private config folder also comes
    before the environment's (``JUPYTER_PREFER_ENV_PATH=0``), so what a test writes there
    wins. The server and its kernels run in their own process group, which is terminated
    (then killed) on exit, even after a failure. ``python`` runs JupyterLab from another
    environment (default: this one).
    """
    python = str(python or sys.executable)
    port, token = free_port(), secrets.token_hex(16)
    for sub in ("config", "runtime", "settings", "workspaces", "data"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    _lab_settings(state / "settings")
    # window.jupyterapp lets the test use JupyterLab's own commands; no news or update checks.
    lab_config = {
        "expose_app_in_browser": True,
        "news_url": None,
        "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
    }
    (state / "config" / "jupyter_server_config.json").write_text(json.dumps({"LabApp": lab_config}))
    server_env = {
        **os.environ,
        **(env or {}),
        "JUPYTER_CONFIG_DIR": str(state / "config"),
        "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
        "JUPYTER_DATA_DIR": str(state / "data"),
        "JUPYTERLAB_SETTINGS_DIR": str(state / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(state / "workspaces"),
        "JUPYTER_PREFER_ENV_PATH": "0",
        "PATH": f"{Path(python).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    for name in ("TINYML_COURSE_HEADLESS", "NBGRADER_EXECUTION", "JPY_SESSION_NAME"):
        server_env.pop(name, None)
    command = [
        python, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0",
    ]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
        command.append("--ServerApp.allow_root=True")
    log = state / "jupyterlab.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=server_env,
            cwd=root,
            start_new_session=True,
        )
    lab = Lab(f"http://127.0.0.1:{port}", token, root, process, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"JupyterLab exited with code {process.returncode}:\n{lab.log_tail()}"
                )
            try:
                lab.api("GET", "/api/status")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"JupyterLab did not answer within {timeout:.0f} s:\n{lab.log_tail()}"
                    ) from None
                time.sleep(0.5)
        yield lab
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes], grace: float = 20) -> None:
    """Terminate the server's process group (server and kernels), then kill what is left."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, 15)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    try:  # kernels are in the same group; make sure none outlives the test
        os.killpg(process.pid, 9)
    except (ProcessLookupError, PermissionError):
        pass
    if process.poll() is None:
        process.wait(timeout=grace)


def copy_notebook(source: Path, folder: Path) -> Path:
    """Copy a notebook (with a Python 3 kernelspec, so no kernel dialog opens) into ``folder``."""
    nb = json.loads(Path(source).read_text())
    nb.setdefault("metadata", {})["kernelspec"] = KERNELSPEC
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / Path(source).name
    target.write_text(json.dumps(nb, indent=1))
    return target


def explorer_notebook(path: Path) -> Path:
    """A small notebook that shows all three explorers (on seeded test data)."""
    import nbformat

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": KERNELSPEC})
    nb.cells = [
        nbformat.v4.new_markdown_cell(
            "# Explorers in the browser\nTest data for the browser test (seeded, not course results)."
        ),
        nbformat.v4.new_code_cell(
            "import tinyml_course\nimport numpy as np\n\nrng = np.random.default_rng(0)"
        ),
        nbformat.v4.new_code_cell(
            "from tinyml_course.explorers import quantization_explorer\n\n"
            "kernel = rng.normal(size=(3, 3, 8, 16)) * np.geomspace(0.05, 1.0, 16)\n"
            "quantization_explorer(kernel)"
        ),
        nbformat.v4.new_code_cell(
            "from tinyml_course.explorers import pruning_explorer\n\n"
            "pruning_explorer(kernel, [0.0, 0.5, 0.7, 0.8, 0.9, 0.95], [0.9, 0.9, 0.89, 0.87, 0.8, 0.6])"
        ),
        nbformat.v4.new_code_cell(
            "from tinyml_course.explorers import early_exit_explorer\n\n"
            "labels = rng.integers(0, 10, 500)\n"
            "def exit_probs(sharpness):\n"
            "    logits = rng.normal(size=(500, 10)) + sharpness * np.eye(10)[labels]\n"
            "    e = np.exp(logits - logits.max(1, keepdims=True))\n"
            "    return e / e.sum(1, keepdims=True)\n"
            "early_exit_explorer([exit_probs(1.5), exit_probs(3.0), exit_probs(5.0)], labels, [20_000, 60_000, 150_000])"
        ),
    ]
    nbformat.write(nb, path)
    return path


# ------------------------------------------------------------------------- the page
_NOTEBOOK_STATE = """(path) => {
  const app = window.jupyterapp;
  if (!app) return {ready: false, why: 'JupyterLab app not loaded'};
  const w = app.shell.currentWidget;
  if (!w || !w.context || w.context.path !== path) return {ready: false, why: 'notebook not open'};
  const session = w.sessionContext;
  const kernel = session && session.session && session.session.kernel;
  const cells = [];
  if (w.content && w.content.widgets) {
    w.content.widgets.forEach((cell, index) => {
      const m = cell.model;
      if (m.type !== 'code') return;
      const outputs = m.outputs ? m.outputs.toJSON() : [];
      const prompt = cell.node.querySelector('.jp-InputPrompt');
      cells.push({
        index, count: m.executionCount, source: m.sharedModel.getSource().trim().length > 0,
        running: prompt ? prompt.textContent.includes('*') : false,
        errors: outputs.filter(o => o.output_type === 'error').map(o => o.ename + ': ' + o.evalue),
        stderr: outputs.filter(o => o.output_type === 'stream' && o.name === 'stderr').length,
      });
    });
  }
  return {ready: Boolean(w.context.isReady && session && session.isReady && kernel),
          kernel: kernel ? kernel.status : null, cells};
}"""


def notebook_state(page: Any, path: str) -> dict[str, Any]:
    """The open notebook's kernel status and, per code cell, run count, errors and stderr."""
    return page.evaluate(_NOTEBOOK_STATE, path)


def wait_until(check: Any, timeout: float, what: str, poll: float = 1.0) -> Any:
    """Poll ``check()`` until it returns something truthy; raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what} (last state: {last!r})")


def open_notebook(page: Any, lab: Lab, relative: str, *, timeout: float = 180) -> None:
    """Open a notebook in JupyterLab and wait until its kernel is idle."""
    page.goto(lab.page_url(relative), wait_until="domcontentloaded", timeout=timeout * 1000)

    def idle() -> bool:
        state = notebook_state(page, relative)
        return bool(state.get("ready") and state.get("kernel") == "idle")

    wait_until(idle, timeout, f"{relative} to open with an idle kernel")


def run_all_cells(page: Any, relative: str, *, timeout: float = 900) -> dict[str, Any]:
    """Run all cells (JupyterLab's own Run All command) and wait until every cell is done.

    Done means: the kernel is idle, no prompt shows ``[*]``, and every code cell has run
    or the run stopped at an error; the state is stable for 3 s. Returns the final state.
    """
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")

    def started() -> bool:
        cells = notebook_state(page, relative)["cells"]
        return any(c["running"] or c["count"] for c in cells)

    wait_until(started, 60, "Run All to start")
    stable_since: list[float] = []

    def finished() -> dict[str, Any] | None:
        state = notebook_state(page, relative)
        if state.get("kernel") in ("dead", "autorestarting", "restarting"):
            raise RuntimeError(
                f"the kernel of {relative} died while running (out of memory?): {state.get('kernel')}"
            )
        cells = [c for c in state["cells"] if c["source"]]
        stopped = any(c["errors"] for c in cells)
        done = state["kernel"] == "idle" and not any(c["running"] for c in cells)
        done = done and (stopped or all(c["count"] for c in cells))
        if not done:
            stable_since.clear()
            return None
        stable_since.append(time.monotonic())
        return state if stable_since[-1] - stable_since[0] >= 3 else None

    return wait_until(finished, timeout, f"all cells of {relative} to finish", poll=1.0)
