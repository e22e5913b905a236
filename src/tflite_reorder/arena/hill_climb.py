"""Local search over placement orders (TVM USMP's ``hill_climb``), stopping at the bound.

A plan is a priority order replayed with first fit. A buffer that ends at the head sits
too high because something placed before it took its gap; moving it earlier in the order
lets it claim a lower one. Moves that keep the head but shrink the number of buffers at it
are accepted too, so the search can walk across plateaus. Choices are seeded and the
number of moves is counted from the budget's work, so the same model gets the same plan
on any machine.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

from .blocks import Attempt, Blocks, Budget, attempt, head, lowest_fit, place
from .ordered_fit import candidates

NAME = "hill_climb"


def _score(blocks: Blocks, offsets: Sequence[int]) -> tuple[int, int]:
    h = head(blocks, offsets)
    return h, sum(1 for o, s in zip(offsets, blocks.size, strict=True) if o + s == h)


def climb(
    blocks: Blocks,
    starts: Sequence[Sequence[int]],
    lower: int,
    steps: int,
    deadline: float = float("inf"),
    seed: int = 0,
) -> tuple[list[int], list[int]]:
    """Best ``(order, offsets)`` after at most ``steps`` placements, shared equally by the
    ``starts`` (restarts); ``deadline`` (``time.monotonic()``) only guards the wall clock."""
    rng = random.Random(seed)
    best = None
    share = max(1, steps // max(len(starts), 1))
    for start in starts:
        if best is not None and best[2][0] <= lower:
            break
        order = list(start)
        offsets = place(blocks, order, lowest_fit)
        cur = _climb_from(blocks, (order, offsets, _score(blocks, offsets)), lower,
                          share - 1, deadline, rng)
        if best is None or cur[2] < best[2]:
            best = cur
        if time.monotonic() >= deadline:
            break
    assert best is not None
    return best[0], best[1]


def _climb_from(blocks, cur, lower, moves, deadline, rng):
    order, offsets, score = cur
    n = len(order)
    for _ in range(moves):
        if score[0] <= lower or n <= 1 or time.monotonic() >= deadline:
            break
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


def improve(blocks: Blocks, best: Attempt | None, budget: Budget) -> Attempt:
    """Climb from the best few greedy orders and from the best plan's offset order."""
    tried = candidates(blocks, budget)
    starts = [order for _, order, _ in tried[:3]]
    if best is not None:
        starts.insert(0, sorted(range(len(blocks)), key=lambda i: (best.offsets[i], i)))
    steps = max(len(starts), budget.placements(blocks) - len(tried))
    _, offsets = climb(blocks, starts, blocks.load, steps, budget.deadline)
    return attempt(blocks, offsets, NAME)
