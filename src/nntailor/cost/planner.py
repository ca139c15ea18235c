"""The TFLite Micro greedy arena planner, followed exactly so peak SRAM can be checked against TFLM.

TFLM's GreedyMemoryPlanner (tensorflow/lite/micro/memory_planner/greedy_memory_planner.cc):
sizes are aligned up to 16 bytes; buffers are ordered by size, largest first; each is placed at
the lowest offset where it does not overlap any already placed buffer whose lifetime
[first_use, last_use] (inclusive) intersects its own. Pure: sizes and lifetimes in, offsets out.
"""

from __future__ import annotations

import bisect
import itertools
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

    def _points(self) -> tuple[list[int], list[range]]:
        """The distinct first uses, and for each buffer the indices of those inside its lifetime.

        Two lifetimes intersect exactly when the later first use lies inside both, so a buffer needs checking
        only against those registered at one of the first uses inside its own lifetime: for a chain that is
        a handful, which keeps planning near-linear instead of scanning every placed buffer."""
        points = sorted({b.first_use for b in self.buffers})
        spans = [range(bisect.bisect_left(points, b.first_use), bisect.bisect_right(points, b.last_use))
                 for b in self.buffers]
        return points, spans

    def plan(self) -> GreedyPlanner:
        # TFLM writes online-planned buffers into its sort array from the tail (idx_from_tail--), then
        # bubble-sorts it stably by size, descending: equal sizes come out in REVERSE insertion order.
        # (REFERENCES.md says insertion order; the planner's source is the authority here.)
        order = sorted(reversed(range(len(self.buffers))), key=lambda i: -self.buffers[i].size)
        points, spans = self._points()
        live_at: list[list[tuple[int, int, int]]] = [[] for _ in points]  # (offset, rank, end) of placed buffers
        offsets: dict[str, int] = {}
        for rank, i in enumerate(order):
            buf = self.buffers[i]
            seen: set[int] = set()
            placed: list[tuple[int, int, int]] = []
            for k in spans[i]:
                for entry in live_at[k]:
                    if entry[1] not in seen:
                        seen.add(entry[1])
                        placed.append(entry)
            # by offset, equal offsets in placement order: TFLM's list of placed buffers, less those not live
            placed.sort()
            offset = 0
            for other_offset, _, other_end in placed:  # first gap that fits wins
                if offset + buf.size <= other_offset:
                    break
                offset = max(offset, other_end)
            offsets[buf.name] = offset
            for k in spans[i]:
                live_at[k].append((offset, rank, offset + buf.size))
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
        """Raise if two buffers that are live at the same time share bytes.

        Buffers live together are all live at the later one's first use; among those live at one step, sorted
        by offset, an overlap shows between neighbours."""
        offsets = self._offsets()
        points, spans = self._points()
        live_at: list[list[tuple[int, int, Buffer]]] = [[] for _ in points]
        for buf, span in zip(self.buffers, spans, strict=True):
            if buf.size:
                for k in span:
                    live_at[k].append((offsets[buf.name], offsets[buf.name] + buf.size, buf))
        for live in live_at:
            live.sort(key=lambda entry: entry[:2])
            for (a0, a1, a), (b0, b1, b) in itertools.pairwise(live):
                if b0 < a1:
                    raise AssertionError(f"buffers {a.name} [{a0}, {a1}) and {b.name} [{b0}, {b1}) overlap")

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
