"""A memory-limited kernel for autograding.

nbgrader runs each submission in a fresh IPython kernel. A student cell that allocates
far too much memory should fail *in that cell* with a ``MemoryError`` (scoring that cell
0) rather than exhaust the grading machine or get the kernel killed, which would lose
the whole notebook. :class:`LimitedExecute` is nbgrader's ``Execute`` preprocessor with
a kernel manager that starts the kernel through :mod:`tinyml_course.grading_launcher`,
which sets ``RLIMIT_AS``
(the process's address space) and then ``exec``\\ s the real kernel command.

``nbgrader_config.py`` puts :class:`LimitedExecute` in place of ``Execute``; the limit is
``LimitedExecute.memory_limit_mb`` (0 disables it). Address-space limits are a POSIX
feature: on Windows the kernel starts unlimited; on macOS the kernel may ignore the limit.
TensorFlow reserves a lot of address space it never touches, so keep the limit a few GB
above the resident size a lab needs (the default, 6 GB, leaves room for TensorFlow).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from nbgrader.preprocessors import Execute
from traitlets import Integer

DEFAULT_MEMORY_LIMIT_MB = 6144


def limited_command(command: Sequence[str], memory_limit_mb: int) -> list[str]:
    """The kernel command wrapped so it starts with an address-space limit.

    Parameters
    ----------
    command : sequence of str
        The kernel's own command line (``python -m ipykernel_launcher -f ...``).
    memory_limit_mb : int
        The limit in MiB; 0 returns ``command`` unchanged. On platforms without
        ``resource.setrlimit`` (Windows) the command is returned unchanged.

    Raises
    ------
    ValueError
        If ``memory_limit_mb`` is negative.
    """
    if memory_limit_mb < 0:
        raise ValueError(f"memory_limit_mb must be >= 0 (0: no limit); got {memory_limit_mb}.")
    if memory_limit_mb == 0 or os.name != "posix":
        return list(command)
    return [
        sys.executable,
        "-m",
        "tinyml_course.grading_launcher",
        str(int(memory_limit_mb)),
        *command,
    ]


class LimitedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernels start under :func:`limited_command`."""

    memory_limit_mb: int = 0

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        return limited_command(super().format_kernel_cmd(extra_arguments), self.memory_limit_mb)


class LimitedExecute(Execute):
    """nbgrader's ``Execute`` preprocessor, with a memory limit on the kernel."""

    memory_limit_mb = Integer(
        DEFAULT_MEMORY_LIMIT_MB,
        help="Address-space limit of the grading kernel in MiB (0: none). A cell that "
        "allocates more raises MemoryError and scores 0; the rest of the notebook runs.",
    ).tag(config=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["kernel_manager_class"] = LimitedKernelManager
        super().__init__(*args, **kwargs)

    def create_kernel_manager(self) -> Any:
        km = super().create_kernel_manager()
        km.memory_limit_mb = int(self.memory_limit_mb)
        return km
