"""The TFLite Micro greedy arena planner, followed exactly so peak SRAM can be checked against TFLM.

TFLM's GreedyMemoryPlanner (tensorflow/lite/micro/memory_planner/greedy_memory_planner.cc):
sizes are aligned up to 16 bytes; buffers are ordered by size, largest first; each is placed at
the lowest offset where it does not overlap any already placed buffer whose lifetime
[first_use, last_use] (inclusive) intersects its own. Pure: sizes and lifetimes in, offsets out.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

ALIGNMENT = 16


def align(size: int, alignment: int = ALIGNMENT) -> int:
    return -(-size // alignment) * alignment


@dataclass(frozen=True)
class Buffer:
    name: str
    size: int  # bytes, already aligned
    first_use: int
    last_use: int

    def overlaps_in_time(self, other: Buffer) -> bool:
        return self.first_use <= other.last_use and other.first_use <= self.last_use


class GreedyPlanner:
    """Collects buffers with ``add``, then ``plan``s them; ``offsets_`` holds the result."""

    def __init__(self, alignment: int = ALIGNMENT) -> None:
        self.alignment = alignment
        self.buffers: list[Buffer] = []
        self.offsets_: dict[str, int] | None = None

    def add(self, name: str, size: int, first_use: int, last_use: int) -> None:
        if size < 0 or first_use > last_use:
            raise ValueError(f"buffer {name}: size {size}, lifetime [{first_use}, {last_use}] is invalid")
        self.buffers.append(Buffer(name, align(size, self.alignment), first_use, last_use))
        self.offsets_ = None

    def plan(self) -> GreedyPlanner:
        # TFLM writes online-planned buffers into its sort array from the tail (idx_from_tail--), then
        # bubble-sorts it stably by size, descending: equal sizes come out in REVERSE insertion order.
        # (REFERENCES.md says insertion order; the planner's source is the authority here.)
        order = sorted(reversed(range(len(self.buffers))), key=lambda i: -self.buffers[i].size)
        placed: list[Buffer] = []  # kept sorted by offset; equal offsets in placement order, as TFLM's list
        placed_offsets: list[int] = []
        offsets: dict[str, int] = {}
        for i in order:
            buf = self.buffers[i]
            offset = 0
            for other_offset, other in zip(placed_offsets, placed, strict=True):  # first gap that fits wins
                if not buf.overlaps_in_time(other):
                    continue
                if offset + buf.size <= other_offset:
                    break
                offset = max(offset, other_offset + other.size)
            offsets[buf.name] = offset
            at = bisect.bisect_right(placed_offsets, offset)
            placed_offsets.insert(at, offset)
            placed.insert(at, buf)
        self.offsets_ = offsets
        return self

    def _offsets(self) -> dict[str, int]:
        if self.offsets_ is None:
            self.plan()
        assert self.offsets_ is not None
        return self.offsets_

    def peak_bytes(self) -> int:
        offsets = self._offsets()
        return max((offsets[b.name] + b.size for b in self.buffers), default=0)

    def live_bytes(self, step: int) -> int:
        """Total size of the buffers live at operator ``step``."""
        return sum(b.size for b in self.buffers if b.first_use <= step <= b.last_use)

    def lower_bound_bytes(self) -> int:
        """The largest total of buffers live at one step: no placement can do better."""
        delta: dict[int, int] = {}
        for b in self.buffers:  # sweep: a buffer joins at first_use and leaves after last_use
            delta[b.first_use] = delta.get(b.first_use, 0) + b.size
            delta[b.last_use + 1] = delta.get(b.last_use + 1, 0) - b.size
        live = best = 0
        for step in sorted(delta):
            live += delta[step]
            best = max(best, live)
        return best

    def check_no_overlap(self) -> None:
        """Raise if two buffers that are live at the same time share bytes."""
        offsets = self._offsets()
        for i, a in enumerate(self.buffers):
            for b in self.buffers[i + 1:]:
                if a.size == 0 or b.size == 0 or not a.overlaps_in_time(b):
                    continue
                a0, b0 = offsets[a.name], offsets[b.name]
                if a0 < b0 + b.size and b0 < a0 + a.size:
                    raise AssertionError(
                        f"buffers {a.name} [{a0}, {a0 + a.size}) and {b.name} [{b0}, {b0 + b.size}) overlap"
                    )

    def print_plan(self, width: int = 60) -> str:
        """One line per buffer: offset, size, lifetime and a bar of where it sits in the arena."""
        offsets = self._offsets()
        peak = max(self.peak_bytes(), 1)
        lines = [f"arena peak {peak} bytes, {len(self.buffers)} buffers"]
        for b in sorted(self.buffers, key=lambda b: (b.first_use, offsets[b.name])):
            start = offsets[b.name] * width // peak
            stop = max(start + 1, (offsets[b.name] + b.size) * width // peak)
            bar = " " * start + "#" * (stop - start)
            life = f"[{b.first_use:>3},{b.last_use:>3}]"
            lines.append(f"{offsets[b.name]:>9} {b.size:>9} {life} |{bar:<{width}}| {b.name}")
        text = "\n".join(lines)
        print(text)
        return text
