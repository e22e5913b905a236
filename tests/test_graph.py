"""``graph``: the operator DAG (data and state edges), tensor sizes, the shared topological
order, and the structural errors the reader's object tree can still hold."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from tinymodels import SHAPE, chain, diamond, model_t

from tflite_reorder.flatbuffer_io import ModelError
from tflite_reorder.graph import build_graph, opcode_name, topological_order


def test_diamond_edges_producers_and_consumers():
    sg = build_graph(diamond()).subgraphs[0]
    assert [op.opcode for op in sg.ops] == ["RELU", "RELU", "ADD"]
    assert sg.preds == [(), (), (0, 1)]
    assert sg.succs == [(2,), (2,), ()]
    assert sg.producer == {1: 0, 2: 1, 3: 2}
    assert sg.consumers == {0: [0, 1], 1: [2], 2: [2]}
    assert sg.is_topological([1, 0, 2]) and not sg.is_topological([2, 0, 1])
    assert not sg.is_topological([0, 1])  # not a permutation


def test_tensor_sizes_are_aligned_and_constants_are_not_in_the_arena():
    m = model_t({"x": (1, 3)}, [("ADD", ["x", "k"], "y", (1, 3))], ["y"],
                constants={"k": np.ones((1, 3), np.float32)})
    sg = build_graph(m).subgraphs[0]
    x, k, y = sg.tensors
    assert (x.nbytes, x.arena_bytes, x.in_arena) == (12, 16, True)
    assert (k.in_arena, k.arena_bytes) == (False, 0)
    assert y.dtype == "FLOAT32" and y.shape == (1, 3)


def test_true_shapes_override_stored_ones():
    graph = build_graph(chain(1), {(0, 1): (4, 4, 4, 4)})
    t = graph.subgraphs[0].tensors[1]
    assert t.shape == (4, 4, 4, 4) and t.stored_shape == SHAPE and t.nbytes == 1024


def test_topological_order_is_stable_and_reports_cycles():
    assert topological_order([(), (0,), (1,)]) == [0, 1, 2]
    assert topological_order([(), (), (0, 1), ()]) == [0, 1, 2, 3]
    assert topological_order([(2,), (), ()]) == [1, 2, 0]  # lowest ready index first
    assert topological_order([(1,), (0,), ()]) == [2]  # the cycle's ops are left out


def test_stateful_ops_keep_their_relative_order():
    m = chain(2)
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode = "probe"
    m.operatorCodes.append(code)
    for op in m.subgraphs[0].operators:
        op.opcodeIndex = len(m.operatorCodes) - 1
    sg = build_graph(m).subgraphs[0]
    assert opcode_name(m, 0) == "RELU" and sg.ops[0].opcode == "CUSTOM:probe"
    assert sg.preds == [(), (0,)]


def test_opcode_index_out_of_range():
    with pytest.raises(ModelError, match="operator code index 7 out of range"):
        opcode_name(diamond(), 7)


def test_a_tensor_produced_twice_is_refused():
    m = diamond()
    m.subgraphs[0].operators[1].outputs = np.array([1], np.int32)  # b's op also writes a
    with pytest.raises(ModelError, match="produced by operators 0 and 1"):
        build_graph(m)


def test_reading_uninitialized_memory_is_refused():
    m = diamond()
    m.subgraphs[0].operators = m.subgraphs[0].operators[1:]  # nothing writes a any more
    with pytest.raises(ModelError, match="uninitialized memory"):
        build_graph(m)


def test_a_read_before_its_writer_in_the_stored_order_is_refused():
    """ADD stored before the RELU that writes its second input: a valid order exists, but
    the runtimes run the stored one (LiteRT and TFLM both ran such a model, each reading
    what its arena held: ``tests/test_robustness.py``'s corpus entry)."""
    m = diamond()
    ops = m.subgraphs[0].operators
    ops[1], ops[2] = ops[2], ops[1]
    with pytest.raises(ModelError, match=r"subgraph 0: operator 1 \(ADD\) reads tensor 2 "
                                         r"\(b\) before operator 2 \(RELU\) writes it"):
        build_graph(m)


def test_an_operator_reading_its_own_output_is_refused():
    """Fuzz seed 6001 case 9335 (a RELU given its own output as a second input): the read
    comes before the kernel writes anything, and the tiler crashed on the self-edge."""
    m = diamond()
    op = m.subgraphs[0].operators[1]
    op.inputs = np.array([*op.inputs, op.outputs[0]], np.int32)
    with pytest.raises(ModelError, match=r"operator 1 \(\w+\) reads its own output tensor "
                                         r"2 \(b\)"):
        build_graph(m)


def test_an_empty_tensor_read_before_its_writer_is_refused_too():
    """A zero-sized tensor is not in the arena, but its read still comes first: skipping
    its edge hid a cycle and the self-check then failed on the order (fuzz seed 6001 case
    47564, exit 3)."""
    m = diamond()
    ops = m.subgraphs[0].operators
    ops[1], ops[2] = ops[2], ops[1]
    b = m.subgraphs[0].tensors[2]
    b.shape = np.array([*b.shape[:-1], 0], np.int32)
    with pytest.raises(ModelError, match=r"reads tensor 2 \(b\) before operator 2"):
        build_graph(m)


def test_a_variable_read_before_its_writer_keeps_the_stored_order():
    """A variable read before the op that writes it holds the last run's value (it is not
    in the arena): accepted, and the reader stays first (it was refused as a cycle)."""
    m = chain(2)
    sg = m.subgraphs[0]
    sg.tensors[2].isVariable = True  # t2 = RELU(t1), the variable
    sg.operators.insert(0, copy.deepcopy(sg.operators[0]))  # t1 = RELU(x) twice ...
    first = sg.operators[0]
    first.inputs = np.array([2], np.int32)
    first.outputs = np.array([3], np.int32)  # ... the first one reads t2 into a new tensor
    extra = copy.deepcopy(sg.tensors[1])
    extra.name = "from_state"
    sg.tensors.append(extra)
    sg.outputs = np.array([3], np.int32)
    g = build_graph(m).subgraphs[0]
    assert g.preds == [(), (), (0, 1)]  # the state edge 0 -> 2, no data edge 2 -> 0
    assert g.is_topological([0, 1, 2]) and not g.is_topological([1, 2, 0])


def test_an_operator_writing_a_constant_is_refused():
    """Both runtimes would write into the model's bytes (``make_bad_inputs.constant_output``
    has the measurement)."""
    m = model_t({"x": (1, 3)}, [("RELU", ["x"], "y", (1, 3))], ["y"],
                constants={"k": np.ones((1, 3), np.float32)})
    sg = m.subgraphs[0]
    sg.tensors[2].buffer = sg.tensors[1].buffer  # y now holds k's data
    with pytest.raises(ModelError, match=r"operator 0 \(RELU\) writes tensor 2 \(y\), "
                                         r"which holds constant data"):
        build_graph(m)


def test_a_cycle_is_refused():
    m = chain(2)
    ops = m.subgraphs[0].operators
    ops[0].inputs = np.array([2], np.int32)  # t1 = RELU(t2), t2 = RELU(t1)
    m.subgraphs[0].inputs = np.array([0], np.int32)
    with pytest.raises(ModelError, match="cycle"):
        build_graph(m)
