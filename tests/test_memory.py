"""``memory``: TFLM's lifetimes and live bytes by hand on tiny models, in-place sharing, and
the scheduler's per-subgraph view (``Problem``) against the exact replay (``simulate``)."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from conftest import ROOT, model_path
from tinymodels import chain, diamond, model_t

from tflite_reorder import memory, preflight
from tflite_reorder.flatbuffer_io import ModelError, load_model
from tflite_reorder.graph import build_graph, marking_visits
from tflite_reorder.memory import (
    ArenaUse,
    Buffer,
    _Marker,
    _peak_by_marking,
    alias_candidates,
    build_problem,
    nested_extra,
    peak,
    simulate,
    step_costs,
)
from tools import make_bad_inputs as mb

B = 256  # bytes of one tinymodels.SHAPE tensor


def _lifetimes(use: ArenaUse) -> dict:
    return {b.tensors: (b.first, b.last) for b in use.buffers}


def test_chain_lifetimes_and_profile_by_hand():
    graph = build_graph(chain(2))  # x -> t1 -> t2
    use = simulate(graph, graph.stored_orders(), inplace=False)
    # inputs are created at scope 0, each op has its own scope, all its tensors live there
    assert _lifetimes(use) == {((0, 0),): (0, 1), ((0, 1),): (1, 2), ((0, 2),): (2, 2)}
    assert use.profile() == [B, 2 * B, 2 * B] and use.lower_bound == 2 * B
    assert use.op_scope == {(0, 0): 1, (0, 1): 2}


def test_inplace_output_takes_the_dying_input_but_never_a_subgraph_input():
    graph = build_graph(chain(2))
    use = simulate(graph, graph.stored_orders(), inplace=True)
    # t2 takes t1's buffer (RELU, same size, t1 dies there); t1 may not take x (an input)
    assert _lifetimes(use) == {((0, 0),): (0, 1), ((0, 1), (0, 2)): (1, 2)}
    assert use.profile() == [B, 2 * B, B]


def test_alias_candidates_need_same_size_and_type():
    m = model_t({"x": (1, 8)}, [("RELU", ["x"], "a", (1, 8)), ("RELU", ["a"], "b", (1, 8)),
                                ("CONCATENATION", ["b", "b"], "c", (1, 16))], ["c"])
    sg = build_graph(m).subgraphs[0]
    assert alias_candidates(sg) == [(), ((2, (1,)),), ()]  # CONCATENATION is not in-place
    assert alias_candidates(sg, inplace=False) == [(), (), ()]


def test_diamond_orders_by_hand():
    graph = build_graph(diamond())  # x -> a, x -> b, (a, b) -> c
    use = simulate(graph, [[0, 1, 2]], inplace=False)
    assert use.profile() == [B, 2 * B, 3 * B, 3 * B]
    p = build_problem(graph.subgraphs[0], inplace=False)
    assert step_costs(p, [0, 1, 2]) == [2 * B, 3 * B, 3 * B]
    assert peak(p, [1, 0, 2]) == 3 * B


def test_problem_view_equals_the_replay_on_every_order():
    """The scheduler's costs and TFLM's replay agree on every topological order."""
    for name in ("inception_int8", "multi_output_int8"):
        graph = build_graph(load_model(model_path(name)).model)
        sg = graph.subgraphs[0]
        for inplace in (False, True):
            p = build_problem(sg, inplace=inplace)
            orders = [list(range(len(sg.ops)))]
            orders += [o for o in itertools.islice(_orders(sg), 30)]
            for order in orders:
                assert peak(p, order) == simulate(graph, [order], inplace=inplace).lower_bound


def _orders(sg):
    """Topological orders that take the last ready op first (far from the stored one)."""
    indeg = [len(ps) for ps in sg.preds]
    ready = [v for v, d in enumerate(indeg) if d == 0]
    for rot in range(len(sg.ops)):
        deg, rdy, out = list(indeg), list(ready), []
        while rdy:
            v = rdy.pop(rot % len(rdy))
            out.append(v)
            for w in sg.succs[v]:
                deg[w] -= 1
                if deg[w] == 0:
                    rdy.append(w)
        yield out


def test_nested_subgraphs_are_extra_bytes_at_their_caller():
    graph = build_graph(load_model(model_path("while_float32")).model)
    orders = graph.stored_orders()
    extra = nested_extra(graph, orders, 0)
    callers = [v for v, op in enumerate(graph.subgraphs[0].ops) if op.calls]
    assert callers and all(extra[v] > 0 for v in callers)
    assert all(extra[v] == 0 for v in range(len(extra)) if v not in callers)
    assert nested_extra(build_graph(diamond()), [[0, 1, 2]], 0) == [0, 0, 0]


def test_unplaced_buffers_count_in_the_lower_bound():
    use = ArenaUse((Buffer(((0, 0),), 64, 0, 0), Buffer(((0, 1),), 512, -1, -1)), 1, {})
    assert use.profile() == [64] and use.lower_bound == 512


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


def _random_control_flow(rng: random.Random, n: int) -> schema.ModelT:
    """``n`` subgraphs, each a few RELUs of random widths and IFs whose branches are random
    later subgraphs (so callees are shared: by both branches, by several ops, by several
    callers at different depths)."""
    m = schema.ModelT()
    m.version, m.operatorCodes, m.buffers, m.subgraphs = 3, [], [schema.BufferT()], []
    for builtin in (schema.BuiltinOperator.IF, schema.BuiltinOperator.RELU):
        code = schema.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = builtin
        m.operatorCodes.append(code)
    for k in range(n):
        sg = schema.SubGraphT()
        sg.tensors, sg.operators = [], []

        def tensor(shape, dtype=schema.TensorType.FLOAT32, sg=sg):
            t = schema.TensorT()
            t.name, t.type, t.buffer = f"t{len(sg.tensors)}", dtype, 0
            t.shape = np.array(shape, np.int32)
            sg.tensors.append(t)
            return len(sg.tensors) - 1

        cond, x = tensor([], schema.TensorType.BOOL), tensor([1, rng.choice((4, 8, 64))])
        prev, width = x, None
        for _ in range(rng.randint(1, 4)):
            op = schema.OperatorT()
            if k + 1 < n and rng.random() < 0.6:
                opts = schema.IfOptionsT()
                opts.thenSubgraphIndex = rng.randrange(k + 1, n)
                opts.elseSubgraphIndex = rng.randrange(k + 1, n)
                op.opcodeIndex, op.inputs = 0, np.array([cond, prev], np.int32)
                op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.IfOptions, opts
            else:
                op.opcodeIndex, op.inputs = 1, np.array([prev], np.int32)
            width = rng.choice((4, 8, 64, 256))
            out = tensor([1, width])
            op.outputs = np.array([out], np.int32)
            sg.operators.append(op)
            prev = out
        sg.inputs, sg.outputs = np.array([cond, x], np.int32), np.array([prev], np.int32)
        m.subgraphs.append(sg)
    return m


@pytest.mark.parametrize("seed", range(40))
def test_composed_nested_peaks_equal_the_marking(seed):
    """``nested_extra`` composes peaks bottom-up; marking each operator's callees (the
    ``_Marker`` replay, itself checked against the literal walk) must give the same."""
    rng = random.Random(seed)
    graph = build_graph(_random_control_flow(rng, rng.randint(2, 9)))
    orders = graph.stored_orders()
    for inplace in (False, True):
        cache: dict = {}
        for s, sg in enumerate(graph.subgraphs):
            extra = nested_extra(graph, orders, s, inplace, cache)
            want = [_peak_by_marking(graph, orders, op.calls, inplace, {}) if op.calls else 0
                    for op in sg.ops]
            assert extra == want


def test_composition_falls_back_to_marking_past_its_state_budget(monkeypatch):
    graph = build_graph(_random_control_flow(random.Random(3), 9))
    orders = graph.stored_orders()
    want = [nested_extra(graph, orders, s) for s in range(len(graph.subgraphs))]
    monkeypatch.setattr(memory, "MAX_PEAK_STATES", 0)
    assert [nested_extra(graph, orders, s) for s in range(len(graph.subgraphs))] == want


@pytest.mark.parametrize("seed", range(20))
def test_marking_several_roots_equals_the_literal_walk(seed):
    """A control-flow op's branches marked one after another, where one branch may also be
    called by the other (then its last visit is inside the other's)."""
    rng = random.Random(seed)
    graph = build_graph(_random_control_flow(rng, rng.randint(2, 9)))
    orders = graph.stored_orders()
    for sg in graph.subgraphs:
        for op in sg.ops:
            if op.calls:
                fast, slow = _Marker(graph, orders), LiteralMarker(graph, orders)
                fast.mark_all(op.calls)
                for c in op.calls:
                    slow.scope += 1
                    slow.mark(c)
                assert (fast.scope, fast.first, fast.last, fast.op_scope) == \
                    (slow.scope, slow.first, slow.last, slow.op_scope)
