"""Lower bounds never exceed the truth: checked against every downset of random graphs."""

from __future__ import annotations

import random

import pytest
from exhaustive import live_at
from randgraphs import random_subgraph

from tflite_reorder.bounds import closure_bound
from tflite_reorder.memory import build_problem
from tflite_reorder.scheduler import _context


def _downsets(ctx, n):
    for mask in range(1 << n):
        if all(not (mask >> u) & 1 or ctx.pred_mask[u] & ~mask == 0 for u in range(n)):
            yield mask


@pytest.mark.parametrize("inplace", [False, True])
def test_bounds_are_exact_minima_or_below(inplace):
    rng = random.Random(42 + inplace)
    tight = 0
    for _ in range(150):
        sg = random_subgraph(rng, rng.randint(2, 8))
        p = build_problem(sg, inplace=inplace)
        ctx = _context(p)
        states = list(_downsets(ctx, p.n_ops))
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
    for _ in range(120):
        sg = random_subgraph(rng, rng.randint(2, 40), source_share=0.2)
        p = build_problem(sg, inplace=rng.random() < 0.5)
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
    for _ in range(120):
        sg = random_subgraph(rng, rng.randint(2, 8), source_share=0.2)
        p = build_problem(sg, inplace=rng.random() < 0.5)
        ctx = _context(p)
        states = list(_downsets(ctx, p.n_ops))
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
