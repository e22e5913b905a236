"""Lower bounds never exceed the truth: checked against every downset of random graphs."""

from __future__ import annotations

import functools
import random

import pytest
from exhaustive import live_at, optimum
from randgraphs import downsets, random_problems

from tflite_reorder.bounds import closure_bound
from tflite_reorder.scheduler import _context


@pytest.mark.parametrize("inplace", [False, True])
def test_bounds_are_exact_minima_or_below(inplace):
    rng = random.Random(42 + inplace)
    tight = 0
    for _, p in random_problems(rng, 150, (2, 8), inplace):
        ctx = _context(p)
        states = list(downsets(ctx.pred_mask))
        for v in range(p.n_ops):
            ready = [m for m in states if not (m >> v) & 1 and ctx.pred_mask[v] & ~m == 0]
            costs = [live_at(p, frozenset(u for u in range(p.n_ops) if (m >> u) & 1), v)
                     for m in ready]
            truth = min(costs)
            assert ctx.static_lb[v] <= truth
            cb = closure_bound(ctx, v)
            assert cb <= truth
            tight += cb == truth
    assert tight > 500  # the closure bound is usually exact, not just valid


def test_compiled_max_flow_equals_the_python_reference(monkeypatch):
    """OR-tools' max flow (when installed) gives the closure bounds Dinic's algorithm gives."""
    from tflite_reorder import bounds

    if bounds._ortools_flow is None:
        pytest.skip("the optional solver extra (ortools) is not installed")
    rng = random.Random(3)
    checked = 0
    for _, p in random_problems(rng, 120, (2, 40), source_share=0.2):
        ctx = _context(p)
        for v in range(p.n_ops):
            monkeypatch.setattr(bounds, "COMPILED_FLOW", True)
            fast = closure_bound(ctx, v)
            monkeypatch.setattr(bounds, "COMPILED_FLOW", False)
            assert fast == closure_bound(ctx, v)
            checked += 1
    assert checked > 1000


def test_state_closure_bounds_every_completion():
    """Per-state closure bounds: equal to the Python reference with the state forced in, and
    never above v's cost in any state that contains S (checked over every such state)."""
    from tflite_reorder import bounds

    if bounds._ortools_flow is None:
        pytest.skip("the optional solver extra (ortools) is not installed")
    rng = random.Random(8)
    checked = raised = 0
    for _, p in random_problems(rng, 120, (2, 8), source_share=0.2):
        ctx = _context(p)
        states = list(downsets(ctx.pred_mask))
        for v in range(p.n_ops):
            sc = bounds.StateClosure(ctx, v)
            for S in states:
                if (S >> v) & 1:
                    continue
                got = sc.bound(S)
                assert got == closure_bound(ctx, v, forced=S)
                ready = [m for m in states if m & S == S and not (m >> v) & 1
                         and ctx.pred_mask[v] & ~m == 0]
                truth = min(live_at(p, frozenset(u for u in range(p.n_ops) if (m >> u) & 1), v)
                            for m in ready)
                assert got <= truth
                raised += got > closure_bound(ctx, v)
                checked += 1
    assert checked > 2000 and raised > 100


def _live(p, m: int, v: int) -> int:
    return live_at(p, frozenset(u for u in range(p.n_ops) if (m >> u) & 1), v)


def test_forced_out_closure_bounds_every_state_between():
    """``StateClosure.bound(S, out)``: the least cost of v over the states containing S and
    none of ``out`` (an upset), checked against every such state; INF when there is none."""
    from tflite_reorder import bounds

    if bounds._ortools_flow is None:
        pytest.skip("the optional solver extra (ortools) is not installed")
    rng = random.Random(81)
    checked = exact = none = 0
    for _, p in random_problems(rng, 80, (2, 8), source_share=0.2):
        ctx = _context(p)
        states = list(downsets(ctx.pred_mask))
        full = (1 << p.n_ops) - 1
        for v in range(p.n_ops):
            sc = bounds.StateClosure(ctx, v)
            for S in states[::3]:
                if (S >> v) & 1:
                    continue
                for D in states[::5]:
                    out = full & ~D  # the complement of a downset is an upset
                    got = sc.bound(S, out)
                    ready = [m for m in states if m & S == S and not m & out
                             and not (m >> v) & 1 and ctx.pred_mask[v] & ~m == 0]
                    if not ready:
                        assert got == bounds.INF
                        none += 1
                        continue
                    truth = min(_live(p, m, v) for m in ready)
                    assert got <= truth
                    exact += got == truth
                    checked += 1
            assert sc.bound(0) == closure_bound(ctx, v)  # the forcing-out arcs were reset
    assert checked > 2000 and none > 500 and exact > checked // 2


def test_order_and_pair_bounds_never_exceed_the_optimum():
    """Bounds from how an order can sequence two, three or four ops: at most the
    brute-force optimum on random graphs, and often above the best single-op closure
    bound."""
    from tflite_reorder import bounds
    from tflite_reorder.scheduler import _state_closure

    if bounds._ortools_flow is None:
        pytest.skip("the optional solver extra (ortools) is not installed")
    rng = random.Random(82)
    raised = 0
    for case, (_, p) in enumerate(random_problems(rng, 250, (3, 9), source_share=0.2)):
        ctx = _context(p)
        best = optimum(p)
        single = max(closure_bound(ctx, v) for v in range(p.n_ops))
        ops = list(range(p.n_ops))
        closure = functools.partial(_state_closure, ctx)
        got = bounds.pair_bounds(ctx, ops, 0, float("inf"), bounds.set_bound(ctx, closure),
                                 width=3, max_ops=4)
        assert got <= best, case
        for _ in range(3):
            trio = rng.sample(ops, min(3, p.n_ops))
            assert bounds.order_bound(ctx, trio, closure) <= best
        raised += got > single
    assert raised > 10


def test_shared_closure_is_every_ops_state_closure():
    """``SharedClosure`` (one network, v's ancestors forced in and v and its descendants
    forced out) gives the number of v's own ``StateClosure`` for every op, every downset S
    and every upset ``out`` of random graphs (with in-place sharing and sources run late)."""
    from tflite_reorder import bounds

    if bounds._ortools_flow is None:
        pytest.skip("the optional solver extra (ortools) is not installed")
    rng = random.Random(83)
    checked = finite = 0
    for case, (_, p) in enumerate(random_problems(rng, 60, (2, 8), source_share=0.2)):
        ctx = _context(p)
        shared = bounds.SharedClosure(ctx)
        states = list(downsets(ctx.pred_mask))
        full = (1 << p.n_ops) - 1
        for v in range(p.n_ops):
            sc = bounds.StateClosure(ctx, v)
            assert shared.bound(v) == closure_bound(ctx, v), (case, v)
            for S in states[::2]:
                for D in states[::3]:
                    got = shared.of(v).bound(S, full & ~D)
                    assert got == sc.bound(S, full & ~D), (case, v, S, D)
                    checked += 1
                    finite += got < bounds.INF
    assert checked > 3000 and finite > 1000


def test_order_bound_above_is_exact_above_the_cutoff():
    """``order_bound(..., above)``: the exact bound when it exceeds ``above``, else some
    value at most ``above`` (so a caller keeping the maximum over ``above`` loses
    nothing)."""
    from tflite_reorder import bounds
    from tflite_reorder.scheduler import _state_closure

    if bounds._ortools_flow is None:
        pytest.skip("the optional solver extra (ortools) is not installed")
    rng = random.Random(84)
    cut = 0
    for _, p in random_problems(rng, 120, (3, 9), source_share=0.2):
        ctx = _context(p)
        closure = functools.partial(_state_closure, ctx)
        for _ in range(3):
            ops = rng.sample(range(p.n_ops), min(rng.randint(2, 5), p.n_ops))
            exact = bounds.order_bound(ctx, ops, closure)
            above = exact + rng.choice((-2, -1, 0, 1)) * max(1, exact // 8)
            got = bounds.order_bound(ctx, ops, closure, above)
            if exact > above:
                assert got == exact
            else:
                assert got <= above
                cut += got != exact
    assert cut > 10


def test_order_bound_with_pair_table_is_the_same_bound():
    """``order_bound(lower=PairTable.lower)`` skips flows only where the cheap bound shows
    they cannot lower the result: with the unconstrained closure bounds as the table's
    root it gives exactly the bound without it (with and without ``above``), with the
    scheduler's root bounds (closure or static, the larger) never more than the
    brute-force optimum, and ``pair_bounds`` with it stays at most the optimum too."""
    from tflite_reorder import bounds
    from tflite_reorder.scheduler import _state_closure

    if bounds._ortools_flow is None:
        pytest.skip("the optional solver extra (ortools) is not installed")
    rng = random.Random(85)
    raised = 0
    for case, (_, p) in enumerate(random_problems(rng, 200, (3, 10), source_share=0.2)):
        ctx = _context(p)
        best = optimum(p)
        closure = functools.partial(_state_closure, ctx)
        plain = [closure_bound(ctx, v) for v in range(p.n_ops)]
        table = bounds.PairTable(ctx, closure, plain)
        mixed = [max(b, int(s)) for b, s in zip(plain, ctx.static_lb, strict=True)]
        loose = bounds.PairTable(ctx, closure, mixed)
        for _ in range(3):
            ops = rng.sample(range(p.n_ops), min(rng.randint(2, 6), p.n_ops))
            exact = bounds.order_bound(ctx, ops, closure)
            assert bounds.order_bound(ctx, ops, closure, lower=table.lower) == exact, case
            above = exact - max(1, exact // 8)
            got = bounds.order_bound(ctx, ops, closure, above, lower=table.lower)
            assert got == exact if exact > above else got <= above
            assert bounds.order_bound(ctx, ops, closure, lower=loose.lower) <= best, case
        got = bounds.pair_bounds(ctx, list(range(p.n_ops)), max(mixed), float("inf"),
                                 bounds.set_bound(ctx, closure, loose.lower), width=3,
                                 max_ops=5)
        assert got <= best, case
        raised += got > max(mixed)
    assert raised > 10
