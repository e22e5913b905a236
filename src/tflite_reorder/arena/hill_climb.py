"""Local search over placement orders (TVM USMP's ``hill_climb``), stopping at the bound.

A plan is a priority order replayed with first fit. A buffer that ends at the head sits
too high because something placed before it took its gap; moving it earlier in the order
lets it claim a lower one. Moves that keep the head but shrink the number of buffers at it
are accepted too, so the search can walk across plateaus. Choices are seeded; how far
it gets depends on the time it is given.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

from .blocks import Attempt, Blocks, attempt, head, lowest_fit, place
from .ordered_fit import candidates

NAME = "hill_climb"


def _score(blocks: Blocks, offsets: Sequence[int]) -> tuple[int, int]:
    h = head(blocks, offsets)
    return h, sum(1 for o, s in zip(offsets, blocks.size, strict=True) if o + s == h)


def climb(
    blocks: Blocks,
    starts: Sequence[Sequence[int]],
    lower: int,
    deadline: float,
    seed: int = 0,
) -> tuple[list[int], list[int]]:
    """Best ``(order, offsets)`` found before ``deadline`` (``time.monotonic()``)."""
    rng = random.Random(seed)
    best = None
    for start in starts:  # restarts: each start gets an equal share of the time
        if best is not None and best[2][0] <= lower:
            break
        order = list(start)
        offsets = place(blocks, order, lowest_fit)
        cur = (order, offsets, _score(blocks, offsets))
        share = (deadline - time.monotonic()) / max(len(starts), 1)
        stop = min(deadline, time.monotonic() + share) if len(starts) > 1 else deadline
        cur = _climb_from(blocks, cur, lower, stop, rng)
        if best is None or cur[2] < best[2]:
            best = cur
        if time.monotonic() >= deadline:
            break
    assert best is not None
    return best[0], best[1]


def _climb_from(blocks, cur, lower, stop, rng):
    order, offsets, score = cur
    n = len(order)
    while score[0] > lower and time.monotonic() < stop and n > 1:
        h = score[0]
        tops = [i for i in range(n) if offsets[i] + blocks.size[i] == h]
        victim = rng.choice(tops)
        pos = order.index(victim)
        if pos == 0:
            new = rng.randrange(1, n)  # the first one is at 0: demote it instead
            trial = order[:]
            trial.insert(new, trial.pop(0))
        else:
            new = rng.randrange(0, pos)
            trial = order[:]
            trial.insert(new, trial.pop(pos))
        t_off = place(blocks, trial, lowest_fit)
        t_score = _score(blocks, t_off)
        if t_score <= score:
            order, offsets, score = trial, t_off, t_score
    return order, offsets, score


def improve(blocks: Blocks, best: Attempt | None, deadline: float) -> Attempt:
    """Climb from the best few greedy orders and from the best plan's offset order."""
    starts = [order for _, order, _ in candidates(blocks, deadline)[:3]]
    if best is not None:
        starts.insert(0, sorted(range(len(blocks)), key=lambda i: (best.offsets[i], i)))
    _, offsets = climb(blocks, starts, blocks.load, deadline)
    return attempt(blocks, offsets, NAME)
