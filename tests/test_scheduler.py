"""The scheduler's optimum equals exhaustive search, and its memory model equals TFLM's replay."""

from __future__ import annotations

import random

import pytest
from randgraphs import all_topological_orders, model_of, random_subgraph

from tflite_reorder.memory import build_problem, peak, simulate
from tflite_reorder.scheduler import schedule

N_GRAPHS = 600


def _truth(sg, order, inplace):
    return simulate(model_of(sg), [order], inplace=inplace).lower_bound


@pytest.mark.parametrize("inplace", [False, True])
def test_optimum_equals_brute_force(inplace):
    rng = random.Random(1234 + inplace)
    for case in range(N_GRAPHS // 2):
        sg = random_subgraph(rng, rng.randint(2, 8))
        p = build_problem(sg, inplace=inplace)
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
    assert res.lower_bound <= res.peak
    assert res.peak == peak(p, res.order)
