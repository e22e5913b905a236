"""Large-neighbourhood search (lns.py): the orders it returns are valid, their reported
maximum step is their true one, never worse than the order it starts from, and on small
graphs it reaches the brute-force optimum; its plateau moves never raise the peak."""

from __future__ import annotations

import random

from exhaustive import optimum
from randgraphs import random_order, random_problems

from tflite_reorder.improve import trace
from tflite_reorder.lns import _shuffle, lns_order
from tflite_reorder.memory import initial_live, peak, resident_after_inputs, step_costs
from tflite_reorder.reductions import canonical
from tflite_reorder.scheduler import _context, _step, ctx_macros, search

INF = float("inf")


def _start(rng, p):
    ctx = _context(p)
    order = canonical(ctx_macros(ctx), random_order(rng, p))
    return ctx, order, max(step_costs(p, order))


def test_never_worse_valid_and_honest_on_random_graphs():
    rng = random.Random(71)
    better = 0
    for case, (sg, p) in enumerate(random_problems(rng, 60, (12, 45), source_share=0.2)):
        ctx, order, worst = _start(rng, p)
        got, w = lns_order(ctx, 0, resident_after_inputs(p), order, worst, 0, INF, search,
                           _step, seed=case, tries=120)
        assert sg.is_topological(got), case
        assert max(w, initial_live(p)) == peak(p, got) <= peak(p, order), case
        better += peak(p, got) < peak(p, order)
    assert better > 30


def test_reaches_the_optimum_on_small_graphs():
    """Windows as large as the whole order, keyed from the floor, are the exact search."""
    rng = random.Random(72)
    for case, (sg, p) in enumerate(random_problems(rng, 150, (2, 10))):
        ctx, order, worst = _start(rng, p)
        got, w = lns_order(ctx, 0, resident_after_inputs(p), order, worst, 0, INF, search,
                           _step, seed=case, tries=80)
        assert sg.is_topological(got), case
        assert max(w, initial_live(p)) == peak(p, got) == optimum(p), case


def test_stops_at_the_floor():
    rng = random.Random(73)
    for case, (_sg, p) in enumerate(random_problems(rng, 30, (8, 20))):
        ctx, order, worst = _start(rng, p)
        got, w = lns_order(ctx, 0, resident_after_inputs(p), order, worst, worst, INF,
                           search, _step, seed=case, tries=50)
        assert (got, w) == (order, worst), case


def test_plateau_moves_stay_under_the_cap():
    """A shuffled window is a reordering of the window whose steps stay at or under the
    cap, so the order's other steps (which depend on the state only) are unchanged."""
    rng = random.Random(74)
    shuffled = 0
    for case, (sg, p) in enumerate(random_problems(rng, 80, (10, 30), source_share=0.2)):
        ctx, order, worst = _start(rng, p)
        mem = resident_after_inputs(p)
        states, costs = trace(ctx, 0, mem, order, _step)
        a = rng.randrange(len(order) - 1)
        b = rng.randint(a + 2, len(order))
        got = _shuffle(ctx, *states[a], order[a:b], worst, rng, _step)
        if got is None:
            continue
        shuffled += 1
        assert sorted(got) == sorted(order[a:b]) and got != order[a:b], case
        new = order[:a] + got + order[b:]
        assert sg.is_topological(new), case
        _, new_costs = trace(ctx, 0, mem, new, _step)
        assert max(new_costs[a:b]) <= worst, case
        assert new_costs[:a] == costs[:a] and new_costs[b:] == costs[b:], case
    assert shuffled > 40
