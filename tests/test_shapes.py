"""Shape truth (``shapes``): inferred shapes against LiteRT, ``fix_shapes``, and TFLM before
and after it.

LiteRT re-runs shape inference in ``allocate_tensors()``, so its tensor shapes are the truth the
kernels use. TFLM does not: it allocates from the stored shapes, which is why a model with
wrong stored shapes gives plan-dependent outputs in TFLM until the true shapes are written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from conftest import LITERT_MODELS as MODELS  # LiteRT is the truth; unknown_op runs nowhere
from conftest import model_path
from shapetruth import (
    litert_shapes,
    load,
    mismatches,
    packed_plan,
    sequential_plan,
    stored,
)

from tflite_reorder import flatbuffer_io as fio
from tflite_reorder import tflm
from tflite_reorder.graph import build_graph, opcode_name
from tflite_reorder.hazards import find_hazards
from tflite_reorder.memory import simulate
from tflite_reorder.runtimes import litert, run_litert_cases
from tflite_reorder.shapes import CHECKED_OPS, fix_shapes, infer_shapes
from tflite_reorder.shapes import infer as infer_mod

MODEL_IDS = [p.stem for p in MODELS]


# ---------------------------------------------------------------------------------------------
# Inference against LiteRT


@pytest.mark.parametrize("path", MODELS, ids=MODEL_IDS)
def test_infer_shapes_agrees_with_litert(path: Path) -> None:
    model = load(path.stem)
    assert mismatches(model, infer_shapes(model), litert_shapes(path.stem)) == []


@pytest.mark.parametrize("path", MODELS, ids=MODEL_IDS)
def test_rules_rederive_every_shape_from_scratch(path: Path) -> None:
    """Overwrite every output shape of every op with a rule: inference alone must recover it.

    Without this, a rule that silently fell back to the stored shape would still pass the
    agreement test above.
    """
    model = load(path.stem)
    for sg in model.subgraphs:
        for op in sg.operators or []:
            if opcode_name(model, op.opcodeIndex) in CHECKED_OPS:
                for t in op.outputs:
                    sg.tensors[t].shape = np.array([7], dtype=np.int32)
    assert mismatches(model, infer_shapes(model), litert_shapes(path.stem)) == []


def test_unknown_operators_keep_stored_shapes_and_known_ones_after_them_are_inferred() -> None:
    model = load("dilated_int8")
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
# fix_shapes


def test_fix_shapes_writes_true_shapes_and_round_trips() -> None:
    model = load("dilated_int8")
    shapes = infer_shapes(model)
    assert fix_shapes(model, shapes) == len(shapes) == 4
    assert fix_shapes(model, shapes) == 0  # idempotent
    fixed = fio.load_model(fio.serialize_model(model)).model
    assert infer_shapes(fixed) == {}
    assert [h.kind for h in find_hazards(fixed)] == ["uninitialized_padding"] * 2
    for (_, t), shape in shapes.items():
        tensor = fixed.subgraphs[0].tensors[t]
        assert stored(tensor) == shape
        assert list(tensor.shapeSignature) == [-1, *shape[1:]]  # batch stays dynamic


def test_fix_shapes_replaces_a_contradicting_signature() -> None:
    model = load("dilated_int8")
    (key, shape), *_ = infer_shapes(model).items()
    model.subgraphs[0].tensors[key[1]].shapeSignature = np.array([1, 18, 18, 8], np.int32)
    fix_shapes(model, {key: shape})
    assert list(model.subgraphs[0].tensors[key[1]].shapeSignature) == list(shape)


def test_true_shapes_feed_the_memory_model() -> None:
    model = load("dilated_int8")
    shapes = infer_shapes(model)
    stored = simulate(build_graph(model), [list(range(len(model.subgraphs[0].operators)))])
    true = simulate(build_graph(model, shapes), [list(range(len(model.subgraphs[0].operators)))])
    assert true.lower_bound > stored.lower_bound



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
        "no-reuse": sequential_plan(model, true_shapes),
        "packed": packed_plan(model, true_shapes),
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


@pytest.mark.tflm
def test_tflm_outputs_depend_on_the_plan_until_shapes_are_fixed() -> None:
    """The hazard is real, and fix_shapes removes it (compared away from the padded border).

    The border is excluded because TFLM's SPACE_TO_BATCH_ND pads with an uninitialized
    value (see the next test), which can change between runs, not only between plans.
    """
    name = "dilated_int8"
    raw = model_path(name).read_bytes()
    rng = np.random.default_rng(0)
    shape = litert_shapes(name)[int(load(name).subgraphs[0].inputs[0])]
    inputs = [rng.integers(-128, 128, size=shape, dtype=np.int8) for _ in range(2)]
    reference = _run_litert(raw, inputs)
    model = load(name)
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


@pytest.mark.tflm
def test_tflm_space_to_batch_padding_is_not_the_zero_point() -> None:
    """Why the border differs: TFLM's padded values are not LiteRT's (the zero point, -128).

    Everything else the fixed SPACE_TO_BATCH_ND writes is bit-exact.
    """
    model = load("dilated_int8")
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



def test_nested_if_branches_are_inferred_once_without_recursion():
    """1,500 nested IFs: each branch once, callees first (recursing would hit Python's
    limit; re-inferring every branch per caller would be quadratic)."""
    from tools import make_bad_inputs as mb

    model_t = fio.load_model(mb.nested_ifs(1500)).model
    calls = []
    real = infer_mod._infer_one
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(infer_mod, "_infer_one",
                   lambda m, s, b, n: calls.append(s) or real(m, s, b, n))
        assert infer_shapes(model_t) == {}  # every stored shape is already the true one
    assert sorted(calls) == list(range(len(model_t.subgraphs)))
    assert find_hazards(model_t) == []


def test_an_if_without_its_options_keeps_its_stored_shapes():
    """A spliced opcode can make any operator an IF with no IfOptions (found by the fuzzer):
    inference keeps that IF's stored shapes; ``build_graph`` rejects the model later."""
    from tools import make_bad_inputs as mb

    model_t = fio.load_model(mb.nested_ifs(2)).model
    model_t.subgraphs[0].operators[0].builtinOptions = None
    assert infer_shapes(model_t) == {}


def test_prod64_is_numpys_int64_product() -> None:
    """The rules' element counts wrap as numpy's int64 product did (absurd shapes too)."""
    import random

    import numpy as np

    from tflite_reorder.shapes.rules import prod64

    rng = random.Random(5)
    for _ in range(5000):
        dims = tuple(rng.choice([0, 1, 3, 7, 2**20, 2**30, 2**31 - 1, -1, -5])
                     for _ in range(rng.randint(0, 6)))
        assert prod64(dims) == int(np.prod(dims, dtype=np.int64)), dims


def test_broadcast_is_numpys_broadcast_shapes() -> None:
    """The binary ops' rule broadcasts as ``np.broadcast_shapes`` did: the same shape, and a
    ``ValueError`` (the rule's Unknown) where numpy raises one (negative dimensions too)."""
    import random

    from tflite_reorder.shapes.rules import broadcast

    def numpy_or_error(shapes):
        try:
            return tuple(int(d) for d in np.broadcast_shapes(*shapes))
        except ValueError:
            return "error"

    def ours_or_error(shapes):
        try:
            return broadcast(*shapes)
        except ValueError:
            return "error"

    rng = random.Random(11)
    outcomes = set()
    for _ in range(20000):
        dims = [0, 1, 1, 2, 3, 7] + ([-1] if rng.random() < 0.1 else [])
        shapes = [tuple(rng.choice(dims) for _ in range(rng.randint(0, 4)))
                  for _ in range(rng.randint(1, 3))]
        if rng.random() < 0.2:
            shapes = [shapes[0]] * len(shapes)  # equal shapes (the common case)
        if rng.random() < 0.1:
            shapes = [tuple(np.int32(d) for d in s) for s in shapes]
        want = numpy_or_error(shapes)
        assert ours_or_error(shapes) == want, shapes
        outcomes.add(want == "error")
    assert outcomes == {True, False}
