"""The decision search against brute force, and its compiled loop against the Python one."""

from __future__ import annotations

import random
import time

import pytest
from exhaustive import optimum
from randgraphs import random_problems, random_subgraph

from tflite_reorder import decision, scheduler, searchcore
from tflite_reorder.memory import build_problem, initial_live, peak, resident_after_inputs
from tools.bench import randwire_problem

needs_core = pytest.mark.skipif(
    bool(searchcore.unavailable()),
    reason=f"compiled search core: {searchcore.unavailable()}")


def _whole(p, compiled: bool, K: int, general: bool = False) -> decision.Decision:
    """``decide`` on the whole problem (from nothing run to every op run)."""
    ctx = scheduler._context(p, general_sources=general)
    full = (1 << p.n_ops) - 1
    step = scheduler._mstep if ctx.source else scheduler._step
    d = decision.decide(ctx, 0, full, resident_after_inputs(p), K, time.monotonic() + 60,
                        10**7, step, compiled)
    d.order = scheduler._expand(ctx, 0, d.heads) if d.heads is not None else None
    return d


@pytest.mark.parametrize("general", [False, True])
def test_decisions_equal_brute_force(general):
    """For every K from the live inputs to past the optimum: an order within K is found
    exactly when the optimum is at most K (and it is an order of peak <= K); otherwise the
    search proves none exists, and the least step above K it saw is a lower bound."""
    rng = random.Random(31 + general)
    proved = found = 0
    for case, (_sg, p) in enumerate(random_problems(rng, 100, (2, 8), source_share=0.3)):
        best = optimum(p)
        for K in range(initial_live(p), best + 3):
            d = _whole(p, False, K, general)
            assert not d.stopped
            if best <= K:
                assert d.order is not None, (case, K, best)
                assert sorted(d.order) == list(range(p.n_ops))
                assert peak(p, d.order) <= K, (case, K)
                found += 1
            else:
                assert d.proved, (case, K, best)
                assert d.over <= best, (case, K, d.over, best)
                proved += 1
    assert proved > 100 and found > 100


def test_over_is_a_lower_bound_on_larger_graphs():
    """Proofs on graphs of 10-14 ops: ``over`` never exceeds the optimum, and it equals it
    when K is just below the optimum (the optimum's own step is the least above K)."""
    rng = random.Random(5)
    checked = 0
    for _sg, p in random_problems(rng, 40, (10, 14)):
        best = optimum(p, max_states=400_000)
        d = _whole(p, False, best - 1)
        if best - 1 < initial_live(p):
            continue
        assert d.proved and d.over == best
        checked += 1
    assert checked > 20


@needs_core
@pytest.mark.parametrize("inplace", [False, True])
def test_compiled_loop_is_the_python_loop(inplace):
    """Same states in the same order: the same order found, state count, stop and
    ``over``, for K below, at and above each segment's starting peak (one and several
    64-bit words per state, sources run late, state limits that stop both)."""
    rng = random.Random(12 + inplace)
    compared = 0
    for case in range(160):
        sg = random_subgraph(rng, rng.randint(3, 140), source_share=rng.choice([0.0, 0.2]))
        p = build_problem(sg, inplace=inplace)
        ctx = scheduler._context(p)
        prep = scheduler._prepare(ctx, None)
        step = scheduler._mstep if ctx.source else scheduler._step
        for start, goal, mem, _order, worst in prep.seg_data:
            if start == goal:
                continue
            goal &= ~scheduler._trailing(ctx, start, goal)
            for K, limit in ((worst - 1, 10**6), (worst - 50, 10**6), (worst, 10**6),
                             (worst - 1, 40)):
                got = [decision.decide(ctx, start, goal, mem, K, time.monotonic() + 60,
                                       limit, step, compiled) for compiled in (False, True)]
                assert got[0] == got[1], (case, K, limit)
                compared += 1
    assert compared > 400


@needs_core
def test_compiled_loop_on_a_randwire_stage():
    """A 40-node stage (two words per state): thousands of states, the same answers."""
    p = randwire_problem(40, seed=1)
    ctx = scheduler._context(p)
    prep = scheduler._prepare(ctx, None)
    start, goal, mem, _order, worst = max(prep.seg_data, key=lambda d: d[4])
    for K in range(worst - 1, prep.floor, -9216):
        got = [decision.decide(ctx, start, goal, mem, K, time.monotonic() + 60, 10**6,
                               scheduler._step, compiled) for compiled in (False, True)]
        assert got[0] == got[1], K
        if got[0].proved:
            assert got[0].states > 1000
            break
    else:
        pytest.fail("no K below the starting peak was proved infeasible")


def test_schedule_proves_by_decisions(monkeypatch):
    """A 48-node stage is proven optimal by the decision pass alone: the best-first search
    is never called."""
    def no_search(*args, **kwargs):
        raise AssertionError("best-first search called")

    monkeypatch.setattr(scheduler, "search", no_search)
    res = scheduler.schedule(randwire_problem(48, seed=1), time_limit=60)
    assert res.optimal and res.peak == 19 * 9216 and res.states > 10_000
