"""``selfcheck.check_written``: the bytes about to be written match the orders and the plan,
and every kind of tampering is caught."""

from __future__ import annotations

import copy

import pytest
from conftest import model_path

from tflite_reorder import arena
from tflite_reorder.flatbuffer_io import (
    load_model,
    serialize_model,
    set_offline_plan,
)
from tflite_reorder.memory import simulate
from tflite_reorder.scheduling import apply_orders, schedule_model
from tflite_reorder.selfcheck import SelfCheckError, check_written
from tflite_reorder.shapes import true_graph


@pytest.fixture(scope="module")
def planned():
    m = load_model(model_path("inception_int8")).model
    graph = true_graph(m)
    orders, _ = schedule_model(graph, True, 5.0)
    use = simulate(graph, orders, inplace=True)
    plan = arena.plan_arena(use, time_limit=0.5)
    out = copy.deepcopy(m)
    apply_orders(out, orders)
    return m, graph, orders, use, plan, out


def _write(out, graph, offsets) -> bytes:
    m = copy.deepcopy(out)
    set_offline_plan(m, offsets)
    return serialize_model(m)


def test_the_real_output_passes(planned):
    _, graph, orders, use, plan, out = planned
    check_written(graph, _write(out, graph, arena.offsets_for_model(graph, plan)), orders,
                  plan, use)


def test_operators_in_another_order_are_caught(planned):
    m, graph, orders, use, plan, _ = planned
    data = _write(m, graph, arena.offsets_for_model(graph, plan))  # the stored order
    assert orders[0] != list(range(len(orders[0])))
    with pytest.raises(SelfCheckError, match="operators differ from the plan"):
        check_written(graph, data, orders, plan, use)


def test_overlapping_or_misaligned_offsets_are_caught(planned):
    _, graph, orders, use, plan, out = planned
    offsets = arena.offsets_for_model(graph, plan)
    stacked = [0 if o >= 0 else o for o in offsets]  # every live buffer at offset 0
    with pytest.raises(SelfCheckError, match="overlaps two live tensors"):
        check_written(graph, _write(out, graph, stacked), orders, plan, use)
    t = next(i for i, o in enumerate(offsets) if o >= 0)
    shifted = list(offsets)
    shifted[t] += 8
    with pytest.raises(SelfCheckError, match="out of bounds|share their buffer"):
        check_written(graph, _write(out, graph, shifted), orders, plan, use)


def test_a_plan_where_none_was_meant_is_caught(planned):
    _, graph, orders, use, plan, out = planned
    data = _write(out, graph, arena.offsets_for_model(graph, plan))
    with pytest.raises(SelfCheckError, match="unexpected offline plan"):
        check_written(graph, data, orders, None, use)


def test_an_order_that_is_not_topological_is_caught(planned):
    """Operators written as the (wrong) orders say: they match, but an op runs before the
    writer of its input."""
    m, graph, _, _, _, _ = planned
    n = len(graph.subgraphs[0].ops)
    backwards = [list(reversed(range(n)))] + [list(range(len(sg.ops)))
                                             for sg in graph.subgraphs[1:]]
    out = copy.deepcopy(m)
    apply_orders(out, backwards)
    with pytest.raises(SelfCheckError, match="order is not topological"):
        check_written(graph, serialize_model(out), backwards, None, None)

