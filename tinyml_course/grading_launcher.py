"""Start a grading kernel under a memory limit: ``python -m tinyml_course.grading_launcher MB CMD...``.

Sets ``RLIMIT_AS`` (address space, in MiB) and replaces itself with ``CMD`` (the kernel),
which inherits the limit. Kept free of heavy imports so the kernel starts fast; see
:mod:`tinyml_course.grading_kernel` for how nbgrader uses it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence


def main(argv: Sequence[str]) -> None:
    """Apply the limit ``argv[0]`` (MiB) and exec the command ``argv[1:]``."""
    if len(argv) < 2 or not argv[0].isdigit():
        raise SystemExit(
            "usage: python -m tinyml_course.grading_launcher MEMORY_MB KERNEL_COMMAND..."
        )
    limit = int(argv[0]) * 1024 * 1024
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):  # pragma: no cover - platform without the limit
        pass
    os.execvp(argv[1], list(argv[1:]))


if __name__ == "__main__":
    main(sys.argv[1:])
