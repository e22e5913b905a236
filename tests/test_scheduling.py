"""``scheduling``: callees before callers, one deadline for all subgraphs, the certificate."""

from __future__ import annotations

from conftest import model_path
from tinymodels import diamond

from tflite_reorder.flatbuffer_io import load_model
from tflite_reorder.graph import build_graph
from tflite_reorder.memory import simulate
from tflite_reorder.scheduler import Schedule
from tflite_reorder.scheduling import (
    apply_orders,
    call_order,
    certificate,
    schedule_model,
    stored_peak,
    subgraph_reports,
)
from tflite_reorder.shapes import true_graph


def _schedule(peak: int, lower: int, optimal: bool) -> Schedule:
    return Schedule(order=[0], peak=peak, lower_bound=lower, optimal=optimal, states=1,
                    seconds=0.0)


def test_callees_come_before_their_callers():
    graph = build_graph(load_model(model_path("while_float32")).model)
    order = call_order(graph)
    assert sorted(order) == list(range(len(graph.subgraphs))) and order[-1] == 0
    for s in order:
        for op in graph.subgraphs[s].ops:
            assert all(order.index(c) < order.index(s) for c in op.calls)


def test_model_schedule_is_valid_and_never_worse_than_stored():
    graph = true_graph(load_model(model_path("while_float32")).model)
    orders, results = schedule_model(graph, True, 10.0)
    assert set(results) == set(range(len(graph.subgraphs)))
    assert all(sg.is_topological(o) for sg, o in zip(graph.subgraphs, orders, strict=True))
    assert simulate(graph, orders, inplace=False).lower_bound <= stored_peak(graph)
    reports = subgraph_reports(graph, results)
    assert [r.index for r in reports] == sorted(results)
    assert all(r.peak_after <= r.peak_before for r in reports)


def test_certificate_needs_the_replay_to_agree():
    ok = {0: _schedule(100, 100, True), 1: _schedule(40, 40, True)}
    assert certificate(ok, 100) == (100, True)
    assert certificate(ok, 120) == (100, False)  # the replay disagrees: bound only
    open_ = {0: _schedule(100, 80, False)}
    assert certificate(open_, 100) == (80, False)


def test_apply_orders_permutes_operators():
    m = diamond()
    ops = list(m.subgraphs[0].operators)
    apply_orders(m, [[1, 0, 2]])
    assert m.subgraphs[0].operators == [ops[1], ops[0], ops[2]]
