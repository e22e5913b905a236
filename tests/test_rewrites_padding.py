"""``rewrites.padding``: SPACE_TO_BATCH_ND's padding moved into an explicit PAD, bit-exact in
LiteRT and in TFLM (where the S2B's own padding value is uninitialised).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from conftest import ALL_MODELS as MODELS
from conftest import model_path
from shapetruth import (
    litert_shapes,
    load,
    sequential_plan,
    stored,
)

from tflite_reorder import flatbuffer_io as fio
from tflite_reorder import tflm
from tflite_reorder.graph import build_graph, opcode_name
from tflite_reorder.hazards import find_hazards
from tflite_reorder.rewrites.padding import repair_padding
from tflite_reorder.runtimes import run_litert, structured_inputs
from tflite_reorder.shapes import fix_shapes, infer_shapes

# ---------------------------------------------------------------------------------------------
# repair_padding: SPACE_TO_BATCH_ND's padding moved into an explicit PAD

PADDED_S2B = ["dilated_int8", "darts_int8", "darts_float32"]  # converter-lowered dilated convs


def _int32_data(model: schema.ModelT, tensor: schema.TensorT) -> np.ndarray:
    raw = np.asarray(model.buffers[tensor.buffer].data, np.uint8).tobytes()
    return np.frombuffer(raw, "<i4").reshape(stored(tensor))


def _has_s2b(model: schema.ModelT) -> bool:
    return any(opcode_name(model, op.opcodeIndex) == "SPACE_TO_BATCH_ND"
               for sg in model.subgraphs for op in sg.operators or [])


@functools.cache
def _repaired(name: str) -> bytes:
    model = load(name)
    assert repair_padding(model)
    fix_shapes(model, infer_shapes(model))
    return fio.serialize_model(model)


@functools.cache
def _shapes_fixed_only(name: str) -> bytes:
    model = load(name)
    fix_shapes(model, infer_shapes(model))
    return fio.serialize_model(model)


def _bits_equal(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(
        x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
        for x, y in zip(a, b, strict=True)
    )


def _lsb(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Largest elementwise difference (LSBs for int8, absolute for float)."""
    return max(float(np.abs(x.astype(np.float64) - y.astype(np.float64)).max())
               for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("name", PADDED_S2B)
def test_repair_padding_inserts_a_pad_ahead_of_every_padded_s2b(name: str) -> None:
    model = load(name)
    sg = model.subgraphs[0]
    n_ops, n_tensors = len(sg.operators), len(sg.tensors)
    s2b = [(i, op) for i, op in enumerate(sg.operators)
           if opcode_name(model, op.opcodeIndex) == "SPACE_TO_BATCH_ND"]
    before = [(int(op.inputs[0]), _int32_data(model, sg.tensors[op.inputs[2]]).copy())
              for _, op in s2b]
    old_paddings = [int(op.inputs[2]) for _, op in s2b]
    true_in = [litert_shapes(name)[x] for x, _ in before]
    fio.set_offline_plan(model, [-1] * n_tensors)  # a plan no longer covers every tensor

    repairs = repair_padding(model)

    assert [r["op"] for r in repairs] == [i for i, _ in s2b]
    assert fio.get_offline_plan(model) is None
    ops = sg.operators
    assert len(ops) == n_ops + len(repairs)
    for k, (r, (x, pads), shape) in enumerate(zip(repairs, before, true_in, strict=True)):
        pad, op = ops[r["op"] + k], ops[r["op"] + k + 1]
        assert (opcode_name(model, pad.opcodeIndex), opcode_name(model, op.opcodeIndex)) == (
            "PAD", "SPACE_TO_BATCH_ND")
        t = r["tensor"]
        assert r["subgraph"] == 0 and t >= n_tensors  # appended: old indices unchanged
        assert list(pad.inputs)[0] == x and list(pad.outputs) == [t] and op.inputs[0] == t
        full = _int32_data(model, sg.tensors[pad.inputs[1]])
        assert full.tolist() == [[0, 0], *pads.tolist(), [0, 0]]
        new, old = sg.tensors[t], sg.tensors[x]
        assert stored(new) == tuple(d + int(p.sum()) for d, p in zip(shape, full, strict=True))
        assert new.type == old.type
        if old.quantization is not None and old.quantization.scale is not None:
            assert list(new.quantization.scale) == list(old.quantization.scale)
            assert list(new.quantization.zeroPoint) == list(old.quantization.zeroPoint)
        itemsize = 4 if name.endswith("float32") else 1
        assert r["bytes"] == itemsize * int(np.prod(stored(new)))
        assert not _int32_data(model, sg.tensors[op.inputs[2]]).any()
    for t, (_, pads) in zip(old_paddings, before, strict=True):  # shared buffers not mutated
        assert (_int32_data(model, sg.tensors[t]) == pads).all()
    (code,) = [c for i, c in enumerate(model.operatorCodes) if opcode_name(model, i) == "PAD"]
    assert code.builtinCode == code.deprecatedBuiltinCode == schema.BuiltinOperator.PAD
    if name == "dilated_int8":
        assert [(r["op"], r["bytes"]) for r in repairs] == [(1, 36 * 36 * 8), (6, 36 * 36 * 8)]

    build_graph(model)
    assert "uninitialized_padding" not in [h.kind for h in find_hazards(model)]
    fix_shapes(model, infer_shapes(model))
    assert find_hazards(model) == []
    reloaded = fio.load_model(fio.serialize_model(model)).model
    assert infer_shapes(reloaded) == {} and find_hazards(reloaded) == []
    assert repair_padding(reloaded) == []  # idempotent: nothing pads any more


def test_models_without_padded_s2b_are_untouched() -> None:
    plain = [p.stem for p in MODELS if not _has_s2b(load(p.stem))]
    assert "while_float32" in plain and len(plain) >= 5  # including a multi-subgraph model
    for name in plain:
        model = load(name)
        fio.set_offline_plan(model, [-1] * sum(len(sg.tensors) for sg in model.subgraphs))
        data = fio.serialize_model(model)
        assert repair_padding(model) == [], name
        assert fio.serialize_model(model) == data, name


@pytest.mark.parametrize("name", PADDED_S2B)
def test_repaired_model_is_bit_identical_in_litert(name: str) -> None:
    raw = model_path(name).read_bytes()
    for seed in range(3):
        inputs = structured_inputs(raw, seed)
        assert _bits_equal(run_litert(_repaired(name), inputs),
                           run_litert(raw, inputs)), seed


def _with_plan(data: bytes, plan: str) -> bytes:
    if plan == "greedy":  # TFLM's own online planner
        return data
    model = fio.load_model(data).model
    fio.set_offline_plan(model, sequential_plan(model))  # no reuse at all
    return fio.serialize_model(model)


@pytest.mark.parametrize("name", PADDED_S2B)
@pytest.mark.tflm
def test_repaired_model_is_bit_exact_and_deterministic_in_tflm(name: str) -> None:
    """TFLM equals LiteRT on every bit, in 3 runs, under TFLM's plan and a no-reuse plan.

    Shapes alone (``fix_shapes``) leave TFLM padding with garbage: printed for comparison,
    not asserted, since the garbage differs between processes (and may happen to be right).
    """
    raw = model_path(name).read_bytes()
    cases = [structured_inputs(raw, seed) for seed in range(2)]
    reference = [run_litert(raw, x) for x in cases]
    before = max(_lsb(tflm.run_tflm(_shapes_fixed_only(name), x), ref)
                 for x, ref in zip(cases, reference, strict=True))
    after = 0.0
    for plan in ("greedy", "no-reuse"):
        data = _with_plan(_repaired(name), plan)
        for _ in range(3):
            for x, ref in zip(cases, reference, strict=True):
                outs = tflm.run_tflm(data, x)
                after = max(after, _lsb(outs, ref))
                assert _bits_equal(outs, ref), plan
    print(f"\n{name}: TFLM vs LiteRT, shapes fixed only: {before:g}; after repair_padding: "
          f"{after:g} (2 inputs x 3 runs x 2 plans)")


