"""The grading sandbox: every graded kernel runs isolated, resource-limited and offline.

On Linux the kernel starts inside `bubblewrap <https://github.com/containers/bubblewrap>`_
(``bwrap``, the unprivileged sandbox Flatpak uses; no daemon, no Docker). The sandbox sees:

* read-only: the operating system (``/usr``, ``/etc``), the Python environment, the course
  library (``tinyml_course/``), the shipped ``datasets/`` and the public ``notebooks/``;
* a private, size-capped ``/tmp`` (memory-backed), where ``$HOME`` and the course's results
  folder point, and where the kernel works in a copy of its submission's folder
  (``autograded/<student>/<lab>/``, bound read-only and copied in by the launcher): whatever
  the kernel writes stays in the sandbox and is gone after;
* read-write: only the folder of the kernel's connection sockets;
* nothing else: not ``solutions/``, not the workspace (``source/``, ``release/``,
  ``gradebook.db``, other students), not the instructor's home or environment variables.

It has its own user, PID, network (loopback only), IPC and UTS namespaces, so it cannot reach
the network or any host port, and every process it starts dies with it. The kernel runs under
limits on address space, CPU time, file size and process count
(:mod:`tinyml_course.grading.launcher`). The notebook client stays outside and talks to the
kernel over ZMQ's ``ipc`` transport (Unix sockets in a folder shared with the sandbox), since
TCP loopback does not cross network namespaces.

:class:`SandboxedExecute` plugs this into nbgrader as its ``Execute`` preprocessor
(``nbgrader_config.py``). With ``sandbox=False`` (``--no-sandbox``) only the limits apply.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from nbgrader.preprocessors import Execute
from traitlets import Bool, Integer

from tinyml_course.paths import PACKAGE_DIR, repo_root

SANDBOX_HOME = "/tmp/home"
SANDBOX_RESULTS = "/tmp/results"
SANDBOX_WORKDIR = "/tmp/submission"  # the launcher copies the submission's folder here


@dataclass(frozen=True)
class Limits:
    """Resource limits of a graded kernel (0: no limit).

    Attributes
    ----------
    memory_mb : int
        Address space in MiB: a cell that allocates more raises ``MemoryError``.
    cpu_seconds : int
        CPU time of the whole kernel (all its threads), in seconds.
    file_mb : int
        Largest file the kernel may write, in MiB.
    processes : int
        Processes and threads the sandbox's user may run at once.
    tmp_mb : int
        Size of the sandbox's private ``/tmp`` (memory-backed), in MiB.
    """

    memory_mb: int = 6144
    cpu_seconds: int = 3600
    file_mb: int = 512
    processes: int = 512
    tmp_mb: int = 1024

    def __post_init__(self) -> None:
        for name in ("memory_mb", "cpu_seconds", "file_mb", "processes", "tmp_mb"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0 (0: no limit); got {value!r}.")


def launcher_command(command: Sequence[str], limits: Limits) -> list[str]:
    """``command`` started through :mod:`tinyml_course.grading.launcher` with ``limits``.

    On Windows (no rlimits) the command is returned unchanged.
    """
    if os.name != "posix":
        return list(command)
    return [
        sys.executable,
        "-m",
        "tinyml_course.grading.launcher",
        str(limits.memory_mb),
        str(limits.cpu_seconds),
        str(limits.file_mb),
        str(limits.processes),
        *command,
    ]


def _read_only_paths() -> list[Path]:
    """What the sandbox sees read-only besides the OS: the environment and the public course."""
    paths = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), PACKAGE_DIR}
    root = repo_root()
    if root is not None:  # the public parts only: never solutions/ or results/
        paths |= {root / "datasets", root / "notebooks", root / "pyproject.toml"}
    return sorted(p for p in paths if p.exists())


def bwrap_command(
    command: Sequence[str],
    *,
    workdir: Path,
    writable: Sequence[Path] = (),
    limits: Limits = Limits(),
    env: dict[str, str] | None = None,
) -> list[str]:
    """The ``bwrap`` command line that runs ``command`` in the grading sandbox.

    Parameters
    ----------
    command : sequence of str
        What to run inside (a kernel command line).
    workdir : Path
        The submission's folder: bound read-only; the launcher copies it to
        ``/tmp/submission`` inside and works there.
    writable : sequence of Path
        Further folders bound read-write at the same path (the kernel's socket folder).
    limits : Limits
        Resource limits, applied inside by the launcher.
    env : dict, optional
        Extra environment variables; the sandbox starts from an empty environment.
    """
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise RuntimeError(
            "bwrap (bubblewrap) is not installed; see tinyml_course.grading.sandbox."
        )
    args = [
        bwrap,
        "--unshare-user",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--uid", "1000",
        "--gid", "1000",
        "--hostname", "grading-sandbox",
        "--die-with-parent",
        "--new-session",
        "--cap-drop", "ALL",
        "--ro-bind", "/usr", "/usr",
        "--ro-bind", "/etc", "/etc",
        "--ro-bind-try", "/sys", "/sys",
    ]  # fmt: skip
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    args += ["--proc", "/proc", "--dev", "/dev"]
    if limits.tmp_mb and _bwrap_has_size(bwrap):  # bubblewrap >= 0.8
        args += ["--size", str(limits.tmp_mb * 1024 * 1024)]
    args += ["--tmpfs", "/tmp", "--dir", SANDBOX_HOME]
    for path in _read_only_paths():
        args += ["--ro-bind", str(path), str(path)]
    args += ["--ro-bind", str(Path(workdir).resolve()), str(Path(workdir).resolve())]
    for path in writable:
        args += ["--bind", str(Path(path).resolve()), str(Path(path).resolve())]
    variables = {
        "PATH": os.pathsep.join(
            [str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]
        ),
        "HOME": SANDBOX_HOME,
        "LANG": "C.UTF-8",
        "TMPDIR": "/tmp",
        "MPLCONFIGDIR": "/tmp/matplotlib",
        "TINYML_COURSE_RESULTS": SANDBOX_RESULTS,
        "NBGRADER_EXECUTION": "autograde",
        "PYTHONNOUSERSITE": "1",
        "TINYML_GRADING_COPY": f"{Path(workdir).resolve()}{os.pathsep}{SANDBOX_WORKDIR}",
        **(env or {}),
    }
    args += ["--clearenv"]
    for name, value in sorted(variables.items()):
        args += ["--setenv", name, value]
    args += ["--chdir", "/tmp", "--"]
    return args + launcher_command(command, limits)


@functools.lru_cache(maxsize=4)
def _bwrap_has_size(bwrap: str) -> bool:
    """Whether this bubblewrap can cap a tmpfs (``--size``, bubblewrap 0.8 and newer)."""
    done = subprocess.run([bwrap, "--help"], capture_output=True, text=True)
    return "--size" in done.stdout + done.stderr


@functools.lru_cache(maxsize=1)
def sandbox_status() -> tuple[bool, str]:
    """Whether the grading sandbox works on this machine, and why not when it does not.

    Returns
    -------
    (bool, str)
        ``(True, "bubblewrap <version>")`` or ``(False, reason and what to do)``.
    """
    if not sys.platform.startswith("linux"):
        return False, (
            f"the grading sandbox needs Linux (bubblewrap); this is {sys.platform}. Grade on a "
            "Linux machine (a VM or WSL 2 will do), or pass --no-sandbox to grade without "
            "isolation (results are marked unsandboxed)."
        )
    if shutil.which("bwrap") is None:
        return False, (
            "bubblewrap (bwrap) is not installed: install the OS package (Debian/Ubuntu: "
            "`sudo apt-get install bubblewrap`; Fedora: `sudo dnf install bubblewrap`), or pass "
            "--no-sandbox to grade without isolation (results are marked unsandboxed)."
        )
    with tempfile.TemporaryDirectory(prefix="tinyml-sandbox-check-") as tmp:
        probe = bwrap_command(
            [sys.executable, "-c", "import os; print(os.getuid())"], workdir=Path(tmp)
        )
        try:
            done = subprocess.run(probe, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as err:
            return (
                False,
                f"bubblewrap could not start: {err}. Pass --no-sandbox to grade without it.",
            )
    if done.returncode != 0 or done.stdout.strip() != "1000":
        why = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return False, (
            f"bubblewrap is installed but cannot create a sandbox here ({why}); user namespaces "
            "may be disabled (a container without them, or a kernel setting such as "
            "kernel.apparmor_restrict_unprivileged_userns). Allow them, or pass --no-sandbox."
        )
    version = subprocess.run(["bwrap", "--version"], capture_output=True, text=True).stdout
    return True, version.strip() or "bubblewrap"


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel starts in :func:`bwrap_command` (or only limited)."""

    sandboxed: bool = False
    limits: Limits = Limits()
    workdir: Path | None = None
    socket_dir: Path | None = None

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        command = super().format_kernel_cmd(extra_arguments)
        if not self.sandboxed:
            return launcher_command(command, self.limits)
        assert self.workdir is not None and self.socket_dir is not None
        return bwrap_command(
            command,
            workdir=self.workdir,
            writable=[self.socket_dir],
            limits=self.limits,
            # Its parent is outside the PID namespace; 1 tells ipykernel not to poll for it
            # (and not to print its "Ctrl-C will not work" note on the grader's terminal).
            env={"JPY_PARENT_PID": "1"},
        )

    async def _async_pre_start_kernel(self, **kw: Any) -> Any:
        out = await super()._async_pre_start_kernel(**kw)
        if self.sandboxed:
            # The kernel is in its own session and PID namespace: a SIGINT to the bwrap
            # process would not reach it, so interrupt over the control channel instead.
            self.kernel_spec.interrupt_mode = "message"
        return out


def sandboxed_kernel_manager(
    *, sandboxed: bool, limits: Limits, workdir: Path | None, **kwargs: Any
) -> SandboxedKernelManager:
    """A :class:`SandboxedKernelManager` ready to start; its socket folder is made here."""
    if sandboxed:
        if workdir is None:
            raise ValueError("a sandboxed kernel needs workdir (the submission's folder).")
        socket_dir = Path(tempfile.mkdtemp(prefix="tinyml-kernel-"))
        km = SandboxedKernelManager(transport="ipc", ip=str(socket_dir / "kernel"), **kwargs)
        km.connection_file = str(socket_dir / "connection.json")
        km.socket_dir = socket_dir
    else:
        km = SandboxedKernelManager(**kwargs)
    km.sandboxed, km.limits, km.workdir = sandboxed, limits, workdir
    return km


class SandboxedExecute(Execute):
    """nbgrader's ``Execute`` with each kernel in the grading sandbox and under limits."""

    sandbox = Bool(
        True,
        help="Run the kernel in the bubblewrap sandbox (Linux). False grades without "
        "isolation (the memory and other limits still apply).",
    ).tag(config=True)
    memory_limit_mb = Integer(
        Limits.memory_mb,
        help="Address-space limit of the grading kernel in MiB (0: none). A cell that "
        "allocates more raises MemoryError and scores 0; the rest of the notebook runs.",
    ).tag(config=True)
    cpu_seconds = Integer(Limits.cpu_seconds, help="CPU-time limit of the kernel (0: none).").tag(
        config=True
    )
    file_size_mb = Integer(Limits.file_mb, help="Largest file the kernel may write (0: none).").tag(
        config=True
    )
    max_processes = Integer(Limits.processes, help="Processes and threads (0: no limit).").tag(
        config=True
    )

    def limits(self) -> Limits:
        """The configured :class:`Limits`."""
        return Limits(
            int(self.memory_limit_mb),
            int(self.cpu_seconds),
            int(self.file_size_mb),
            int(self.max_processes),
        )

    def create_kernel_manager(self) -> Any:
        path = (getattr(self, "resources", None) or {}).get("metadata", {}).get("path")
        if self.sandbox:
            ok, why = sandbox_status()
            if not ok:
                raise RuntimeError(f"grading sandbox unavailable: {why}")
        self.km = sandboxed_kernel_manager(
            sandboxed=bool(self.sandbox),
            limits=self.limits(),
            workdir=Path(path).resolve() if path else None,
            kernel_name=self.kernel_name or "python3",
            config=self.config,
        )
        return self.km

    def preprocess(self, nb: Any, resources: Any = None, km: Any = None) -> Any:
        try:
            return super().preprocess(nb, resources, km=km)
        finally:
            socket_dir = getattr(getattr(self, "km", None), "socket_dir", None)
            if socket_dir is not None:
                shutil.rmtree(socket_dir, ignore_errors=True)
