"""Keep C-level stderr noise (TensorFlow's converter logs) out of notebook output."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def capture_fd(fd: int = 2) -> Iterator[list[str]]:
    """Redirect a C-level file descriptor to a temporary file; the text lands in the list."""
    captured: list[str] = []
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), fd)
        try:
            yield captured
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            captured.append(tmp.read().decode("utf-8", "replace"))


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence C-level and Python stderr inside the block."""
    with capture_fd(2), contextlib.redirect_stderr(open(os.devnull, "w")):  # noqa: SIM115
        yield
