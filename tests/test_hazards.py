"""Static TFLM memory hazards (``hazards``): on the committed models, and each kind on a
deliberately broken copy of a clean model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from conftest import ALL_MODELS as MODELS
from shapetruth import (
    load,
    packed_plan,
    sequential_plan,
    stored,
    wrong_stored,
)

from tflite_reorder import flatbuffer_io as fio
from tflite_reorder.graph import opcode_name
from tflite_reorder.hazards import describe, find_hazards
from tflite_reorder.shapes import infer_shapes

MODEL_IDS = [p.stem for p in MODELS]


# ---------------------------------------------------------------------------------------------
# Hazards on the committed models


@pytest.mark.parametrize("path", MODELS, ids=MODEL_IDS)
def test_hazards_are_exactly_the_wrong_stored_shapes(path: Path) -> None:
    model = load(path.stem)
    hazards = find_hazards(model)
    print(f"\n{path.stem}: {len(hazards)} hazard(s)")
    for line in describe(hazards):
        print("  " + line)
    assert all(h.subgraph == 0 for h in hazards)
    found = {h.tensor: (h.stored, h.true) for h in hazards if h.kind == "shape"}
    assert found == wrong_stored(path.stem)
    model = load(path.stem)
    s2b = [int(op.outputs[0]) for op in model.subgraphs[0].operators
           if opcode_name(model, op.opcodeIndex) == "SPACE_TO_BATCH_ND"]
    assert [h.tensor for h in hazards if h.kind != "shape"] == s2b
    assert {h.kind for h in hazards} <= {"shape", "uninitialized_padding"}


def test_dilated_model_is_flagged_with_exact_shapes() -> None:
    hazards = [h for h in find_hazards(load("dilated_int8")) if h.kind == "shape"]
    got = [(h.opcode, h.stored, h.true, h.bytes_missing, h.kind) for h in hazards]
    s2b = ("SPACE_TO_BATCH_ND", (1, 18, 18, 8), (4, 18, 18, 8), 3 * 18 * 18 * 8, "shape")
    assert got == [
        s2b,
        ("DEPTHWISE_CONV_2D", (1, 16, 16, 8), (4, 16, 16, 8), 3 * 16 * 16 * 8, "shape"),
        s2b,
        ("CONV_2D", (1, 16, 16, 8), (4, 16, 16, 8), 3 * 16 * 16 * 8, "shape"),
    ]
    assert all("SpaceToBatchND" in h.name for h in hazards[::2])


def test_clean_models_have_no_hazards() -> None:
    clean = [p.stem for p in MODELS if not wrong_stored(p.stem)]
    assert len(clean) >= 5  # the committed set has many clean models
    for name in clean:
        assert find_hazards(load(name)) == [], name



# ---------------------------------------------------------------------------------------------
# The other hazard checks, each on a deliberately broken copy of a clean model

CLEAN = "multi_output_int8"


def _first_op_output(model: schema.ModelT, opcode: str) -> tuple[int, int]:
    for i, op in enumerate(model.subgraphs[0].operators):
        if opcode_name(model, op.opcodeIndex) == opcode:
            return i, int(op.outputs[0])
    raise AssertionError(f"no {opcode} in the model")


def _kinds(model: schema.ModelT) -> list[str]:
    return [h.kind for h in find_hazards(model)]


def test_dynamic_dim_in_a_subgraph_input() -> None:
    model = load(CLEAN)
    t = int(model.subgraphs[0].inputs[0])
    model.subgraphs[0].tensors[t].shape = np.array([-1, 48, 48, 3], np.int32)
    hazards = find_hazards(model)
    assert [(h.kind, h.tensor) for h in hazards] == [("dynamic_dim", t)]


def test_dynamic_dim_downstream_is_a_shape_hazard() -> None:
    """An op output stored with -1 gets its static shape inferred: TFLM would size it as 0."""
    model = load(CLEAN)
    _, t = _first_op_output(model, "CONV_2D")
    tensor = model.subgraphs[0].tensors[t]
    good = stored(tensor)
    tensor.shape = np.array([-1, *good[1:]], np.int32)
    (h,) = find_hazards(model)
    assert (h.kind, h.tensor, h.true) == ("shape", t, good)
    assert h.bytes_missing == int(np.prod(good))  # int8: TFLM would allocate 0 bytes


def test_unproduced_input() -> None:
    model = load(CLEAN)
    sg = model.subgraphs[0]
    i, t = _first_op_output(model, "CONV_2D")
    dummy = schema.TensorT()
    dummy.shape, dummy.type, dummy.buffer, dummy.name = np.array([1], np.int32), 9, 0, "dummy"
    sg.tensors.append(dummy)
    sg.operators[i].outputs = np.array([len(sg.tensors) - 1], np.int32)
    hazards = [h for h in find_hazards(model) if h.kind == "unproduced"]
    assert hazards and all(h.tensor == t for h in hazards)
    assert all(h.op_index > i for h in hazards)


def test_read_before_write() -> None:
    model = load(CLEAN)
    ops = model.subgraphs[0].operators
    ops[0], ops[1] = ops[1], ops[0]  # op 1 reads op 0's output in the committed order
    assert "read_before_write" in _kinds(model)



def test_plan_count_and_alignment() -> None:
    model = load(CLEAN)
    plan = sequential_plan(model)
    last = int(np.argmax(plan))  # the highest region: moving it overlaps nothing
    plan[last] += 8
    fio.set_offline_plan(model, plan)
    assert _kinds(model) == ["plan_alignment"]
    model.subgraphs[0].tensors.append(schema.TensorT())  # now one offset short
    assert _kinds(model) == ["plan_count"]


def test_plan_overlap() -> None:
    model = load(CLEAN)
    plan = sequential_plan(model)
    fio.set_offline_plan(model, [0 if off >= 0 else -1 for off in plan])
    hazards = find_hazards(model)
    assert hazards and {h.kind for h in hazards} == {"plan_overlap"}
    assert all(h.bytes_missing > 0 for h in hazards)


def test_packed_plans_are_clean_and_inplace_aliasing_is_allowed() -> None:
    for inplace in (False, True):
        model = load(CLEAN)
        fio.set_offline_plan(model, packed_plan(model, inplace=inplace))
        assert find_hazards(model) == [], inplace


def test_stored_size_plan_overlaps_in_truth() -> None:
    """A plan made with the stored (too small) sizes overlaps live tensors at true sizes."""
    model = load("dilated_int8")
    true = infer_shapes(model)
    fio.set_offline_plan(model, packed_plan(model))
    assert "plan_overlap" in _kinds(model)
    fio.set_offline_plan(model, packed_plan(model, true))
    assert [k for k in _kinds(model) if k not in ("shape", "uninitialized_padding")] == []


