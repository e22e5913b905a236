"""Options tables of another operator's type read as no options, once, by both readers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from tflite_reorder import fastread, options
from tflite_reorder.flatbuffer_io import parse_model, serialize_model
from tflite_reorder.graph import opcode_name
from tflite_reorder.rewrites.edit import Editor, NotApplicable
from tflite_reorder.runtimes import random_inputs, run_litert

ROOT = Path(__file__).resolve().parent.parent
FOREIGN = ROOT / "tests" / "bad_inputs" / "foreign_options.tflite"  # two ADDs, MulOptions
OP, OPT = schema.BuiltinOperator, schema.BuiltinOptions


def test_every_options_table_is_read_by_some_operator():
    """The naming rule plus ``SHARED`` cover the whole union: a schema that adds a table
    read by an operator of another name fails here (and the table needs a SHARED entry)."""
    tables = {v for k, v in vars(OPT).items() if not k.startswith("_")} - {OPT.NONE}
    assert tables == set(options.EXPECTED.values()) - {OPT.NONE}
    for table, ops in options.SHARED.items():
        assert all(options.EXPECTED[getattr(OP, name)] == getattr(OPT, table) for name in ops)


@pytest.mark.parametrize("op, table", [
    (OP.CONV_2D, OPT.Conv2DOptions), (OP.DEPTHWISE_CONV_2D, OPT.DepthwiseConv2DOptions),
    (OP.MAX_POOL_2D, OPT.Pool2DOptions), (OP.MEAN, OPT.ReducerOptions),
    (OP.BATCH_MATMUL, OPT.BatchMatMulOptions), (OP.LSTM, OPT.LSTMOptions),
    (OP.CONV_3D_TRANSPOSE, OPT.Conv3DOptions), (OP.IF, OPT.IfOptions),
    (OP.RELU, OPT.NONE), (OP.CUSTOM, OPT.NONE),
])
def test_expected_table(op, table):
    assert options.EXPECTED[op] == table


def _adds(model) -> list:
    return [op for op in model.subgraphs[0].operators
            if opcode_name(model, op.opcodeIndex) == "ADD"]


def _convs(model) -> list:
    return [op for op in model.subgraphs[0].operators
            if opcode_name(model, op.opcodeIndex) == "CONV_2D"]


@pytest.mark.parametrize("reader", ["parse_model", "fastread", "fastread-python",
                                    "fastread-checked"])
def test_readers_clear_foreign_tables_and_keep_own(reader, monkeypatch):
    raw = FOREIGN.read_bytes()
    if reader == "parse_model":
        model = parse_model(raw).model
    else:
        if reader == "fastread-python":
            monkeypatch.setattr(fastread, "COMPILED", False)
        model = fastread.read_lite(raw, checked=reader == "fastread-checked")
    adds, convs = _adds(model), _convs(model)
    assert len(adds) == 2 and convs
    assert all(op.builtinOptionsType == OPT.NONE and op.builtinOptions is None
               for op in adds)
    assert all(op.builtinOptionsType == OPT.Conv2DOptions for op in convs)
    assert all(isinstance(op.builtinOptions, schema.Conv2DOptionsT) for op in convs)
    if reader != "parse_model":
        assert all(op.option("fusedActivationFunction") is None for op in adds)
        assert convs[0].option("strideH") == 1


def _with_add_options(kind: str) -> bytes:
    """foreign_options.tflite with its ADDs' tables replaced: ``relu`` (AddOptions with a
    fused RELU, the ADDs' own type) or ``none`` (no table)."""
    m = parse_model(FOREIGN.read_bytes()).model
    for op in _adds(m):
        if kind == "relu":
            o = schema.AddOptionsT()
            o.fusedActivationFunction = schema.ActivationFunctionType.RELU
            op.builtinOptionsType, op.builtinOptions = OPT.AddOptions, o
        else:
            op.builtinOptionsType, op.builtinOptions = OPT.NONE, None
    return serialize_model(m)


def test_litert_runs_a_foreign_table_as_no_options():
    """What the readers do is what LiteRT does: the ADDs' MulOptions carry a fused RELU,
    yet the model computes exactly what it computes with no options, not with the RELU."""
    raw = FOREIGN.read_bytes()
    none, relu = _with_add_options("none"), _with_add_options("relu")
    cases = random_inputs(raw, 4, seed=3)
    differs = False
    for inputs in cases:
        got = run_litert(raw, inputs)
        assert all(np.array_equal(a, b) for a, b in zip(got, run_litert(none, inputs),
                                                        strict=True))
        differs |= not all(np.array_equal(a, b) for a, b in zip(got, run_litert(relu, inputs),
                                                                strict=True))
    assert differs, "the inputs never tell RELU apart: the test shows nothing"


def test_editor_refuses_an_operator_without_options():
    """Rewrites and tiles read options through ``Editor.options``: none (as the reader
    leaves a foreign table) is a site that does not apply, never an AttributeError."""
    m = parse_model(FOREIGN.read_bytes()).model
    ed = Editor(m, 0)
    add, conv = _adds(m)[0], _convs(m)[0]
    assert ed.options(conv) is conv.builtinOptions
    with pytest.raises(NotApplicable, match="ADD has no options table"):
        ed.options(add)
    with pytest.raises(KeyError):
        ed.options(add, KeyError)


def test_unknown_builtins_keep_their_tables():
    """A builtin newer than the schema: what it reads is unknown, its table is kept."""
    m = parse_model(FOREIGN.read_bytes()).model
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = 250, 127, 1
    m.operatorCodes.append(code)
    add = _adds(m)[0]
    add.opcodeIndex = len(m.operatorCodes) - 1
    add.builtinOptionsType, add.builtinOptions = OPT.MulOptions, schema.MulOptionsT()
    got = parse_model(serialize_model(m)).model
    assert options.drop_foreign_options(got) == 0
    assert sum(op.builtinOptionsType == OPT.MulOptions for op in got.subgraphs[0].operators) == 1
