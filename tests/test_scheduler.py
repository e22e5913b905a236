"""The scheduler's optimum equals exhaustive search, and its memory model equals TFLM's replay."""

from __future__ import annotations

import random
import time

import pytest
from exhaustive import optimum
from randgraphs import (
    all_topological_orders,
    model_of,
    random_order,
    random_problems,
    random_subgraph,
)

from tflite_reorder.memory import build_problem, peak, simulate, step_costs
from tflite_reorder.reductions import canonical
from tflite_reorder.scheduler import _context, ctx_macros, schedule

N_GRAPHS = 600


def _truth(sg, order, inplace):
    return simulate(model_of(sg), [order], inplace=inplace).lower_bound


@pytest.mark.parametrize("inplace", [False, True])
def test_optimum_equals_brute_force(inplace):
    rng = random.Random(1234 + inplace)
    for case, (sg, p) in enumerate(random_problems(rng, N_GRAPHS // 2, (2, 8), inplace)):
        orders = list(all_topological_orders(sg))
        best = min(_truth(sg, o, inplace) for o in orders)
        res = schedule(p, time_limit=30)
        assert res.optimal, case
        assert res.peak == best, (case, res.peak, best)
        assert sg.is_topological(res.order)
        assert _truth(sg, res.order, inplace) == res.peak
        assert res.lower_bound <= best


def test_step_costs_match_tflm_replay():
    """The scheduler's incremental costs and the TFLM lifetime replay agree on every order."""
    rng = random.Random(7)
    checked = 0
    for _ in range(150):
        sg = random_subgraph(rng, rng.randint(2, 7))
        for inplace in (False, True):
            p = build_problem(sg, inplace=inplace)
            for order in list(all_topological_orders(sg))[:30]:
                assert peak(p, order) == _truth(sg, order, inplace)
                checked += 1
    assert checked > 1000


def test_time_limit_returns_anytime_answer():
    rng = random.Random(99)
    sg = random_subgraph(rng, 60)
    p = build_problem(sg)
    res = schedule(p, time_limit=0.0, max_states=10)
    assert sg.is_topological(res.order)
    assert not res.optimal and res.stopped
    # The reported peak is the order's, replayed independently (TFLM's own lifetimes) ...
    assert res.peak == _truth(sg, res.order, inplace=True)
    # ... and the bound is a bound: no valid order, random or found, goes below it.
    assert res.lower_bound <= min(_truth(sg, random_order(rng, p), True)
                                  for _ in range(200))


@pytest.mark.parametrize("general", [False, True])
@pytest.mark.parametrize("inplace", [False, True])
def test_sources_late_keeps_the_optimum(inplace, general):
    """With many DEQUANTIZE-like sources the macro search still equals brute force."""
    rng = random.Random(77 + inplace + 2 * general)
    with_sources = 0
    for case in range(200):
        sg = random_subgraph(rng, rng.randint(3, 10), source_share=0.4)
        p = build_problem(sg, inplace=inplace)
        ctx = _context(p, general_sources=general)
        with_sources += ctx.source != 0
        best = optimum(p)
        res = schedule(p, time_limit=30, ctx=ctx)
        assert sg.is_topological(res.order), case
        assert res.optimal and res.peak == best, (case, res.peak, best)
        assert _truth(sg, res.order, inplace) == best
    assert with_sources > 80


def test_canonical_order_never_raises_the_peak():
    """Moving sources to just before their first consumer never raises an order's peak."""
    rng = random.Random(5)
    lowered = 0
    for sg, p in random_problems(rng, 300, (3, 14), source_share=0.4):
        ctx = _context(p, general_sources=True)
        order = random_order(rng, p)
        canon = canonical(ctx_macros(ctx), order)
        assert sg.is_topological(canon)
        assert peak(p, canon) <= peak(p, order)
        lowered += peak(p, canon) < peak(p, order)
    assert lowered > 20


@pytest.mark.parametrize("limit", [0.0, 0.05])
def test_never_worse_than_the_stored_order(limit, monkeypatch):
    """300 random 40-80-op graphs stopped at a limit: the answer is never worse than the
    stored order, for the ops' own order and for a random stored order, with and without
    the split into sub-problems."""
    from tflite_reorder import scheduler

    rng = random.Random(2026 + int(limit * 100))
    stopped = 0
    for case in range(300):
        monkeypatch.setattr(scheduler, "SPLIT_OPS", 0 if case % 3 == 0 else 1000)
        sg = random_subgraph(rng, rng.randint(40, 80),
                             source_share=rng.choice([0.0, 0.2, 0.5]))
        p = build_problem(sg, inplace=rng.random() < 0.5)
        stored = list(range(p.n_ops)) if case % 2 else random_order(rng, p)
        res = schedule(p, time_limit=limit, stored=None if case % 2 else stored)
        assert sg.is_topological(res.order), case
        assert res.peak <= peak(p, stored), (case, res.peak, peak(p, stored))
        stopped += not res.optimal
    assert stopped > 30  # the limits did stop searches


def test_improvement_never_worse_and_reaches_the_optimum():
    """Re-solving windows at the peak: a valid order, never worse, optimal when one window
    covers a small graph."""
    from tflite_reorder.improve import improve_order
    from tflite_reorder.memory import initial_live, resident_after_inputs
    from tflite_reorder.scheduler import _step, search

    rng = random.Random(31)
    better = 0
    for case, (sg, p) in enumerate(random_problems(rng, 200, (3, 9), source_share=0.2)):
        ctx = _context(p)
        order = canonical(ctx_macros(ctx), random_order(rng, p))
        before = peak(p, order)
        steps = max(step_costs(p, order))
        got, worst = improve_order(ctx, 0, (1 << p.n_ops) - 1, resident_after_inputs(p), order,
                                   steps, 0, time.monotonic() + 5, search, _step)
        assert sg.is_topological(got), case
        assert peak(p, got) <= before
        assert max(worst, initial_live(p)) == peak(p, got)
        assert peak(p, got) == optimum(p), case
        better += peak(p, got) < before
    assert better > 30


@pytest.mark.parametrize("inplace", [False, True])
def test_per_state_bounds_keep_the_optimum(inplace, monkeypatch):
    """With per-state closure bounds from the first state on, still the brute-force optimum."""
    from tflite_reorder import bounds, scheduler

    if bounds._ortools_flow is None:
        pytest.skip("the optional solver extra (ortools) is not installed")
    monkeypatch.setattr(scheduler, "CLOSURE_AFTER", 0)
    monkeypatch.setattr(scheduler, "CLOSURE_CANDIDATES", 8)
    rng = random.Random(404 + inplace)
    for case, (sg, p) in enumerate(random_problems(rng, 150, (3, 10), inplace, 0.2)):
        res = schedule(p, time_limit=30)
        assert res.optimal and res.peak == optimum(p), case
        assert sg.is_topological(res.order)


@pytest.mark.parametrize("inplace", [False, True])
def test_split_into_pieces_keeps_the_optimum(inplace, monkeypatch):
    """Split at cut ops into sub-problems (as large graphs are): still the optimum."""
    from tflite_reorder import scheduler

    monkeypatch.setattr(scheduler, "SPLIT_OPS", 0)
    rng = random.Random(505 + inplace)
    for case, (sg, p) in enumerate(random_problems(rng, 200, (2, 10), inplace, 0.3)):
        res = schedule(p, time_limit=30)
        assert sg.is_topological(res.order), case
        assert res.optimal and res.peak == optimum(p), case
        assert _truth(sg, res.order, inplace) == res.peak


@pytest.mark.parametrize("max_states", [3, 10**6])
def test_anytime_phases_keep_the_optimum_and_the_bound(max_states, monkeypatch):
    """With the first search pass stopped at once, the later phases (beam starts, root
    closure and pair bounds, a second pass, window re-solves) still give a valid order never
    worse than the stored one, a lower bound at most the brute-force optimum, and, when the
    second pass may finish, the optimum itself."""
    from tflite_reorder import scheduler

    monkeypatch.setattr(scheduler, "QUICK_STATES", 1)
    rng = random.Random(606 + max_states)
    opened = 0
    for case, (sg, p) in enumerate(random_problems(rng, 150, (3, 10), source_share=0.2)):
        best = optimum(p)
        res = schedule(p, time_limit=2, max_states=max_states)
        assert sg.is_topological(res.order), case
        assert peak(p, res.order) == res.peak >= best >= res.lower_bound, case
        assert res.peak <= peak(p, list(range(p.n_ops)))
        assert res.optimal == (res.peak == res.lower_bound)
        if max_states > 10:
            assert res.optimal and res.peak == best, case
        opened += res.states > 1
    assert opened > 20


def _completion_optima(p):
    """Exhaustively, per executed set: the least peak of a completion (TFLM's rule,
    ``exhaustive.live_at``), memoised."""
    from functools import cache

    from exhaustive import live_at

    preds = [set(ps) for ps in p.preds]

    @cache
    def best(done: frozenset[int]) -> int:
        if len(done) == p.n_ops:
            return 0
        return min(max(live_at(p, done, v), best(done | {v}))
                   for v in range(p.n_ops) if v not in done and preds[v] <= done)

    return best


@pytest.mark.parametrize("inplace", [False, True])
def test_dominance_lemma_against_brute_force(inplace):
    """``scheduler.dominated``'s lemma: in any downset S, a ready macro whose change of
    resident bytes is <= 0 (whatever its step) leads to a state from which the least
    completion peak is no higher than from S. Checked exhaustively over every downset of
    random graphs (sources run late included), against the independent brute force."""
    from tflite_reorder import scheduler

    rng = random.Random(77 + inplace)
    checked = strict = 0
    for _sg, p in random_problems(rng, 120, (3, 9), inplace, 0.25):
        ctx = _context(p)
        step = scheduler._mstep if ctx.source else scheduler._step
        best = _completion_optima(p)
        full = (1 << p.n_ops) - 1
        seen, todo = {0}, [0]
        while todo:
            S = todo.pop()
            for v in range(p.n_ops):
                if (S >> v) & 1 or ctx.pred_mask[v] & ~S:
                    continue
                if (S | (1 << v)) not in seen:
                    seen.add(S | (1 << v))
                    todo.append(S | (1 << v))
            if S == full:
                continue
            done = frozenset(u for u in range(p.n_ops) if (S >> u) & 1)
            for v in range(p.n_ops):
                if (S >> v) & 1 or (ctx.source >> v) & 1 or ctx.mpred[v] & ~S:
                    continue
                _, delta, S2, _ = step(ctx, S, v)
                if delta > 0:
                    continue
                after = frozenset(u for u in range(p.n_ops) if (S2 >> u) & 1)
                assert best(after) <= best(done), (S, v)
                checked += 1
                strict += best(after) < best(done)
    assert checked > 1500 and strict > 300, (checked, strict)


@pytest.mark.parametrize("inplace", [False, True])
def test_dominance_keeps_the_optimum_with_fewer_states(inplace):
    """The best-first search with and without dominance: the same (brute-force) optimum,
    a valid order, never more states, and fewer on some graphs (both loops: the compiled
    one where the core is built, the Python reference)."""
    from tflite_reorder import scheduler
    from tflite_reorder.memory import resident_after_inputs

    rng = random.Random(91 + inplace)
    fewer = 0
    for case, (sg, p) in enumerate(random_problems(rng, 150, (6, 14), inplace, 0.2)):
        ctx = _context(p)
        full = (1 << p.n_ops) - 1
        mem = resident_after_inputs(p)
        start = scheduler.greedy_order(ctx, 0, full, mem)
        floor = max(mem, int(ctx.static_lb.min()))
        best = optimum(p, max_states=400_000)
        for compiled in (False, True):
            scheduler.COMPILED_SEARCH, saved = compiled, scheduler.COMPILED_SEARCH
            try:
                runs = [scheduler.search(ctx, 0, full, mem, floor, start, time.monotonic() + 60,
                                         10**7, state_bounds=False, dominance=d)
                        for d in (False, True)]
            finally:
                scheduler.COMPILED_SEARCH = saved
            for r in runs:
                assert r.exact
                assert max(peak(p, r.order), floor) == max(best, floor), case
                assert sg.is_topological(r.order)
            assert runs[1].states <= runs[0].states, case
            fewer += runs[1].states < runs[0].states
    assert fewer > 60, fewer
