"""Shape truth: inferred shapes against LiteRT, hazards, and TFLM before/after ``fix_shapes``.

LiteRT re-runs shape inference in ``allocate_tensors()``, so its tensor shapes are the truth the
kernels use. TFLM does not: it allocates from the stored shapes, which is why a model with
wrong stored shapes gives plan-dependent outputs in TFLM until the true shapes are written.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from tflite_reorder import flatbuffer_io as fio
from tflite_reorder import tflm
from tflite_reorder.graph import build_graph, opcode_name
from tflite_reorder.hazards import describe, find_hazards
from tflite_reorder.memory import simulate
from tflite_reorder.rewrites.padding import repair_padding
from tflite_reorder.runtimes import litert, run_litert, run_litert_cases, structured_inputs
from tflite_reorder.shapes import SHAPE_RULES, fix_shapes, infer_shapes

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
MODELS = sorted(MODELS_DIR.glob("*.tflite"))
MODEL_IDS = [p.stem for p in MODELS]


def _load(name: str) -> schema.ModelT:
    return fio.load_model(MODELS_DIR / f"{name}.tflite").model


@functools.cache
def _litert_shapes(name: str) -> dict[int, tuple[int, ...]]:
    """LiteRT's resolved shape of every subgraph-0 tensor of a model in models/."""
    it = litert((MODELS_DIR / f"{name}.tflite").read_bytes())
    return {d["index"]: tuple(int(x) for x in d["shape"]) for d in it.get_tensor_details()}


def _stored(tensor: schema.TensorT) -> tuple[int, ...]:
    return tuple(int(d) for d in (tensor.shape if tensor.shape is not None else ()))


def _mismatches(model: schema.ModelT, inferred, truth) -> list:
    out = []
    for t, tensor in enumerate(model.subgraphs[0].tensors):
        mine = inferred.get((0, t), _stored(tensor))
        if mine != truth[t]:
            out.append((t, mine, truth[t]))
    return out


def _wrong_stored(name: str) -> dict[int, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Tensors whose stored shape LiteRT disagrees with: {tensor: (stored, true)}."""
    model, truth = _load(name), _litert_shapes(name)
    return {
        t: (_stored(x), truth[t])
        for t, x in enumerate(model.subgraphs[0].tensors) if _stored(x) != truth[t]
    }


# ---------------------------------------------------------------------------------------------
# Inference against LiteRT


@pytest.mark.parametrize("path", MODELS, ids=MODEL_IDS)
def test_infer_shapes_agrees_with_litert(path: Path) -> None:
    model = _load(path.stem)
    assert _mismatches(model, infer_shapes(model), _litert_shapes(path.stem)) == []


@pytest.mark.parametrize("path", MODELS, ids=MODEL_IDS)
def test_rules_rederive_every_shape_from_scratch(path: Path) -> None:
    """Overwrite every output shape of every op with a rule: inference alone must recover it.

    Without this, a rule that silently fell back to the stored shape would still pass the
    agreement test above.
    """
    model = _load(path.stem)
    for sg in model.subgraphs:
        for op in sg.operators or []:
            if opcode_name(model, op.opcodeIndex) in SHAPE_RULES:
                for t in op.outputs:
                    sg.tensors[t].shape = np.array([7], dtype=np.int32)
    assert _mismatches(model, infer_shapes(model), _litert_shapes(path.stem)) == []


def test_unknown_operators_keep_stored_shapes_and_known_ones_after_them_are_inferred() -> None:
    model = _load("dilated_int8")
    expected = infer_shapes(model)
    code = schema.OperatorCodeT()
    code.builtinCode, code.customCode, code.version = schema.BuiltinOperator.CUSTOM, "opaque", 1
    model.operatorCodes.append(code)
    first = model.subgraphs[0].operators[0]  # CONV_2D ahead of the first SPACE_TO_BATCH_ND
    first.opcodeIndex = len(model.operatorCodes) - 1
    out = int(first.outputs[0])
    model.subgraphs[0].tensors[out].shape = np.array([1, 32, 32, 8], np.int32)
    assert infer_shapes(model) == expected
    model.subgraphs[0].tensors[out].shape = np.array([1, 32, 32, 5], np.int32)
    shapes = infer_shapes(model)  # trusted: the 5 channels flow on to the known ops
    assert (0, out) not in shapes
    assert shapes[min(expected)] == (4, 18, 18, 5)


# ---------------------------------------------------------------------------------------------
# Hazards on the committed models


@pytest.mark.parametrize("path", MODELS, ids=MODEL_IDS)
def test_hazards_are_exactly_the_wrong_stored_shapes(path: Path) -> None:
    model = _load(path.stem)
    hazards = find_hazards(model)
    print(f"\n{path.stem}: {len(hazards)} hazard(s)")
    for line in describe(hazards):
        print("  " + line)
    assert all(h.subgraph == 0 for h in hazards)
    found = {h.tensor: (h.stored, h.true) for h in hazards if h.kind == "shape"}
    assert found == _wrong_stored(path.stem)
    model = _load(path.stem)
    s2b = [int(op.outputs[0]) for op in model.subgraphs[0].operators
           if opcode_name(model, op.opcodeIndex) == "SPACE_TO_BATCH_ND"]
    assert [h.tensor for h in hazards if h.kind != "shape"] == s2b
    assert {h.kind for h in hazards} <= {"shape", "uninitialized_padding"}


def test_dilated_model_is_flagged_with_exact_shapes() -> None:
    hazards = [h for h in find_hazards(_load("dilated_int8")) if h.kind == "shape"]
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
    clean = [p.stem for p in MODELS if not _wrong_stored(p.stem)]
    assert len(clean) >= 5  # the committed set has many clean models
    for name in clean:
        assert find_hazards(_load(name)) == [], name


# ---------------------------------------------------------------------------------------------
# fix_shapes


def test_fix_shapes_writes_true_shapes_and_round_trips() -> None:
    model = _load("dilated_int8")
    shapes = infer_shapes(model)
    assert fix_shapes(model, shapes) == len(shapes) == 4
    assert fix_shapes(model, shapes) == 0  # idempotent
    fixed = fio.load_model(fio.serialize_model(model)).model
    assert infer_shapes(fixed) == {}
    assert [h.kind for h in find_hazards(fixed)] == ["uninitialized_padding"] * 2
    for (_, t), shape in shapes.items():
        tensor = fixed.subgraphs[0].tensors[t]
        assert _stored(tensor) == shape
        assert list(tensor.shapeSignature) == [-1, *shape[1:]]  # batch stays dynamic


def test_fix_shapes_replaces_a_contradicting_signature() -> None:
    model = _load("dilated_int8")
    (key, shape), *_ = infer_shapes(model).items()
    model.subgraphs[0].tensors[key[1]].shapeSignature = np.array([1, 18, 18, 8], np.int32)
    fix_shapes(model, {key: shape})
    assert list(model.subgraphs[0].tensors[key[1]].shapeSignature) == list(shape)


def test_true_shapes_feed_the_memory_model() -> None:
    model = _load("dilated_int8")
    shapes = infer_shapes(model)
    stored = simulate(build_graph(model), [list(range(len(model.subgraphs[0].operators)))])
    true = simulate(build_graph(model, shapes), [list(range(len(model.subgraphs[0].operators)))])
    assert true.lower_bound > stored.lower_bound


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
    model = _load(CLEAN)
    t = int(model.subgraphs[0].inputs[0])
    model.subgraphs[0].tensors[t].shape = np.array([-1, 48, 48, 3], np.int32)
    hazards = find_hazards(model)
    assert [(h.kind, h.tensor) for h in hazards] == [("dynamic_dim", t)]


def test_dynamic_dim_downstream_is_a_shape_hazard() -> None:
    """An op output stored with -1 gets its static shape inferred: TFLM would size it as 0."""
    model = _load(CLEAN)
    _, t = _first_op_output(model, "CONV_2D")
    tensor = model.subgraphs[0].tensors[t]
    good = _stored(tensor)
    tensor.shape = np.array([-1, *good[1:]], np.int32)
    (h,) = find_hazards(model)
    assert (h.kind, h.tensor, h.true) == ("shape", t, good)
    assert h.bytes_missing == int(np.prod(good))  # int8: TFLM would allocate 0 bytes


def test_unproduced_input() -> None:
    model = _load(CLEAN)
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
    model = _load(CLEAN)
    ops = model.subgraphs[0].operators
    ops[0], ops[1] = ops[1], ops[0]  # op 1 reads op 0's output in the committed order
    assert "read_before_write" in _kinds(model)


def _packed_plan(model: schema.ModelT, true_shapes=None, inplace: bool = False) -> list[int]:
    """First fit by descending size over TFLM's lifetimes (``memory.simulate``).

    With ``inplace`` every member of an in-place group gets its group's offset.
    """
    graph = build_graph(model, true_shapes)
    use = simulate(graph, graph.stored_orders(), inplace=inplace)
    base = np.cumsum([0] + [len(sg.tensors) for sg in graph.subgraphs]).tolist()
    plan = [-1] * graph.n_tensors
    placed: list[tuple[int, object]] = []
    for b in sorted(use.buffers, key=lambda b: (-b.size, b.tensors)):
        clash = [(o, p) for o, p in placed if p.overlaps(b)]
        for off in sorted({0} | {o + p.size for o, p in clash}):
            if all(off + b.size <= o or o + p.size <= off for o, p in clash):
                break
        placed.append((off, b))
        for s, t in b.tensors:
            plan[base[s] + t] = off
    return plan


def _sequential_plan(model: schema.ModelT, true_shapes=None) -> list[int]:
    """No reuse: every arena tensor its own region, in lifetime order."""
    graph = build_graph(model, true_shapes)
    use = simulate(graph, graph.stored_orders(), inplace=False)
    base = np.cumsum([0] + [len(sg.tensors) for sg in graph.subgraphs]).tolist()
    plan, pos = [-1] * graph.n_tensors, 0
    for b in use.buffers:
        (s, t), = b.tensors
        plan[base[s] + t] = pos
        pos += b.size
    return plan


def test_plan_count_and_alignment() -> None:
    model = _load(CLEAN)
    plan = _sequential_plan(model)
    last = int(np.argmax(plan))  # the highest region: moving it overlaps nothing
    plan[last] += 8
    fio.set_offline_plan(model, plan)
    assert _kinds(model) == ["plan_alignment"]
    model.subgraphs[0].tensors.append(schema.TensorT())  # now one offset short
    assert _kinds(model) == ["plan_count"]


def test_plan_overlap() -> None:
    model = _load(CLEAN)
    plan = _sequential_plan(model)
    fio.set_offline_plan(model, [0 if off >= 0 else -1 for off in plan])
    hazards = find_hazards(model)
    assert hazards and {h.kind for h in hazards} == {"plan_overlap"}
    assert all(h.bytes_missing > 0 for h in hazards)


def test_packed_plans_are_clean_and_inplace_aliasing_is_allowed() -> None:
    for inplace in (False, True):
        model = _load(CLEAN)
        fio.set_offline_plan(model, _packed_plan(model, inplace=inplace))
        assert find_hazards(model) == [], inplace


def test_stored_size_plan_overlaps_in_truth() -> None:
    """A plan made with the stored (too small) sizes overlaps live tensors at true sizes."""
    model = _load("dilated_int8")
    true = infer_shapes(model)
    fio.set_offline_plan(model, _packed_plan(model))
    assert "plan_overlap" in _kinds(model)
    fio.set_offline_plan(model, _packed_plan(model, true))
    assert [k for k in _kinds(model) if k not in ("shape", "uninitialized_padding")] == []


# ---------------------------------------------------------------------------------------------
# TFLM: the hazard is real, and fix_shapes removes it


def _run_tflm(data: bytes, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Output 0 per single-input case, in a large arena (the model's own plan decides)."""
    return [tflm.run_tflm(data, [x], arena_size=1 << 22)[0].astype(np.int32) for x in inputs]


def _run_litert(data: bytes, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Output 0 per single-input case."""
    outs, _ = run_litert_cases(data, [[x] for x in inputs])
    return [o[0].astype(np.int32) for o in outs]


def _outputs_per_plan(model: schema.ModelT, inputs, true_shapes=None) -> dict[str, list]:
    plans = {
        "no-reuse": _sequential_plan(model, true_shapes),
        "packed": _packed_plan(model, true_shapes),
        "greedy": None,  # TFLM's own online planner
    }
    outs = {}
    for name, plan in plans.items():
        fio.remove_offline_plan(model)
        if plan is not None:
            fio.set_offline_plan(model, plan)
        outs[name] = _run_tflm(fio.serialize_model(model), inputs)
    fio.remove_offline_plan(model)
    return outs


def _max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> int:
    return max(int(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))


def _margin(model: schema.ModelT) -> int:
    """Border pixels that SPACE_TO_BATCH_ND padding can reach, for a straight-line model.

    Each padded (dilated) convolution reads at most max(padding) pixels past the image edge,
    so output pixels further than the sum of those from every border never see padding.
    """
    sg = model.subgraphs[0]
    margin = 0
    for op in sg.operators:
        if opcode_name(model, op.opcodeIndex) == "SPACE_TO_BATCH_ND":
            buf = model.buffers[sg.tensors[op.inputs[2]].buffer].data
            margin += int(np.frombuffer(np.asarray(buf, np.uint8).tobytes(), "<i4").max())
    return margin


def _interior(outs: list[np.ndarray], m: int) -> list[np.ndarray]:
    return [o[:, m:-m, m:-m, :] for o in outs]


def test_tflm_outputs_depend_on_the_plan_until_shapes_are_fixed() -> None:
    """The hazard is real, and fix_shapes removes it (compared away from the padded border).

    The border is excluded because TFLM's SPACE_TO_BATCH_ND pads with an uninitialized
    value (see the next test), which can change between runs, not only between plans.
    """
    name = "dilated_int8"
    raw = (MODELS_DIR / f"{name}.tflite").read_bytes()
    rng = np.random.default_rng(0)
    shape = _litert_shapes(name)[int(_load(name).subgraphs[0].inputs[0])]
    inputs = [rng.integers(-128, 128, size=shape, dtype=np.int8) for _ in range(2)]
    reference = _run_litert(raw, inputs)
    model = _load(name)
    m = _margin(model)
    assert m == 4

    before = _outputs_per_plan(model, inputs)  # plans from the stored sizes
    assert fix_shapes(model, infer_shapes(model)) == 4
    fixed_raw = fio.serialize_model(model)
    after = _outputs_per_plan(model, inputs)  # the stored sizes are now the true sizes

    def spread(outs: dict[str, list], margin: int = 0) -> int:
        cut = (lambda o: _interior(o, margin)) if margin else (lambda o: o)
        return max(_max_diff(cut(outs["greedy"]), cut(o)) for o in outs.values())

    vs_ref = {k: _max_diff(o, reference) for k, o in after.items()}
    print(
        f"\n{name}: TFLM spread across plans before fix: {spread(before)} LSB "
        f"(interior {spread(before, m)}); after fix: {spread(after)} LSB "
        f"(interior {spread(after, m)}); fixed TFLM vs LiteRT(BUILTIN_REF): {vs_ref} LSB, "
        f"interior {_max_diff(_interior(after['greedy'], m), _interior(reference, m))} LSB"
    )
    assert spread(before, m) > 0  # TFLM's result depends on the plan
    assert spread(after, m) == 0  # fixed: identical under every plan ...
    for outs in after.values():  # ... and bit-exact with LiteRT away from the padding
        assert _max_diff(_interior(outs, m), _interior(reference, m)) == 0
    assert _max_diff(_run_litert(fixed_raw, inputs), reference) == 0


def test_tflm_space_to_batch_padding_is_not_the_zero_point() -> None:
    """Why the border differs: TFLM's padded values are not LiteRT's (the zero point, -128).

    Everything else the fixed SPACE_TO_BATCH_ND writes is bit-exact.
    """
    model = _load("dilated_int8")
    fix_shapes(model, infer_shapes(model))
    sg = model.subgraphs[0]
    s2b = next(op for op in sg.operators if opcode_name(model, op.opcodeIndex)
               == "SPACE_TO_BATCH_ND")
    t = int(s2b.outputs[0])
    sg.outputs = np.array([t], np.int32)
    data = fio.serialize_model(model)
    x = np.random.default_rng(0).integers(-128, 128, size=(1, 32, 32, 3), dtype=np.int8)
    on_tflm = _run_tflm(data, [x])[0]
    it = litert(data)
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    on_litert = it.get_tensor(t).astype(np.int32)
    # [4, 18, 18, 8] from 32x32, block 2x2, paddings [[2, 2], [2, 2]]: in every sub-batch, row
    # (column) r is row 2r + phase of the 36x36 padded image, padding for r = 0 and r = 17.
    assert on_litert.shape == (4, 18, 18, 8)
    padded = np.ones(on_litert.shape, bool)
    padded[:, 1:17, 1:17, :] = False
    assert (on_litert[padded] == -128).all()
    assert (on_tflm[~padded] == on_litert[~padded]).all()
    print(f"\nTFLM SPACE_TO_BATCH_ND pad values: {np.unique(on_tflm[padded]).tolist()}, "
          "LiteRT: -128")


# ---------------------------------------------------------------------------------------------
# repair_padding: SPACE_TO_BATCH_ND's padding moved into an explicit PAD

PADDED_S2B = ["dilated_int8", "darts_int8", "darts_float32"]  # converter-lowered dilated convs


def _int32_data(model: schema.ModelT, tensor: schema.TensorT) -> np.ndarray:
    raw = np.asarray(model.buffers[tensor.buffer].data, np.uint8).tobytes()
    return np.frombuffer(raw, "<i4").reshape(_stored(tensor))


def _has_s2b(model: schema.ModelT) -> bool:
    return any(opcode_name(model, op.opcodeIndex) == "SPACE_TO_BATCH_ND"
               for sg in model.subgraphs for op in sg.operators or [])


@functools.cache
def _repaired(name: str) -> bytes:
    model = _load(name)
    assert repair_padding(model)
    fix_shapes(model, infer_shapes(model))
    return fio.serialize_model(model)


@functools.cache
def _shapes_fixed_only(name: str) -> bytes:
    model = _load(name)
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
    model = _load(name)
    sg = model.subgraphs[0]
    n_ops, n_tensors = len(sg.operators), len(sg.tensors)
    s2b = [(i, op) for i, op in enumerate(sg.operators)
           if opcode_name(model, op.opcodeIndex) == "SPACE_TO_BATCH_ND"]
    before = [(int(op.inputs[0]), _int32_data(model, sg.tensors[op.inputs[2]]).copy())
              for _, op in s2b]
    old_paddings = [int(op.inputs[2]) for _, op in s2b]
    true_in = [_litert_shapes(name)[x] for x, _ in before]
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
        assert _stored(new) == tuple(d + int(p.sum()) for d, p in zip(shape, full, strict=True))
        assert new.type == old.type
        if old.quantization is not None and old.quantization.scale is not None:
            assert list(new.quantization.scale) == list(old.quantization.scale)
            assert list(new.quantization.zeroPoint) == list(old.quantization.zeroPoint)
        itemsize = 4 if name.endswith("float32") else 1
        assert r["bytes"] == itemsize * int(np.prod(_stored(new)))
        assert not _int32_data(model, sg.tensors[op.inputs[2]]).any()
    for t, (_, pads) in zip(old_paddings, before, strict=True):  # shared buffers not mutated
        assert (_int32_data(model, sg.tensors[t]) == pads).all()
    (code,) = [c for i, c in enumerate(model.operatorCodes) if opcode_name(model, i) == "PAD"]
    assert code.builtinCode == code.deprecatedBuiltinCode == schema.BuiltinOperator.PAD
    if name == "dilated_int8":
        assert [(r["op"], r["bytes"]) for r in repairs] == [(1, 36 * 36 * 8), (6, 36 * 36 * 8)]

    build_graph(model)
    assert "uninitialized_padding" not in _kinds(model)
    fix_shapes(model, infer_shapes(model))
    assert find_hazards(model) == []
    reloaded = fio.load_model(fio.serialize_model(model)).model
    assert infer_shapes(reloaded) == {} and find_hazards(reloaded) == []
    assert repair_padding(reloaded) == []  # idempotent: nothing pads any more


def test_models_without_padded_s2b_are_untouched() -> None:
    plain = [p.stem for p in MODELS if not _has_s2b(_load(p.stem))]
    assert "while_float32" in plain and len(plain) >= 5  # including a multi-subgraph model
    for name in plain:
        model = _load(name)
        fio.set_offline_plan(model, [-1] * sum(len(sg.tensors) for sg in model.subgraphs))
        data = fio.serialize_model(model)
        assert repair_padding(model) == [], name
        assert fio.serialize_model(model) == data, name


@pytest.mark.parametrize("name", PADDED_S2B)
def test_repaired_model_is_bit_identical_in_litert(name: str) -> None:
    raw = (MODELS_DIR / f"{name}.tflite").read_bytes()
    for seed in range(3):
        inputs = structured_inputs(raw, seed)
        assert _bits_equal(run_litert(_repaired(name), inputs),
                           run_litert(raw, inputs)), seed


def _with_plan(data: bytes, plan: str) -> bytes:
    if plan == "greedy":  # TFLM's own online planner
        return data
    model = fio.load_model(data).model
    fio.set_offline_plan(model, _sequential_plan(model))  # no reuse at all
    return fio.serialize_model(model)


@pytest.mark.parametrize("name", PADDED_S2B)
def test_repaired_model_is_bit_exact_and_deterministic_in_tflm(name: str) -> None:
    """TFLM equals LiteRT on every bit, in 3 runs, under TFLM's plan and a no-reuse plan.

    Shapes alone (``fix_shapes``) leave TFLM padding with garbage: printed for comparison,
    not asserted, since the garbage differs between processes (and may happen to be right).
    """
    raw = (MODELS_DIR / f"{name}.tflite").read_bytes()
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


# ---------------------------------------------------------------------------------------------
# Rules for operators the committed models do not contain, each against LiteRT on a one-op model


def _one_op_model(
    opcode: str, inputs: list, options=None, n_out: int = 1, out_shape: tuple = (1,)
) -> bytes:
    """A float32 model of one operator: a tuple is a subgraph input of that shape, an array a
    constant. Outputs are stored as ``out_shape`` (LiteRT re-derives them, except that its
    SLICE checks the stored shape)."""
    model = schema.ModelT()
    model.version = 3
    code = schema.OperatorCodeT()
    code.builtinCode = getattr(schema.BuiltinOperator, opcode)
    code.deprecatedBuiltinCode = min(code.builtinCode, 127)
    code.version = 2 if opcode == "BROADCAST_TO" else 1  # the only registered versions
    model.operatorCodes = [code]
    model.buffers = [schema.BufferT()]
    sg = schema.SubGraphT()
    sg.tensors, sg.inputs = [], []

    def tensor(shape, dtype, buffer: int) -> int:
        t = schema.TensorT()
        t.shape, t.type, t.buffer = np.array(shape, np.int32), dtype, buffer
        t.name = f"t{len(sg.tensors)}"
        sg.tensors.append(t)
        return len(sg.tensors) - 1

    op = schema.OperatorT()
    op.opcodeIndex, op.inputs = 0, []
    for x in inputs:
        if isinstance(x, tuple):
            sg.inputs.append(tensor(x, schema.TensorType.FLOAT32, 0))
            op.inputs.append(sg.inputs[-1])
        else:
            arr = np.asarray(x)
            is_float = arr.dtype.kind == "f"
            arr = arr.astype("<f4" if is_float else "<i4")
            buf = schema.BufferT()
            buf.data = arr.reshape(-1).view(np.uint8).copy()
            model.buffers.append(buf)
            dtype = schema.TensorType.FLOAT32 if is_float else schema.TensorType.INT32
            op.inputs.append(tensor(arr.shape, dtype, len(model.buffers) - 1))
    op.outputs = [tensor(out_shape, schema.TensorType.FLOAT32, 0) for _ in range(n_out)]
    if options is not None:
        op.builtinOptionsType = getattr(schema.BuiltinOptions, type(options).__name__[:-1])
        op.builtinOptions = options
    sg.operators, sg.outputs = [op], list(op.outputs)
    model.subgraphs = [sg]
    return fio.serialize_model(model)


def _options(cls: str, **fields):
    opts = getattr(schema, cls)()
    for k, v in fields.items():
        setattr(opts, k, v)
    return opts


def _w(*shape: int) -> np.ndarray:
    return np.zeros(shape, np.float32)


ONE_OP_CASES = {
    "conv_s2_same": ("CONV_2D", [(1, 9, 7, 3), _w(4, 3, 3, 3), _w(4)],
                     _options("Conv2DOptionsT", padding=0, strideH=2, strideW=2)),
    "conv_valid_dilated": ("CONV_2D", [(1, 12, 11, 3), _w(5, 3, 2, 3), _w(5)],
                           _options("Conv2DOptionsT", padding=1, strideH=1, strideW=2,
                                    dilationHFactor=3, dilationWFactor=2)),
    "dw_mult2": ("DEPTHWISE_CONV_2D", [(1, 8, 8, 3), _w(1, 3, 3, 6), _w(6)],
                 _options("DepthwiseConv2DOptionsT", padding=1, strideH=2, strideW=2,
                          depthMultiplier=2)),
    "maxpool_valid": ("MAX_POOL_2D", [(1, 9, 9, 2)],
                      _options("Pool2DOptionsT", padding=1, strideH=2, strideW=2,
                               filterHeight=3, filterWidth=3)),
    "transpose_conv": ("TRANSPOSE_CONV", [np.array([1, 10, 10, 4]), _w(4, 3, 3, 2), (1, 5, 5, 2)],
                       _options("TransposeConvOptionsT", padding=0, strideH=2, strideW=2)),
    "fc_keep_dims": ("FULLY_CONNECTED", [(2, 3, 8), _w(5, 8)],
                     _options("FullyConnectedOptionsT", keepNumDims=True)),
    "fc_flatten": ("FULLY_CONNECTED", [(2, 3, 8), _w(5, 8)], None),
    "batch_matmul": ("BATCH_MATMUL", [(2, 1, 4, 3), (3, 4, 5)],
                     _options("BatchMatMulOptionsT", adjX=True)),
    "concat_neg_axis": ("CONCATENATION", [(1, 4, 2), (1, 4, 3)],
                        _options("ConcatenationOptionsT", axis=-1)),
    "padv2": ("PADV2", [(1, 4, 4, 2), np.array([[0, 0], [1, 2], [3, 0], [0, 1]]),
                        np.array(0.5, np.float32)], None),
    "mirror_pad": ("MIRROR_PAD", [(1, 4, 4, 2), np.array([[0, 0], [1, 1], [2, 2], [0, 0]])],
                   _options("MirrorPadOptionsT", mode=0)),
    "reshape_minus1": ("RESHAPE", [(2, 3, 4), np.array([4, -1])], None),
    "reshape_options": ("RESHAPE", [(2, 3, 4)], _options("ReshapeOptionsT", newShape=[3, 8])),
    "squeeze": ("SQUEEZE", [(1, 3, 1, 2)], _options("SqueezeOptionsT", squeezeDims=[2])),
    "squeeze_all": ("SQUEEZE", [(1, 3, 1, 2)], None),
    "expand_dims": ("EXPAND_DIMS", [(3, 2), np.array([-1])], None),
    "sum_keep": ("SUM", [(2, 3, 4), np.array([0, -1])], _options("ReducerOptionsT", keepDims=True)),
    "reduce_max": ("REDUCE_MAX", [(2, 3, 4), np.array([1])], None),
    "arg_max": ("ARG_MAX", [(2, 3, 4), np.array([1])],
                _options("ArgMaxOptionsT", outputType=schema.TensorType.INT32)),
    "split_v_minus1": ("SPLIT_V", [(2, 9), np.array([2, -1, 3]), np.array(1)],
                       _options("SplitVOptionsT", numSplits=3), 3),
    "unpack": ("UNPACK", [(2, 3, 4)], _options("UnpackOptionsT", num=3, axis=1), 3),
    "strided_masks": ("STRIDED_SLICE", [(4, 6, 5), np.array([1, 0, 1]), np.array([3, 5, 4]),
                                        np.array([1, 2, 1])],
                      _options("StridedSliceOptionsT", beginMask=2, endMask=4,
                               shrinkAxisMask=1)),
    "strided_ellipsis": ("STRIDED_SLICE", [(4, 6, 5), np.array([0, 1]), np.array([0, 4]),
                                           np.array([1, 1])],
                         _options("StridedSliceOptionsT", ellipsisMask=1)),
    "slice": ("SLICE", [(4, 6, 5), np.array([1, 2, 0]), np.array([2, -1, 3])], None, 1, (2, 4, 3)),
    "space_to_batch_3x2": ("SPACE_TO_BATCH_ND", [(2, 7, 5, 3), np.array([3, 2]),
                                                 np.array([[1, 1], [0, 1]])], None),
    "batch_to_space_crops": ("BATCH_TO_SPACE_ND", [(12, 3, 3, 2), np.array([3, 2]),
                                                   np.array([[1, 2], [0, 1]])], None),
    "space_to_depth": ("SPACE_TO_DEPTH", [(1, 4, 6, 3)],
                       _options("SpaceToDepthOptionsT", blockSize=2)),
    "depth_to_space": ("DEPTH_TO_SPACE", [(1, 2, 3, 8)],
                       _options("DepthToSpaceOptionsT", blockSize=2)),
    "transpose": ("TRANSPOSE", [(2, 3, 4), np.array([2, 0, 1])], None),
    "resize_bilinear": ("RESIZE_BILINEAR", [(1, 4, 4, 3), np.array([7, 9])], None),
    "tile": ("TILE", [(2, 3), np.array([2, 3])], None),
    "broadcast_to": ("BROADCAST_TO", [(3, 1), np.array([2, 3, 4])], None),
    "gather_axis1": ("GATHER", [(3, 5, 2), np.array([[0, 1], [4, 4], [2, 3]])],
                     _options("GatherOptionsT", axis=1)),
    "sub_broadcast": ("SUB", [(2, 1, 4), (3, 1)], None),
    "l2_norm": ("L2_NORMALIZATION", [(2, 5)], None),
}


@pytest.mark.parametrize("case", sorted(ONE_OP_CASES))
def test_rule_on_one_op_model_agrees_with_litert(case: str) -> None:
    opcode, inputs, options, *n_out = ONE_OP_CASES[case]
    data = _one_op_model(opcode, inputs, options, *n_out)
    it = litert(data)
    truth = {d["index"]: tuple(int(x) for x in d["shape"]) for d in it.get_tensor_details()}
    model = fio.load_model(data).model
    for t in model.subgraphs[0].operators[0].outputs:
        model.subgraphs[0].tensors[t].shape = np.array([7], np.int32)  # only inference counts
    inferred = infer_shapes(model)
    for t in model.subgraphs[0].operators[0].outputs:
        assert inferred.get((0, int(t))) == truth[int(t)], (case, t)
