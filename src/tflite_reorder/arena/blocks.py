"""The planners' common input and the one placement primitive they all share.

An arena plan only has to keep apart buffers whose lifetimes overlap; everything else is
free. So every planner sees the same reduced problem: sizes, inclusive ``[first, last]``
scope intervals (TFLM's ``DoesEntryOverlapInTime``) and, derived from them once, each
buffer's list of time conflicts. Offsets are bytes; sizes are already 16-byte multiples,
so a plan whose offsets are built from sums of sizes stays 16-byte aligned.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class Attempt:
    """One planner's answer: offsets per block, their head, and whether it is proven best."""

    offsets: tuple[int, ...]
    head: int
    method: str
    proven: bool = False


@dataclass(frozen=True)
class Blocks:
    """Buffers to place, in TFLM's ``AddBuffer`` order (which breaks its sort ties)."""

    size: tuple[int, ...]
    first: tuple[int, ...]
    last: tuple[int, ...]

    @classmethod
    def of(cls, buffers: Iterable) -> Blocks:
        """From anything with ``size``, ``first`` and ``last`` (e.g. ``memory.Buffer``)."""
        bs = list(buffers)
        return cls(
            tuple(b.size for b in bs), tuple(b.first for b in bs), tuple(b.last for b in bs)
        )

    def __len__(self) -> int:
        return len(self.size)

    @cached_property
    def conflicts(self) -> tuple[tuple[int, ...], ...]:
        """For each buffer, the others alive at some common scope (sweep over starts)."""
        n = len(self.size)
        by_first = sorted(range(n), key=lambda i: (self.first[i], i))
        out: list[list[int]] = [[] for _ in range(n)]
        active: list[int] = []
        for i in by_first:
            active = [j for j in active if self.last[j] >= self.first[i]]
            for j in active:
                out[i].append(j)
                out[j].append(i)
            active.append(i)
        return tuple(tuple(sorted(c)) for c in out)

    @cached_property
    def load(self) -> int:
        """Max total size alive at one scope: the lower bound of every plan."""
        events: dict[int, int] = {}
        for s, f, la in zip(self.size, self.first, self.last, strict=True):
            events[f] = events.get(f, 0) + s
            events[la + 1] = events.get(la + 1, 0) - s
        best = run = 0
        for t in sorted(events):
            run += events[t]
            best = max(best, run)
        return best


def lowest_fit(size: int, occupied: Sequence[tuple[int, int]]) -> int:
    """Lowest offset where ``size`` bytes miss every ``(offset, end)`` span (first fit).

    This is TFLM's gap search: walk the spans by offset keeping the highest end seen; the
    first gap of at least ``size`` wins, else the buffer goes on top.
    """
    top = 0
    for off, end in sorted(occupied):
        if off - top >= size:
            return top
        top = max(top, end)
    return top


def best_fit(size: int, occupied: Sequence[tuple[int, int]]) -> int:
    """Offset of the tightest gap that holds ``size`` bytes, else on top (XLA-style best fit).

    Filling the smallest hole keeps large holes for large buffers still to come.
    """
    top, best, best_gap = 0, -1, None
    for off, end in sorted(occupied):
        gap = off - top
        if gap >= size and (best_gap is None or gap < best_gap):
            best, best_gap = top, gap
        top = max(top, end)
    return top if best < 0 else best


def place(blocks: Blocks, order: Sequence[int], fit=lowest_fit) -> list[int]:
    """Place buffers one by one in ``order``, each against its already placed conflicts."""
    offsets = [-1] * len(blocks)
    size, conflicts = blocks.size, blocks.conflicts
    for i in order:
        spans = [(offsets[j], offsets[j] + size[j]) for j in conflicts[i] if offsets[j] >= 0]
        offsets[i] = fit(size[i], spans)
    return offsets


def attempt(blocks: Blocks, offsets: Sequence[int], method: str, proven: bool = False) -> Attempt:
    return Attempt(tuple(offsets), head(blocks, offsets), method, proven)


def head(blocks: Blocks, offsets: Sequence[int]) -> int:
    """Arena bytes a plan needs: TFLM's ``GetMaximumMemorySize``."""
    return max((o + s for o, s in zip(offsets, blocks.size, strict=True)), default=0)


def overlapping_pairs(blocks: Blocks, offsets: Sequence[int]) -> list[tuple[int, int]]:
    """Pairs alive together whose byte ranges intersect (empty for a valid plan)."""
    bad = []
    for i, cs in enumerate(blocks.conflicts):
        for j in cs:
            if i < j and offsets[i] < offsets[j] + blocks.size[j] \
                    and offsets[j] < offsets[i] + blocks.size[i]:
                bad.append((i, j))
    return bad
