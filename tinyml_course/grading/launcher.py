"""Start a grading kernel under resource limits: ``python -m tinyml_course.grading.launcher``.

Usage: ``python -m tinyml_course.grading.launcher MEMORY_MB CPU_SECONDS FILE_MB PROCESSES
KERNEL_COMMAND...``. In the grading sandbox, ``$TINYML_GRADING_COPY`` is ``SOURCE:TARGET``: the
launcher first copies the submission's read-only folder ``SOURCE`` to ``TARGET`` (in the
sandbox's private ``/tmp``) and works there. Each limit is applied with ``setrlimit`` (0 leaves it unset): the address
space (``RLIMIT_AS``), CPU time (``RLIMIT_CPU``), the size of any file written
(``RLIMIT_FSIZE``) and the number of processes and threads (``RLIMIT_NPROC``). Then the
launcher replaces itself with the kernel, which inherits them. Kept free of heavy imports
(it is a submodule of a package whose ``__init__`` is light) so the kernel starts fast.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

_LIMITS = ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_NPROC")
_SCALE = (1024 * 1024, 1, 1024 * 1024, 1)


def main(argv: Sequence[str]) -> None:
    """Apply the four limits in ``argv[:4]`` and exec the command ``argv[4:]``."""
    if len(argv) < 5 or not all(a.isdigit() for a in argv[:4]):
        raise SystemExit(
            "usage: python -m tinyml_course.grading.launcher MEMORY_MB CPU_SECONDS FILE_MB "
            "PROCESSES KERNEL_COMMAND..."
        )
    copy = os.environ.get("TINYML_GRADING_COPY")
    if copy:
        import shutil

        source, _, target = copy.partition(os.pathsep)
        shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
        os.chdir(target)
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows: no rlimits
        resource = None  # type: ignore[assignment]
    if resource is not None:
        for name, value, scale in zip(_LIMITS, argv[:4], _SCALE, strict=True):
            if int(value) > 0 and hasattr(resource, name):
                limit = int(value) * scale
                resource.setrlimit(getattr(resource, name), (limit, limit))
    os.execvp(argv[4], list(argv[4:]))


if __name__ == "__main__":
    main(sys.argv[1:])
