"""The planners' common input and the one placement primitive they all share.

An arena plan only has to keep apart buffers whose lifetimes overlap; everything else is
free. So every planner sees the same reduced problem: sizes, inclusive ``[first, last]``
scope intervals (TFLM's ``DoesEntryOverlapInTime``) and, derived from them once, each
buffer's list of time conflicts. Offsets are bytes; sizes are already 16-byte multiples,
so a plan whose offsets are built from sums of sizes stays 16-byte aligned.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class Attempt:
    """One planner's answer: offsets per block, their head, and whether it is proven best."""

    offsets: tuple[int, ...]
    head: int
    method: str
    proven: bool = False


# Conflict pairs (buffers alive together) kept in memory at most; a model above it has
# more than 10,000 buffers all alive at once, and planning it offline is refused.
MAX_CONFLICT_PAIRS = 30_000_000
# Conflict lists up to this long are handled in plain Python, longer ones with numpy.
_SMALL = 48


# Buffer placements one second of planning work stands for (a conflict pair counts 1/500 of
# one): about half what one core of a 2024 laptop-class machine places per second.
PLACEMENTS_PER_SECOND = 50_000


@dataclass(frozen=True)
class Budget:
    """What one planner stage may spend.

    ``work`` is in seconds of a reference core and is counted, not timed (placements, and
    CP-SAT's deterministic time), so a model gets the same plan on any machine and under
    any load; ``deadline`` (``time.monotonic()``) is a wall-clock guard that only a
    machine several times slower than the reference reaches.
    """

    work: float
    deadline: float = float("inf")

    def placements(self, blocks: Blocks) -> int:
        """How many full placements of ``blocks`` the work pays for (at least 1)."""
        return max(1, int(self.work * PLACEMENTS_PER_SECOND // place_cost(blocks)))


def place_cost(blocks: Blocks) -> float:
    """The work of one ``place`` over ``blocks``, in buffer placements."""
    return len(blocks) + len(blocks._sweep[1]) * 2 / 500 + 1


class TooManyConflicts(ValueError):
    """More buffer pairs alive together than ``MAX_CONFLICT_PAIRS``."""


@dataclass(frozen=True)
class Blocks:
    """Buffers to place, in TFLM's ``AddBuffer`` order (which breaks its sort ties).

    Buffers TFLM never reaches have the interval ``[-1, -1]`` ("stacked"): they all
    conflict with each other and with nothing else. Their pairs are never listed (a model
    can have 100,000 of them); every fit puts such a buffer on top of the stacked ones
    placed before it, which is exactly what a first or best fit among them does.
    """

    size: tuple[int, ...]
    first: tuple[int, ...]
    last: tuple[int, ...]
    # Rigid groups (pieces of one tensor with lifetimes of their own, ``arena.layout``):
    # block i sits at ``offset[leader[i]] + rel[i]``; empty = every block on its own.
    leader: tuple[int, ...] = ()
    rel: tuple[int, ...] = ()

    @cached_property
    def groups(self) -> dict[int, tuple[int, ...]]:
        """Leader -> the blocks of its group (leader first), for groups of two or more."""
        out: dict[int, list[int]] = {}
        for i, g in enumerate(self.leader):
            out.setdefault(g, []).append(i)
        return {g: tuple(sorted(m, key=lambda i: i != g)) for g, m in out.items()
                if len(m) > 1}

    def group_of(self, i: int) -> tuple[int, ...]:
        """The blocks placed together with ``i`` (just ``(i,)`` when it is on its own)."""
        return self.groups.get(self.leader[i], (i,)) if self.leader else (i,)

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
    def stacked(self) -> np.ndarray:
        """Mask of the ``[-1, -1]`` buffers (empty mask if another interval covers -1)."""
        first, last = np.asarray(self.first, np.int64), np.asarray(self.last, np.int64)
        mask = (first == -1) & (last == -1)
        if ((first <= -1) & (last >= -1) & ~mask).any():
            return np.zeros(len(self.size), dtype=bool)
        return mask

    @cached_property
    def _sweep(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Time conflicts of the non-stacked buffers, from one sweep over start times.

        For buffer i the conflicts starting before it (in start order) are
        ``earlier[ptr[i]:ptr[i+1]]``; those starting after it are a contiguous run of the
        start order, ``by_first[pos[i]+1:end[i]]``. Memory is one int per conflict pair.
        Raises TooManyConflicts above ``MAX_CONFLICT_PAIRS``.
        """
        n = len(self.size)
        first, last = np.asarray(self.first, np.int64), np.asarray(self.last, np.int64)
        live = np.flatnonzero(~self.stacked)
        by_first = live[np.lexsort((live, first[live]))]
        pos = np.full(n, -1, dtype=np.int64)
        pos[by_first] = np.arange(len(by_first))
        end = np.full(n, 0, dtype=np.int64)
        end[by_first] = np.searchsorted(first[by_first], last[by_first], side="right")
        counts = np.zeros(n, dtype=np.int64)
        chunks: dict[int, np.ndarray] = {}
        # the buffers alive at the current start, in start order: a Python list while
        # short, else the first ``k`` entries of ``buf`` (never converted back and forth)
        active: list[int] = []
        buf, k = np.zeros(0, dtype=np.int64), 0
        lasts = self.last
        total = 0
        for i in by_first.tolist():
            f = self.first[i]
            if k:
                keep = last[buf[:k]] >= f
                if not keep.all():
                    kept = buf[:k][keep]
                    k = len(kept)
                    buf[:k] = kept
                if k <= _SMALL:
                    active, k = buf[:k].tolist(), 0
            else:
                active = [j for j in active if lasts[j] >= f]
            alive = k or len(active)
            if alive:
                chunks[i] = buf[:k].copy() if k else np.asarray(active, dtype=np.int64)
                counts[i] = alive
                total += 2 * alive
                if total > MAX_CONFLICT_PAIRS:
                    raise TooManyConflicts(
                        f"more than {MAX_CONFLICT_PAIRS // 2} pairs of arena buffers are "
                        f"alive together; too many to plan offline")
            if not k and len(active) < _SMALL:
                active.append(i)
                continue
            if not k:
                buf, k, active = np.asarray(active, dtype=np.int64), len(active), []
            if k == len(buf):
                buf = np.concatenate((buf, np.zeros(max(k, 64), dtype=np.int64)))
            buf[k] = i
            k += 1
        ptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=ptr[1:])
        earlier = np.concatenate([chunks[i] for i in range(n) if i in chunks]) if chunks \
            else np.zeros(0, dtype=np.int64)
        return ptr, earlier, by_first, pos, end

    def conflicts_of(self, i: int) -> np.ndarray:
        """Buffers alive at some scope together with ``i`` (stacked buffers excluded)."""
        if self.stacked[i]:
            return np.zeros(0, dtype=np.int64)
        ptr, earlier, by_first, pos, end = self._sweep
        return np.concatenate((earlier[ptr[i]:ptr[i + 1]], by_first[pos[i] + 1:end[i]]))

    @cached_property
    def conflicts(self) -> tuple[tuple[int, ...], ...]:
        """For each buffer, all the others alive at some common scope (stacked included).

        Quadratic in the worst case: for tests and small inputs; planners use
        ``conflicts_of``, which never lists the stacked clique.
        """
        stacked = np.flatnonzero(self.stacked).tolist()
        out = []
        for i in range(len(self.size)):
            if self.stacked[i]:
                out.append(tuple(j for j in stacked if j != i))
            else:
                out.append(tuple(sorted(self.conflicts_of(i).tolist())))
        return tuple(out)

    def conflict_weight(self) -> np.ndarray:
        """Per buffer, the total size of the buffers it conflicts with."""
        size = np.asarray(self.size, dtype=np.int64)
        ptr, earlier, by_first, pos, end = self._sweep
        before = np.zeros(len(size), dtype=np.int64)
        if len(earlier):
            sums = np.concatenate(([0], np.cumsum(size[earlier])))
            before = sums[ptr[1:]] - sums[ptr[:-1]]
        run = np.concatenate(([0], np.cumsum(size[by_first])))
        after = np.zeros(len(size), dtype=np.int64)
        after[by_first] = run[end[by_first]] - run[pos[by_first] + 1]
        stacked = self.stacked
        after[stacked] = int(size[stacked].sum()) - size[stacked]
        return before + after

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


def _gaps(offs: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Spans sorted by offset: the top before each span, each gap, and the overall top."""
    order = np.lexsort((ends, offs))
    offs, ends = offs[order], ends[order]
    tops = np.maximum.accumulate(np.concatenate(([0], ends)))
    return tops[:-1], offs - tops[:-1], int(tops[-1])


def _lowest_fit_np(size: int, offs: np.ndarray, ends: np.ndarray) -> int:
    tops, gaps, top = _gaps(offs, ends)
    ok = np.flatnonzero(gaps >= size)
    return int(tops[ok[0]]) if len(ok) else top


def _best_fit_np(size: int, offs: np.ndarray, ends: np.ndarray) -> int:
    tops, gaps, top = _gaps(offs, ends)
    ok = np.flatnonzero(gaps >= size)
    return int(tops[ok[np.argmin(gaps[ok])]]) if len(ok) else top


_VECTORISED = {lowest_fit: _lowest_fit_np, best_fit: _best_fit_np}


def place(blocks: Blocks, order: Sequence[int], fit=lowest_fit) -> list[int]:
    """Place buffers one by one in ``order``, each against its already placed conflicts."""
    n = len(blocks)
    offsets = [-1] * n
    placed = np.full(n, -1, dtype=np.int64)
    size, size_np = blocks.size, np.asarray(blocks.size, dtype=np.int64)
    stacked, stacked_top = blocks.stacked, 0
    fast = _VECTORISED.get(fit)
    for i in order:
        if offsets[i] >= 0:  # placed with its group
            continue
        if blocks.leader and len(blocks.group_of(i)) > 1:
            base = group_fit(blocks, blocks.group_of(i), offsets)
            for j in blocks.group_of(i):
                offsets[j] = base + blocks.rel[j] - blocks.rel[blocks.leader[j]]
                placed[j] = offsets[j]
            continue
        if stacked[i]:  # on top of the stacked ones placed so far (they have no gaps)
            offsets[i] = stacked_top
            stacked_top += size[i]
        else:
            js = blocks.conflicts_of(i)
            if fast is not None and len(js) > _SMALL:
                offs = placed[js]
                keep = offs >= 0
                offs = offs[keep]
                offsets[i] = fast(size[i], offs, offs + size_np[js[keep]])
            else:
                offsets[i] = fit(size[i], [(offsets[j], offsets[j] + size[j])
                                           for j in js.tolist() if offsets[j] >= 0])
        placed[i] = offsets[i]
    return offsets


def group_fit(blocks: Blocks, members: Sequence[int], offsets: Sequence[int]) -> int:
    """Lowest offset of a rigid group's leader at which no member meets a placed conflict.

    Every offset below the answer is infeasible: when member ``j`` at ``base`` meets a
    span ``[o, e)``, it meets it at every base up to ``e - rel[j]`` too (it starts lower
    and ends no lower than ``o``), so the base jumps there; it only rises, and stops at a
    base where nothing is met (first fit for a group; best fit places groups this way too).
    """
    lead = blocks.leader[members[0]]
    mine = set(members)
    spans = []
    for j in members:
        rel = blocks.rel[j] - blocks.rel[lead]
        occ = [(offsets[c], offsets[c] + blocks.size[c]) for c in blocks.conflicts_of(j).tolist()
               if offsets[c] >= 0 and c not in mine]
        spans.append((rel, blocks.size[j], sorted(occ)))
    low = max(0, max(-rel for rel, _, _ in spans))
    base = low
    while True:
        jump = base
        for rel, size, occ in spans:
            a, b = base + rel, base + rel + size
            for o, e in occ:
                if o < b and a < e:
                    jump = max(jump, e - rel)
        if jump == base:
            return base
        base = jump


def attempt(blocks: Blocks, offsets: Sequence[int], method: str, proven: bool = False) -> Attempt:
    return Attempt(tuple(offsets), head(blocks, offsets), method, proven)


def head(blocks: Blocks, offsets: Sequence[int]) -> int:
    """Arena bytes a plan needs: TFLM's ``GetMaximumMemorySize``."""
    return max((o + s for o, s in zip(offsets, blocks.size, strict=True)), default=0)


def overlapping_pairs(blocks: Blocks, offsets: Sequence[int]) -> list[tuple[int, int]]:
    """Pairs alive together whose byte ranges intersect (empty for a valid plan).

    A valid plan is recognised in O(n log n) (``_disjoint``) without listing the conflict
    pairs; only an invalid one is searched pair by pair for what to report: each buffer
    against the conflicts that start before it, so every pair once; the stacked buffers,
    all alive together, by a sweep over their offsets.
    """
    if _disjoint(blocks, offsets):
        return []
    off = np.asarray(offsets, dtype=np.int64)
    size = np.asarray(blocks.size, dtype=np.int64)
    ptr, earlier, _, _, _ = blocks._sweep
    bad: list[tuple[int, int]] = []
    if len(earlier):
        owner = np.repeat(np.arange(len(size)), np.diff(ptr))
        hit = (off[owner] < off[earlier] + size[earlier]) \
            & (off[earlier] < off[owner] + size[owner])
        pairs = zip(owner[hit].tolist(), earlier[hit].tolist(), strict=True)
        bad += [(min(a, b), max(a, b)) for a, b in pairs]
    st = np.flatnonzero(blocks.stacked)
    if len(st) > 1:  # sorted by offset, each must start at or above every earlier end
        st = st[np.lexsort((st, off[st]))]
        ends = off[st] + size[st]
        reach = np.maximum.accumulate(ends)
        for k in np.flatnonzero(off[st][1:] < reach[:-1]).tolist():
            j = int(st[int(np.argmax(ends[: k + 1]))])  # the earlier one reaching furthest
            bad.append((min(j, int(st[k + 1])), max(j, int(st[k + 1]))))
    return sorted(set(bad))


def _disjoint(blocks: Blocks, offsets: Sequence[int]) -> bool:
    """Whether no two buffers alive together share a byte (``False`` also when unsure:
    with a zero-size buffer, which ``overlapping_pairs`` counts inside a range).

    One sweep over the start and end scopes keeps the byte ranges alive, sorted by offset
    and (so far) disjoint: a new range only has to clear its neighbours. The stacked
    buffers, alive together and with nothing else, are one sorted pass of their own.
    """
    size, first, last = blocks.size, blocks.first, blocks.last
    if 0 in size:
        return False
    stacked = blocks.stacked
    events = []
    for i in range(len(size)):
        if not stacked[i]:
            events.append((first[i], 1, i))  # at a scope, the ends (0) go before the starts
            events.append((last[i] + 1, 0, i))
    events.sort()
    alive: list[tuple[int, int, int]] = []  # (offset, end, buffer)
    for _, start, i in events:
        key = (offsets[i], offsets[i] + size[i], i)
        k = bisect.bisect_left(alive, key)
        if not start:
            del alive[k]
        elif (k and alive[k - 1][1] > key[0]) or (k < len(alive) and alive[k][0] < key[1]):
            return False
        else:
            alive.insert(k, key)
    ranges = sorted((offsets[i], offsets[i] + size[i])
                    for i in np.flatnonzero(stacked).tolist())
    return all(a[1] <= b[0] for a, b in zip(ranges, ranges[1:], strict=False))
