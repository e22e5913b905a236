"""TFLM's lifetime marking on nested control flow: the memoised marker equals a literal
replay of every path, needs no recursion, and stays linear when branches share subgraphs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tflite_reorder import preflight
from tflite_reorder.flatbuffer_io import ModelError, load_model
from tflite_reorder.graph import build_graph, marking_visits
from tflite_reorder.memory import _Marker, nested_extra, simulate

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import make_bad_inputs as mb  # noqa: E402 (tools/ is not a package)


class LiteralMarker:
    """MarkAllocationLifetimes walked path by path, recursively (the reference)."""

    def __init__(self, graph, orders):
        self.graph, self.orders = graph, orders
        self.scope, self.first, self.last, self.op_scope = 0, {}, {}, {}

    def mark(self, s):
        sg = self.graph.subgraphs[s]
        for t in (*sg.inputs, *sg.outputs):
            self.first[(s, t)] = self.last[(s, t)] = self.scope
        for v in self.orders[s]:
            op = sg.ops[v]
            self.scope += 1
            self.op_scope[(s, v)] = self.scope
            for t in op.outputs:
                self.first[(s, t)] = self.last[(s, t)] = self.scope
            for c in op.calls:
                self.scope += 1
                self.mark(c)
            for t in (*op.inputs, *op.outputs):
                self.last[(s, t)] = self.scope
        for t in sg.outputs:
            self.last[(s, t)] = self.scope


def graph_of(data: bytes):
    return build_graph(load_model(data).model)


@pytest.mark.parametrize("depth,shared", [(1, False), (4, False), (4, True), (7, True)])
def test_marker_equals_the_literal_walk(depth, shared):
    graph = graph_of(mb.nested_ifs(depth, shared=shared))
    orders = graph.stored_orders()
    fast, slow = _Marker(graph, orders), LiteralMarker(graph, orders)
    fast.mark(0)
    slow.mark(0)
    assert (fast.scope, fast.first, fast.last, fast.op_scope) == \
        (slow.scope, slow.first, slow.last, slow.op_scope)


def test_marker_equals_the_literal_walk_on_while():
    graph = graph_of((ROOT / "models" / "while_float32.tflite").read_bytes())
    orders = graph.stored_orders()
    for root in range(len(graph.subgraphs)):
        fast, slow = _Marker(graph, orders), LiteralMarker(graph, orders)
        fast.mark(root)
        slow.mark(root)
        assert (fast.scope, fast.first, fast.last) == (slow.scope, slow.first, slow.last)


def test_1500_nested_ifs_need_no_recursion():
    graph = graph_of(mb.nested_ifs(1500))
    use = simulate(graph, graph.stored_orders())
    assert use.n_scopes > 3000
    assert use.lower_bound > 0
    assert marking_visits(graph) == 1 + 1500 * 2


def test_30_nested_ifs_sharing_branches_are_not_walked_path_by_path():
    graph = graph_of(mb.nested_ifs(30, shared=True))
    assert marking_visits(graph) == 2**31 - 1
    use = simulate(graph, graph.stored_orders())  # would take 2^30 visits if walked
    assert use.n_scopes > 2**30
    assert nested_extra(graph, graph.stored_orders(), 0)[0] > 0
    with pytest.raises(ModelError, match="lifetime marking would visit 2147483647"):
        preflight.check(mb.nested_ifs(30, shared=True))
