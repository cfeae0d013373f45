"""Plan one static activation arena from tensor lifetimes, the way TFLM's GreedyMemoryPlanner does.

Every buffer (an activation tensor, or a kernel's scratch buffer) is alive from the layer that
writes it to the last layer that reads it. Two buffers alive at the same time must not overlap;
buffers whose lifetimes are disjoint may share bytes. The greedy plan sorts the buffers by size,
largest first, and places each at the lowest offset where it fits between the buffers already
placed that are alive at the same time (TFLite Micro's ``GreedyMemoryPlanner``).

Examples
--------
>>> plan = plan_arena([BufferRequest(100, 0, 1), BufferRequest(50, 1, 2), BufferRequest(100, 2, 3)])
>>> plan.offsets, plan.size
((0, 112, 0), 176)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class BufferRequest:
    """One buffer to place: ``size`` bytes alive from layer ``first`` to layer ``last`` (inclusive)."""

    size: int
    first: int
    last: int

    def overlaps_in_time(self, other: BufferRequest) -> bool:
        """True when both buffers are alive during at least one common layer."""
        return self.first <= other.last and other.first <= self.last


@dataclass(frozen=True)
class ArenaPlan:
    """Offsets (bytes, one per request, in request order) and the arena size they need."""

    offsets: tuple[int, ...]
    size: int
    requests: tuple[BufferRequest, ...]

    def check(self) -> None:
        """Raise ``AssertionError`` if two simultaneously alive buffers overlap in memory."""
        for i, a in enumerate(self.requests):
            assert self.offsets[i] + a.size <= self.size, f"buffer {i} ends past the arena"
            for j in range(i + 1, len(self.requests)):
                b = self.requests[j]
                if a.size == 0 or b.size == 0 or not a.overlaps_in_time(b):
                    continue
                disjoint = (
                    self.offsets[i] + a.size <= self.offsets[j]
                    or self.offsets[j] + b.size <= self.offsets[i]
                )
                assert disjoint, f"buffers {i} and {j} are alive together and overlap"


def _align(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


def plan_arena(requests: Sequence[BufferRequest], *, alignment: int = 16) -> ArenaPlan:
    """Greedy-by-size placement of ``requests`` in one arena.

    Parameters
    ----------
    requests : sequence of BufferRequest
        Sizes in bytes and lifetimes in layer indices (``first <= last``).
    alignment : int
        Every size is rounded up to this many bytes, so every offset is a multiple of it
        (TFLM aligns to 16).

    Returns
    -------
    ArenaPlan
        The offset of each request (same order) and the total size, a multiple of ``alignment``.

    Raises
    ------
    ValueError
        If a size is negative, a lifetime is reversed or ``alignment`` is not positive.
    """
    if isinstance(alignment, bool) or not isinstance(alignment, int) or alignment < 1:
        raise ValueError(f"alignment={alignment!r} must be a positive number of bytes, e.g. 16.")
    reqs = tuple(requests)
    for i, r in enumerate(reqs):
        if not isinstance(r, BufferRequest):
            raise ValueError(f"requests[{i}]={r!r} must be a BufferRequest(size, first, last).")
        if r.size < 0:
            raise ValueError(f"requests[{i}].size={r.size} must be >= 0 bytes.")
        if r.first > r.last:
            raise ValueError(
                f"requests[{i}] has first={r.first} > last={r.last}; a buffer must be written "
                "before it is last read."
            )
    sizes = [_align(r.size, alignment) for r in reqs]
    # Largest first; ties keep the request order (stable sort), like TFLM's in-place sort.
    order = sorted(range(len(reqs)), key=lambda i: -sizes[i])
    offsets = [0] * len(reqs)
    placed: list[int] = []  # indices placed so far, kept sorted by offset
    for i in order:
        if sizes[i] == 0:
            continue
        candidate = 0
        for j in placed:
            if not reqs[i].overlaps_in_time(reqs[j]) or sizes[j] == 0:
                continue
            if offsets[j] - candidate >= sizes[i]:
                break  # the gap before buffer j is big enough
            candidate = max(candidate, offsets[j] + sizes[j])
        offsets[i] = candidate
        placed.append(i)
        placed.sort(key=lambda k: offsets[k])
    total = max((offsets[i] + sizes[i] for i in range(len(reqs))), default=0)
    return ArenaPlan(tuple(offsets), total, reqs)
