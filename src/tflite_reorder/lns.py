"""Large-neighbourhood search on an order: exact window re-solves at the peak, with plateau
moves that let it leave an order whose every small window is already optimal.

The states before and after a window of consecutive ops are downsets, so
``scheduler.search`` between them re-orders the window exactly; steps outside the window do
not change (they depend on the state only). Two kinds of re-solve:

* **Peak moves**: a window around a step that reaches the order's peak P, searched with its
  floor at P - 1 (every window order below P has the same key, so the best-first search runs
  depth-first and stops at the first one, instead of proving the window's own optimum) and
  P as the upper bound. A success removes peak steps; when the last one goes, the peak falls.
* **Plateau moves**: when peak moves keep failing, a random window is re-solved at the level
  P itself (any window order of maximum step <= P, the first the search reaches). The peak
  does not rise, but the states inside the window change, and with them which windows around
  the remaining peak steps can be improved.

Window sizes are drawn log-uniformly, so most tries are cheap and some are large; a tenth
of the peak moves take a window of 96 ops up to the whole order with 8 times the budget
(on a 96-node RandWire stage these find what the small windows cannot). The best
order seen (least peak, then fewest peak steps) is kept and returned; every candidate's
steps are evaluated by ``improve.trace`` (the scheduler's own step rule), and a re-solve
that does not return exactly the window's ops is ignored, so the result is a valid order
between the two downsets, never worse than the one given. Nothing here is a lower bound.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable

from .improve import trace

MIN_WINDOW = 6  # ops: window sizes of peak moves are drawn log-uniformly in [6, 96] ...
MAX_WINDOW = 96  # ... (larger ones rarely finish within their budget)
PLATEAU_WINDOW = 64  # plateau moves: sizes in [6, 64]
TRY_SECONDS = 0.05  # per re-solve ...
TRY_STATES = 20_000  # ... and states
BIG_SHARE = 0.1  # of the peak moves: a window of 96 ops up to the whole order ...
BIG_BUDGET = 8  # ... with 8 times the budget
DEEP_SHARE = 0.5  # of the peak moves keyed from the floor (best-first) instead of peak - 1
FAILS_PER_PLATEAU = 8  # peak moves failed in a row before a plateau move
RESTART_AFTER = 40  # plateau moves without a new best before going back to the best order


def _window(rng: random.Random, n: int, i: int, lo: int, hi: int) -> tuple[int, int]:
    """A window [a, b) of a log-uniform size in [lo, hi] (at most n) holding position i."""
    hi = max(1, min(n, hi))
    lo = max(1, min(lo, hi))
    w = int(math.exp(rng.uniform(math.log(lo), math.log(hi + 1))))
    w = max(lo, min(hi, w))
    a = max(0, min(i - rng.randrange(w), n - w))
    return a, min(n, a + w)


def lns_order(ctx, start: int, mem: int, order: list[int], worst: int, floor: int,
              deadline: float, search: Callable, step: Callable, seed: int = 0,
              tries: int | None = None) -> tuple[list[int], int]:
    """An order of ``order``'s ops from downset ``start`` (resident bytes ``mem``) and its
    maximum step, at most ``worst`` (``order``'s); it stops at ``floor`` (a proven lower
    bound), when ``deadline`` passes or after ``tries`` moves (None: no such limit).

    ``search`` is ``scheduler.search``; ``step`` is the op step rule (``scheduler._step``)
    that evaluates every candidate order."""
    n = len(order)
    if n < 2 or worst <= floor:
        return order, worst
    rng = random.Random(seed)
    cur, states, costs = order, *trace(ctx, start, mem, order, step)
    cur_worst = worst
    best = (worst, costs.count(worst), order)
    fails = wandered = moves = 0
    while cur_worst > floor and time.monotonic() < deadline:
        moves += 1
        if tries is not None and moves > tries:
            break
        peak_move = fails < FAILS_PER_PLATEAU
        if peak_move:
            peaks = [i for i, c in enumerate(costs) if c == cur_worst]
            big = rng.random() < BIG_SHARE
            lo, hi = (MAX_WINDOW, n) if big else (MIN_WINDOW, MAX_WINDOW)
            a, b = _window(rng, n, rng.choice(peaks), lo, hi)
            got = _lower(ctx, states, cur[a:b], a, b, cur_worst, floor, rng, deadline,
                         search, BIG_BUDGET if big else 1)
        else:
            a, b = _window(rng, n, rng.randrange(n), MIN_WINDOW, PLATEAU_WINDOW)
            got = _shuffle(ctx, *states[a], cur[a:b], cur_worst, rng, step)
            fails = 0
            wandered += 1
        if got is None:
            fails += peak_move
            continue
        new = cur[:a] + got + cur[b:]
        new_states, new_costs = trace(ctx, start, mem, new, step)
        new_worst = max(new_costs)
        if new_worst > cur_worst or (peak_move and max(new_costs[a:b]) >= cur_worst):
            fails += peak_move  # (a search cut short returns a completion of its own)
            continue
        fails = 0
        cur, cur_worst, states, costs = new, new_worst, new_states, new_costs
        key = (cur_worst, costs.count(cur_worst))
        if key < best[:2]:
            best = (*key, cur)
            wandered = 0
        elif wandered > RESTART_AFTER:  # no better order for a while: back to the best
            cur, cur_worst = best[2], best[0]
            states, costs = trace(ctx, start, mem, cur, step)
            wandered = 0
    return best[2], best[0]


def _lower(ctx, states, part: list[int], a: int, b: int, worst: int, floor: int,
           rng: random.Random, deadline: float, search: Callable,
           budget: int = 1) -> list[int] | None:
    """A peak move: ``part`` (= order[a:b]) re-solved below ``worst`` by the exact search
    between the states around it, keyed from ``worst`` - 1 (depth-first: the first window
    order below ``worst``) or, a share ``DEEP_SHARE`` of the time, from ``floor``
    (best-first: the window's own optimum); None unless it returns a reordering."""
    target = floor if rng.random() < DEEP_SHARE else max(floor, worst - 1)
    S_a, M_a = states[a]
    until = min(deadline, time.monotonic() + budget * TRY_SECONDS)
    got = search(ctx, S_a, states[b][0], M_a, target, (part, worst), until,
                 budget * TRY_STATES, state_bounds=False).order
    if got == part or sorted(got) != sorted(part):
        return None
    return got


def _shuffle(ctx, S: int, M: int, part: list[int], cap: int, rng: random.Random,
             step: Callable, tries: int = 4) -> list[int] | None:
    """A random order of the window's ops ``part`` (run from downset S with M resident
    bytes) whose every step is at most ``cap``: at each step a random ready op among those
    that stay under it; None if every try runs into a state where none does."""
    ops = 0
    for v in part:
        ops |= 1 << v
    pred = ctx.pred_mask  # an order of ops (macros expanded)
    for _ in range(tries):
        out: list[int] = []
        left, T, R = ops, S, M
        while left:
            ok = []
            rest = left
            while rest:
                low = rest & -rest
                rest ^= low
                v = low.bit_length() - 1
                if pred[v] & ~T == 0:
                    up, delta, T2, _ = step(ctx, T, v)
                    if R + up <= cap:
                        ok.append((v, delta, T2))
            if not ok:
                break
            v, delta, T = rng.choice(ok)
            R += delta
            left &= ~(1 << v)
            out.append(v)
        if not left:
            return out if out != part else None
    return None
