"""Shape truth: the shapes kernels really produce, and memory hazards visible before running.

TFLM allocates every arena tensor from the shape stored in the flatbuffer and never re-runs
shape inference, but some kernels (SPACE_TO_BATCH_ND among them) compute their own output
shape. The TF 2.21 converter stores the intermediates of a lowered dilated convolution with
batch 1 where the kernels produce batch 4, so TFLM runs them on a quarter-size buffer and its
outputs depend on the memory plan. ``infer_shapes`` re-derives every shape statically,
``find_hazards`` reports what disagrees (and a few other statically detectable TFLM memory
hazards), and ``fix_shapes`` writes the true shapes back so the model is safe under any plan.

Inference runs per subgraph in stored order from the subgraph inputs' stored shapes. Small
integer tensors (constants, SHAPE outputs and arithmetic on them) are tracked by value, since
shapes flow through them (``RESHAPE(x, PACK(STRIDED_SLICE(SHAPE(x)), …))``). Operators
without a rule keep their stored output shapes, but known operators after them are still
re-derived from whatever their inputs are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from . import flatbuffer_io as fio
from .graph import (
    ARENA_ALIGNMENT,
    TYPE_NAMES,
    ModelGraph,
    build_graph,
    opcode_name,
    tensor_bytes,
)
from .memory import INPLACE_OPS, simulate

Shape = tuple[int, ...]
Key = tuple[int, int]  # (subgraph, tensor)

MAX_VALUE_ELEMENTS = 1024  # integer tensors tracked by value (shapes, axes, paddings)
VALUE_DTYPES = {"INT32": np.int32, "INT64": np.int64}


class _Unknown(Exception):
    """A rule lacks something it needs (a value, an option); the stored shape is kept."""


# ---------------------------------------------------------------------------------------------
# Per-subgraph inference state


@dataclass
class _Env:
    """Shapes and known values of one subgraph's tensors while walking its operators."""

    model: schema.ModelT
    sg: schema.SubGraphT
    shapes: list[Shape]
    values: dict[int, np.ndarray] = field(default_factory=dict)

    def shape(self, t: int) -> Shape:
        if t < 0:
            raise _Unknown("optional input")
        return self.shapes[t]

    def value(self, t: int) -> np.ndarray:
        if t not in self.values:
            raise _Unknown(f"value of tensor {t}")
        return self.values[t]

    def dtype(self, t: int) -> str:
        return TYPE_NAMES.get(self.sg.tensors[t].type, "")


def _stored_shape(t: schema.TensorT) -> Shape:
    return tuple(int(d) for d in (t.shape if t.shape is not None else ()))


def _constant_value(model: schema.ModelT, t: schema.TensorT) -> np.ndarray | None:
    """The data of a small constant integer tensor, shaped as stored, else None."""
    np_type = VALUE_DTYPES.get(TYPE_NAMES.get(t.type, ""))
    buffers = model.buffers or []
    if np_type is None or not 0 < t.buffer < len(buffers):
        return None
    data = buffers[t.buffer].data
    if data is None or len(data) == 0:
        return None
    raw = np.asarray(data, dtype=np.uint8).tobytes()
    values = np.frombuffer(raw, dtype=np.dtype(np_type).newbyteorder("<"))
    shape = _stored_shape(t)
    if values.size > MAX_VALUE_ELEMENTS or values.size != int(np.prod(shape, dtype=np.int64)):
        return None
    return values.astype(np.int64).reshape(shape)


def _opt(op: schema.OperatorT, name: str, default=None):
    """An option of the operator; converters omit option tables that hold only defaults."""
    value = getattr(op.builtinOptions, name, None)
    if value is not None:
        return value
    if default is None:
        raise _Unknown(f"option {name}")
    return default


def _axis(axis: int, rank: int) -> int:
    axis = int(axis)
    if not -rank <= axis < max(rank, 1):
        raise _Unknown(f"axis {axis} for rank {rank}")
    return axis + rank if axis < 0 else axis


def _dims(values: np.ndarray) -> Shape:
    return tuple(int(v) for v in np.asarray(values).reshape(-1))


def _view(shape: Shape) -> np.ndarray:
    """A zero-memory array of ``shape``: numpy's own indexing then gives slice shapes."""
    return np.broadcast_to(np.zeros((), dtype=np.int8), shape)


# ---------------------------------------------------------------------------------------------
# Shape rules: (env, op) -> one shape per output. ``None`` in the list keeps a stored shape.

Rule = Callable[[_Env, schema.OperatorT], list[Shape | None]]


def _same_as_first(env: _Env, op: schema.OperatorT) -> list[Shape | None]:
    return [env.shape(op.inputs[0])] * len(op.outputs)


def _broadcast(env: _Env, op: schema.OperatorT) -> list[Shape | None]:
    shapes = [env.shape(t) for t in op.inputs if t >= 0]
    return [tuple(int(d) for d in np.broadcast_shapes(*shapes))]


def _select_v1(env: _Env, op: schema.OperatorT) -> list[Shape | None]:
    return [env.shape(op.inputs[1])]


def _out_size(size: int, kernel: int, stride: int, dilation: int, padding: int) -> int:
    """TFLite's ComputeOutSize: SAME keeps ceil(size/stride), VALID drops the border."""
    effective = (kernel - 1) * dilation + 1
    if padding == schema.Padding.SAME:
        return (size + stride - 1) // stride
    return (size + stride - effective) // stride


def _conv_like(env: _Env, op: schema.OperatorT, kh: int, kw: int, channels: int) -> Shape:
    n, h, w, _ = env.shape(op.inputs[0])
    padding = _opt(op, "padding", schema.Padding.SAME)
    sh, sw = _opt(op, "strideH", 1), _opt(op, "strideW", 1)
    dh, dw = _opt(op, "dilationHFactor", 1), _opt(op, "dilationWFactor", 1)
    return (n, _out_size(h, kh, sh, dh, padding), _out_size(w, kw, sw, dw, padding), channels)


def _conv2d(env: _Env, op: schema.OperatorT) -> list[Shape | None]:
    out_c, kh, kw, _ = env.shape(op.inputs[1])  # filter OHWI
    return [_conv_like(env, op, kh, kw, out_c)]


def _depthwise(env: _Env, op: schema.OperatorT) -> list[Shape | None]:
    _, kh, kw, out_c = env.shape(op.inputs[1])  # filter 1HW(C*M)
    return [_conv_like(env, op, kh, kw, out_c)]


def _pool(env: _Env, op: schema.OperatorT) -> list[Shape | None]:
    _, _, _, c = env.shape(op.inputs[0])
    return [_conv_like(env, op, _opt(op, "filterHeight"), _opt(op, "filterWidth"), c)]


def _transpose_conv(env: _Env, op: schema.OperatorT) -> list[Shape | None]:
    return [_dims(env.value(op.inputs[0]))]


def _fully_connected(env: _Env, op: schema.OperatorT) -> list[Shape | None]:
    shape = env.shape(op.inputs[0])
    units, depth = env.shape(op.inputs[1])[:2]
    if _opt(op, "keepNumDims", False):
        return [(*shape[:-1], units)]
    return [(int(np.prod(shape, dtype=np.int64)) // depth, units)]


def _batch_matmul(env: _Env, op: schema.OperatorT) -> list[Shape | None]:
    a, b = env.shape(op.inputs[0]), env.shape(op.inputs[1])
    rows = a[-1] if _opt(op, "adjX", False) else a[-2]
    cols = b[-2] if _opt(op, "adjY", False) else b[-1]
    batch = tuple(int(d) for d in np.broadcast_shapes(a[:-2], b[:-2]))
    return [(*batch, rows, cols)]


def _concatenation(env: _Env, op: schema.OperatorT) -> list[Shape | None]:
    shapes = [env.shape(t) for t in op.inputs]
    axis = _axis(_opt(op, "axis", 0), len(shapes[0]))
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    return [tuple(out)]


def _pad(env: _Env, op: schema.OperatorT) -> list[Shape | None]:
    shape = env.shape(op.inputs[0])
    pads = env.value(op.inputs[1]).reshape(len(shape), 2)
    return [tuple(d + int(p[0]) + int(p[1]) for d, p in zip(shape, pads, strict=True))]


def _resolve_reshape(new: Shape, elements: int) -> Shape:
    if new.count(-1) > 1:
        raise _Unknown("reshape with several -1")
    if -1 in new:
        known = int(np.prod([d for d in new if d != -1], dtype=np.int64))
        if known == 0 or elements % known:
            raise _Unknown("reshape does not divide")
        new = tuple(elements // known if d == -1 else d for d in new)
    return new


def _reshape(env: _Env, op: schema.OperatorT) -> list[Shape | None]:
    elements = int(np.prod(env.shape(op.inputs[0]), dtype=np.int64))
    if len(op.inputs) > 1 and op.inputs[1] >= 0:
        new = _dims(env.value(op.inputs[1]))
    else:
        new = _dims(_opt(op, "newShape"))
    out = _resolve_reshape(new, elements)
    if int(np.prod(out, dtype=np.int64)) != elements:
        raise _Unknown("reshape changes the element count")
    return [out]


def _squeeze(env: _Env, op: schema.OperatorT) -> list[Shape | None]:
    shape = env.shape(op.inputs[0])
    dims = _opt(op, "squeezeDims", ())
    axes = {_axis(a, len(shape)) for a in dims} if len(dims) else {
        i for i, d in enumerate(shape) if d == 1
    }
    return [tuple(d for i, d in enumerate(shape) if i not in axes)]


def _expand_dims(env: _Env, op: schema.OperatorT) -> list[Shape | None]:
    shape = env.shape(op.inputs[0])
    axis = _axis(_dims(env.value(op.inputs[1]))[0], len(shape) + 1)
    return [(*shape[:axis], 1, *shape[axis:])]


def _reduce(env: _Env, op: schema.OperatorT) -> list[Shape | None]:
    shape = env.shape(op.inputs[0])
    axes = {_axis(a, len(shape)) for a in _dims(env.value(op.inputs[1]))}
    if _opt(op, "keepDims", False):
        return [tuple(1 if i in axes else d for i, d in enumerate(shape))]
    return [tuple(d for i, d in enumerate(shape) if i not in axes)]


def _arg_minmax(env: _Env, op: schema.OperatorT) -> list[Shape | None]:
    shape = env.shape(op.inputs[0])
    axis = _axis(_dims(env.value(op.inputs[1]))[0], len(shape))
    return [tuple(d for i, d in enumerate(shape) if i != axis)]


def _split(env: _Env, op: schema.OperatorT) -> list[Shape | None]:
    shape = env.shape(op.inputs[1])
    axis = _axis(_dims(env.value(op.inputs[0]))[0], len(shape))
    n = len(op.outputs)
    if shape[axis] % n:
        raise _Unknown("split does not divide")
    out = list(shape)
    out[axis] = shape[axis] // n
    return [tuple(out)] * n


def _split_v(env: _Env, op: schema.OperatorT) -> list[Shape | None]:
    shape = env.shape(op.inputs[0])
    sizes = list(_dims(env.value(op.inputs[1])))
    axis = _axis(_dims(env.value(op.inputs[2]))[0], len(shape))
    if -1 in sizes:
        sizes[sizes.index(-1)] = shape[axis] - (sum(sizes) + 1)
    outs = []
    for size in sizes:
        out = list(shape)
        out[axis] = size
        outs.append(tuple(out))
    return outs


def _unpack(env: _Env, op: schema.OperatorT) -> list[Shape | None]:
    shape = env.shape(op.inputs[0])
    axis = _axis(_opt(op, "axis", 0), len(shape))
    return [tuple(d for i, d in enumerate(shape) if i != axis)] * len(op.outputs)


def _pack(env: _Env, op: schema.OperatorT) -> list[Shape | None]:
    shape = env.shape(op.inputs[0])
    axis = _axis(_opt(op, "axis", 0), len(shape) + 1)
    return [(*shape[:axis], len(op.inputs), *shape[axis:])]


def _strided_index(env: _Env, op: schema.OperatorT, rank: int) -> tuple:
    """TFLite's STRIDED_SLICE arguments as a numpy index (numpy clamps the same way)."""
    begin, end = _dims(env.value(op.inputs[1])), _dims(env.value(op.inputs[2]))
    strides = _dims(env.value(op.inputs[3])) if len(op.inputs) > 3 else (1,) * len(begin)
    masks = [int(_opt(op, m, 0)) for m in
             ("beginMask", "endMask", "ellipsisMask", "newAxisMask", "shrinkAxisMask")]
    begin_m, end_m, ellipsis_m, new_axis_m, shrink_m = masks
    offset = bool(_opt(op, "offset", False))
    index: list = []
    for i, (b, e, s) in enumerate(zip(begin, end, strides, strict=True)):
        bit = 1 << i
        if ellipsis_m & bit:
            index.append(Ellipsis)
        elif new_axis_m & bit:
            index.append(np.newaxis)
        elif shrink_m & bit:
            index.append(b)
        else:
            e = b + e if offset else e
            index.append(slice(None if begin_m & bit else b, None if end_m & bit else e, s))
    return tuple(index)


def _strided_slice(env: _Env, op: schema.OperatorT) -> list[Shape | None]:
    shape = env.shape(op.inputs[0])
    return [_view(shape)[_strided_index(env, op, len(shape))].shape]


def _slice_index(env: _Env, op: schema.OperatorT) -> tuple:
    begin, size = _dims(env.value(op.inputs[1])), _dims(env.value(op.inputs[2]))
    return tuple(slice(b, None if s == -1 else b + s) for b, s in zip(begin, size, strict=True))


def _slice(env: _Env, op: schema.OperatorT) -> list[Shape | None]:
    return [_view(env.shape(op.inputs[0]))[_slice_index(env, op)].shape]


def _space_to_batch(env: _Env, op: schema.OperatorT) -> list[Shape | None]:
    shape = env.shape(op.inputs[0])
    block = _dims(env.value(op.inputs[1]))
    pads = env.value(op.inputs[2]).reshape(len(block), 2)
    spatial = []
    for i, b in enumerate(block):
        padded = shape[1 + i] + int(pads[i][0]) + int(pads[i][1])
        if padded % b:
            raise _Unknown("SPACE_TO_BATCH_ND block does not divide")
        spatial.append(padded // b)
    batch = shape[0] * int(np.prod(block, dtype=np.int64))
    return [(batch, *spatial, *shape[1 + len(block):])]


def _batch_to_space(env: _Env, op: schema.OperatorT) -> list[Shape | None]:
    shape = env.shape(op.inputs[0])
    block = _dims(env.value(op.inputs[1]))
    crops = env.value(op.inputs[2]).reshape(len(block), 2)
    prod = int(np.prod(block, dtype=np.int64))
    if shape[0] % prod:
        raise _Unknown("BATCH_TO_SPACE_ND block does not divide the batch")
    spatial = [shape[1 + i] * b - int(crops[i][0]) - int(crops[i][1])
               for i, b in enumerate(block)]
    return [(shape[0] // prod, *spatial, *shape[1 + len(block):])]


def _space_to_depth(env: _Env, op: schema.OperatorT) -> list[Shape | None]:
    n, h, w, c = env.shape(op.inputs[0])
    b = int(_opt(op, "blockSize"))
    return [(n, h // b, w // b, c * b * b)]


def _depth_to_space(env: _Env, op: schema.OperatorT) -> list[Shape | None]:
    n, h, w, c = env.shape(op.inputs[0])
    b = int(_opt(op, "blockSize"))
    return [(n, h * b, w * b, c // (b * b))]


def _transpose(env: _Env, op: schema.OperatorT) -> list[Shape | None]:
    shape = env.shape(op.inputs[0])
    return [tuple(shape[p] for p in _dims(env.value(op.inputs[1])))]


def _shape(env: _Env, op: schema.OperatorT) -> list[Shape | None]:
    return [(len(env.shape(op.inputs[0])),)]


def _resize(env: _Env, op: schema.OperatorT) -> list[Shape | None]:
    n, _, _, c = env.shape(op.inputs[0])
    h, w = _dims(env.value(op.inputs[1]))
    return [(n, h, w, c)]


def _tile(env: _Env, op: schema.OperatorT) -> list[Shape | None]:
    shape = env.shape(op.inputs[0])
    return [tuple(d * m for d, m in zip(shape, _dims(env.value(op.inputs[1])), strict=True))]


def _from_value(index: int) -> Rule:
    """Output shape given by an input's value (BROADCAST_TO, FILL)."""
    return lambda env, op: [_dims(env.value(op.inputs[index]))]


def _gather(env: _Env, op: schema.OperatorT) -> list[Shape | None]:
    params, indices = env.shape(op.inputs[0]), env.shape(op.inputs[1])
    axis = _axis(_opt(op, "axis", 0), len(params))
    batch = int(_opt(op, "batchDims", 0))
    return [(*params[:axis], *indices[batch:], *params[axis + 1:])]


_UNARY = (
    "ABS", "CAST", "CEIL", "COS", "CUMSUM", "DEQUANTIZE", "ELU", "EXP", "FLOOR", "GELU",
    "HARD_SWISH", "L2_NORMALIZATION", "LEAKY_RELU", "LOCAL_RESPONSE_NORMALIZATION", "LOG",
    "LOGICAL_NOT", "LOGISTIC", "LOG_SOFTMAX", "NEG", "ONES_LIKE", "QUANTIZE", "RELU",
    "RELU6", "RELU_0_TO_1", "RELU_N1_TO_1", "REVERSE_V2", "ROUND", "RSQRT", "SIGN", "SIN",
    "SOFTMAX", "SQRT", "SQUARE", "TANH", "ZEROS_LIKE", "ADD_N",
)
_BINARY = (
    "ADD", "DIV", "EQUAL", "FLOOR_DIV", "FLOOR_MOD", "GREATER", "GREATER_EQUAL", "LESS",
    "LESS_EQUAL", "LOGICAL_AND", "LOGICAL_OR", "MAXIMUM", "MINIMUM", "MUL", "NOT_EQUAL",
    "POW", "PRELU", "SQUARED_DIFFERENCE", "SUB", "SELECT_V2",
)

SHAPE_RULES: dict[str, Rule] = {
    **dict.fromkeys(_UNARY, _same_as_first),
    **dict.fromkeys(_BINARY, _broadcast),
    "SELECT": _select_v1,
    "CONV_2D": _conv2d,
    "DEPTHWISE_CONV_2D": _depthwise,
    **dict.fromkeys(("AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D"), _pool),
    "TRANSPOSE_CONV": _transpose_conv,
    "FULLY_CONNECTED": _fully_connected,
    "BATCH_MATMUL": _batch_matmul,
    "CONCATENATION": _concatenation,
    **dict.fromkeys(("PAD", "PADV2", "MIRROR_PAD"), _pad),
    "RESHAPE": _reshape,
    "SQUEEZE": _squeeze,
    "EXPAND_DIMS": _expand_dims,
    **dict.fromkeys(
        ("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "REDUCE_ANY", "REDUCE_ALL"),
        _reduce,
    ),
    "ARG_MAX": _arg_minmax,
    "ARG_MIN": _arg_minmax,
    "SPLIT": _split,
    "SPLIT_V": _split_v,
    "UNPACK": _unpack,
    "PACK": _pack,
    "STRIDED_SLICE": _strided_slice,
    "SLICE": _slice,
    "SPACE_TO_BATCH_ND": _space_to_batch,
    "BATCH_TO_SPACE_ND": _batch_to_space,
    "SPACE_TO_DEPTH": _space_to_depth,
    "DEPTH_TO_SPACE": _depth_to_space,
    "TRANSPOSE": _transpose,
    "SHAPE": _shape,
    "RESIZE_BILINEAR": _resize,
    "RESIZE_NEAREST_NEIGHBOR": _resize,
    "TILE": _tile,
    "BROADCAST_TO": _from_value(1),
    "FILL": _from_value(0),
    "GATHER": _gather,
}


# ---------------------------------------------------------------------------------------------
# Value rules for small integer tensors (shape arithmetic). Output shape already inferred.

ValueRule = Callable[[_Env, schema.OperatorT, list[Shape]], list[np.ndarray]]

_NUMPY_BINARY = {
    "ADD": np.add, "SUB": np.subtract, "MUL": np.multiply, "FLOOR_DIV": np.floor_divide,
    "MAXIMUM": np.maximum, "MINIMUM": np.minimum,
}


def _v_binary(env: _Env, op: schema.OperatorT, outs: list[Shape]) -> list[np.ndarray]:
    fn = _NUMPY_BINARY[opcode_name(env.model, op.opcodeIndex)]
    return [fn(env.value(op.inputs[0]), env.value(op.inputs[1]))]


def _v_reshaped(env: _Env, op: schema.OperatorT, outs: list[Shape]) -> list[np.ndarray]:
    return [env.value(op.inputs[0]).reshape(outs[0])]


def _v_shape(env: _Env, op: schema.OperatorT, outs: list[Shape]) -> list[np.ndarray]:
    return [np.array(env.shape(op.inputs[0]), dtype=np.int64)]


def _v_pack(env: _Env, op: schema.OperatorT, outs: list[Shape]) -> list[np.ndarray]:
    values = [env.value(t) for t in op.inputs]
    return [np.stack(values, axis=_axis(_opt(op, "axis", 0), values[0].ndim + 1))]


def _v_concat(env: _Env, op: schema.OperatorT, outs: list[Shape]) -> list[np.ndarray]:
    values = [env.value(t) for t in op.inputs]
    return [np.concatenate(values, axis=_axis(_opt(op, "axis", 0), values[0].ndim))]


def _v_strided(env: _Env, op: schema.OperatorT, outs: list[Shape]) -> list[np.ndarray]:
    value = env.value(op.inputs[0])
    return [np.asarray(value[_strided_index(env, op, value.ndim)])]


def _v_slice(env: _Env, op: schema.OperatorT, outs: list[Shape]) -> list[np.ndarray]:
    return [np.asarray(env.value(op.inputs[0])[_slice_index(env, op)])]


def _v_gather(env: _Env, op: schema.OperatorT, outs: list[Shape]) -> list[np.ndarray]:
    if int(_opt(op, "batchDims", 0)):
        raise _Unknown("GATHER batch_dims on values")
    params = env.value(op.inputs[0])
    axis = _axis(_opt(op, "axis", 0), params.ndim)
    return [np.take(params, env.value(op.inputs[1]), axis=axis)]


def _v_reduce_prod(env: _Env, op: schema.OperatorT, outs: list[Shape]) -> list[np.ndarray]:
    value = env.value(op.inputs[0])
    axes = tuple(_axis(a, value.ndim) for a in _dims(env.value(op.inputs[1])))
    return [np.prod(value, axis=axes).reshape(outs[0])]


VALUE_RULES: dict[str, ValueRule] = {
    **dict.fromkeys(_NUMPY_BINARY, _v_binary),
    **dict.fromkeys(("CAST", "RESHAPE", "SQUEEZE", "EXPAND_DIMS"), _v_reshaped),
    "SHAPE": _v_shape,
    "PACK": _v_pack,
    "CONCATENATION": _v_concat,
    "STRIDED_SLICE": _v_strided,
    "SLICE": _v_slice,
    "GATHER": _v_gather,
    "REDUCE_PROD": _v_reduce_prod,
}


# ---------------------------------------------------------------------------------------------
# Inference


def _valid(shape: Shape | None) -> bool:
    return shape is not None and all(d >= 0 for d in shape)


def _apply(env: _Env, op: schema.OperatorT, opcode: str) -> None:
    """Infer one operator's output shapes (and values), keeping stored ones it cannot."""
    outs = [t for t in (op.outputs if op.outputs is not None else ())]
    inferred: list[Shape | None] = [None] * len(outs)
    rule = SHAPE_RULES.get(opcode)
    if rule is not None:
        try:
            inferred = list(rule(env, op))
        except (_Unknown, ValueError, IndexError, ZeroDivisionError):
            inferred = [None] * len(outs)
    if len(inferred) != len(outs):
        inferred = [None] * len(outs)
    for t, shape in zip(outs, inferred, strict=True):
        if t >= 0 and _valid(shape):
            env.shapes[t] = tuple(int(d) for d in shape)
    _apply_values(env, op, opcode, outs)


def _apply_values(env: _Env, op: schema.OperatorT, opcode: str, outs: list[int]) -> None:
    rule = VALUE_RULES.get(opcode)
    if rule is None or not all(env.dtype(t) in VALUE_DTYPES for t in outs if t >= 0):
        return
    try:
        values = rule(env, op, [env.shapes[t] for t in outs])
    except (_Unknown, ValueError, IndexError, ZeroDivisionError):
        return
    if len(values) != len(outs):
        return
    for t, value in zip(outs, values, strict=True):
        value = np.asarray(value, dtype=np.int64)
        if t >= 0 and value.size <= MAX_VALUE_ELEMENTS and value.shape == env.shapes[t]:
            env.values[t] = value


def _infer_subgraph(model: schema.ModelT, s: int) -> list[Shape]:
    sg = model.subgraphs[s]
    tensors = sg.tensors or []
    env = _Env(model, sg, [_stored_shape(t) for t in tensors])
    for i, t in enumerate(tensors):
        value = _constant_value(model, t)
        if value is not None:
            env.values[i] = value
    for op in sg.operators or []:
        _apply(env, op, opcode_name(model, op.opcodeIndex))
    return env.shapes


def infer_shapes(model_t: schema.ModelT) -> dict[Key, Shape]:
    """The shape of every tensor whose inferred (true) shape differs from the stored one.

    Keys are (subgraph, tensor); pass the result to ``graph.build_graph(true_shapes=…)`` to
    plan with the sizes the kernels really use, or to ``fix_shapes`` to repair the model.
    """
    result: dict[Key, Shape] = {}
    for s, sg in enumerate(model_t.subgraphs):
        for t, shape in enumerate(_infer_subgraph(model_t, s)):
            if shape != _stored_shape(sg.tensors[t]):
                result[(s, t)] = shape
    return result


def true_shapes(model_t: schema.ModelT) -> dict[Key, Shape]:
    """``infer_shapes``, best effort: a model inference cannot walk keeps its stored shapes.

    Never raises; unknown ops already keep their stored shapes inside ``infer_shapes``, and
    a model it cannot walk at all (a malformed operator) gets ``{}``.
    """
    try:
        return infer_shapes(model_t)
    except Exception:  # inference is best effort: unknown ops keep their stored shapes
        return {}


def true_graph(model_t: schema.ModelT) -> ModelGraph:
    """The operator DAG with the sizes the kernels really use (``build_graph``'s errors)."""
    return build_graph(model_t, true_shapes(model_t))


def fix_shapes(model_t: schema.ModelT, shapes: dict[Key, Shape]) -> int:
    """Write true static shapes into ``TensorT.shape``; returns how many tensors changed.

    ``shape_signature`` is only touched where it would contradict the new shape (another
    rank, or a fixed dimension that differs); its -1 (dynamic) dimensions are kept.
    """
    changed = 0
    for (s, t), shape in shapes.items():
        tensor = model_t.subgraphs[s].tensors[t]
        if _stored_shape(tensor) == tuple(shape):
            continue
        tensor.shape = np.array(shape, dtype=np.int32)
        _fit_signature(tensor, tuple(shape))
        changed += 1
    return changed


def _fit_signature(tensor: schema.TensorT, shape: Shape) -> None:
    sig = tensor.shapeSignature
    if sig is None or len(sig) == 0:
        return
    sig_t = tuple(int(d) for d in sig)
    if len(sig_t) != len(shape):
        tensor.shapeSignature = np.array(shape, dtype=np.int32)
    elif any(d not in (-1, n) for d, n in zip(sig_t, shape, strict=True)):
        new = [-1 if d == -1 else n for d, n in zip(sig_t, shape, strict=True)]
        tensor.shapeSignature = np.array(new, dtype=np.int32)


# ---------------------------------------------------------------------------------------------
# Repair: explicit padding ahead of SPACE_TO_BATCH_ND

# TFLM's SPACE_TO_BATCH_ND kernel has these two types only. PAD without a constant value
# pads float32 with 0 and int8 with its output zero point, in TFLM and LiteRT alike, which is
# exactly LiteRT's S2B padding: LiteRT requires an int8 S2B's input and output zero points to
# be equal, and the padded tensor takes the S2B input's quantization. So PADV2 is never needed.
REPAIRABLE_DTYPES = ("FLOAT32", "INT8")
_PAD_VERSIONS = {"FLOAT32": 1, "INT8": 2}  # LiteRT's registered PAD versions for these types


def repair_padding(model_t: schema.ModelT) -> list[dict]:
    """Move every SPACE_TO_BATCH_ND's padding into an explicit PAD operator ahead of it.

    TFLM's SPACE_TO_BATCH_ND pads with a value its Prepare never writes (see
    ``_padding_hazards``); its PAD pads with the zero point (0 for float) like LiteRT does.
    So each float32/int8 S2B with non-zero constant paddings gets a PAD into a new, statically
    shaped tensor ahead of it, and new all-zero paddings; shared paddings buffers are never
    modified. An S2B with zero paddings never reads TFLM's uninitialized pad value. New
    tensors and buffers are appended, so existing indices stay valid; an offline plan (which
    no longer covers every tensor) is dropped. Run ``fix_shapes(model_t,
    infer_shapes(model_t))`` afterwards as usual.

    Returns one dict per repair: ``subgraph``, ``op`` (the S2B's index in the operator list
    as it was before the call), ``tensor`` (the new padded tensor) and ``bytes`` (its size).
    """
    repairs = []
    for s in range(len(model_t.subgraphs)):
        repairs += _repair_subgraph(model_t, s)
    if repairs:
        fio.remove_offline_plan(model_t)
    return repairs


def repair_model(model_t: schema.ModelT) -> list[dict]:
    """Make the model safe in TFLM before planning: explicit padding for SPACE_TO_BATCH_ND.

    TFLM's SPACE_TO_BATCH_ND pads with a value it never initialises; a PAD in front of it
    pads with the zero point, as LiteRT does. Shapes are repaired later, from inference.
    Returns the report's ``repairs`` entries (``repair_padding``'s, with a ``kind``).
    """
    return [{"kind": "explicit_pad", **r} for r in repair_padding(model_t)]


def _repair_subgraph(model_t: schema.ModelT, s: int) -> list[dict]:
    sg = model_t.subgraphs[s]
    if not any(_s2b_paddings(model_t, sg, op) is not None for op in sg.operators or []):
        return []  # untouched: no inference, no new tensors
    shapes = _infer_subgraph(model_t, s)
    ops: list[schema.OperatorT] = []
    repairs = []
    zeros: dict[Shape, int] = {}  # one all-zero paddings constant per paddings shape
    for i, op in enumerate(sg.operators or []):
        pads = _s2b_paddings(model_t, sg, op)
        x = int(op.inputs[0]) if pads is not None else -1
        if pads is not None and len(pads) < len(shapes[x]) and min(shapes[x]) >= 0:
            pad_op, padded = _explicit_pad(model_t, sg, op, shapes[x], pads)
            if pads.shape not in zeros:
                zeros[pads.shape] = _add_constant(model_t, sg, np.zeros(pads.shape, np.int32),
                                                  schema.TensorType.INT32, "zero_paddings")
            op.inputs = np.array([padded, int(op.inputs[1]), zeros[pads.shape]], np.int32)
            ops.append(pad_op)
            nbytes = tensor_bytes(_stored_shape(sg.tensors[padded]), _dtype(model_t, s, padded))
            repairs.append({"subgraph": s, "op": i, "tensor": padded, "bytes": nbytes})
        ops.append(op)
    sg.operators = ops
    return repairs


def _s2b_paddings(model_t: schema.ModelT, sg: schema.SubGraphT, op) -> np.ndarray | None:
    """The [M, 2] paddings of a SPACE_TO_BATCH_ND that pads and can be repaired, else None."""
    if opcode_name(model_t, op.opcodeIndex) != "SPACE_TO_BATCH_ND" or len(op.inputs) < 3:
        return None
    x, p = int(op.inputs[0]), int(op.inputs[2])
    if x < 0 or p < 0 or TYPE_NAMES.get(sg.tensors[x].type) not in REPAIRABLE_DTYPES:
        return None
    pads = _constant_value(model_t, sg.tensors[p])
    if pads is None or pads.ndim != 2 or pads.shape[1] != 2 or not pads.any() or (pads < 0).any():
        return None
    return pads


def _explicit_pad(
    model_t: schema.ModelT, sg: schema.SubGraphT, s2b: schema.OperatorT, shape: Shape,
    pads: np.ndarray,
) -> tuple[schema.OperatorT, int]:
    """A PAD of the S2B's input by its spatial paddings, and the padded tensor it writes."""
    x = sg.tensors[int(s2b.inputs[0])]
    dtype = TYPE_NAMES[x.type]
    full = np.zeros((len(shape), 2), np.int32)
    full[1:1 + len(pads)] = pads
    padded = _add_tensor(sg, _padded_tensor(x, shape, full))
    paddings = _add_constant(model_t, sg, full, schema.TensorType.INT32, "explicit_paddings")
    op = schema.OperatorT()
    op.opcodeIndex = _opcode_index(model_t, "PAD", _PAD_VERSIONS[dtype])
    op.inputs = np.array([int(s2b.inputs[0]), paddings], np.int32)
    op.outputs = np.array([padded], np.int32)
    op.builtinOptionsType = schema.BuiltinOptions.PadOptions
    op.builtinOptions = schema.PadOptionsT()
    return op, padded


def _padded_tensor(x: schema.TensorT, shape: Shape, full: np.ndarray) -> schema.TensorT:
    """Same type and quantization as ``x``, its true shape grown by ``full`` paddings."""
    t = schema.TensorT()
    t.type, t.buffer = x.type, 0
    t.shape = np.array([d + int(a) + int(b) for d, (a, b) in zip(shape, full, strict=True)],
                       np.int32)
    sig = x.shapeSignature
    if sig is not None and len(sig) == len(shape):
        t.shapeSignature = np.array(
            [-1 if d == -1 else n for d, n in zip(sig, t.shape, strict=True)], np.int32)
    t.quantization = _copy_quantization(x.quantization)
    t.name = f"{_name(x)}/explicit_pad"
    return t


def _copy_quantization(q):
    if q is None:
        return None
    out = schema.QuantizationParametersT()
    for name, value in vars(q).items():
        setattr(out, name, np.copy(value) if isinstance(value, np.ndarray) else value)
    return out


def _name(t: schema.TensorT) -> str:
    name = t.name
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name or "")


def _add_tensor(sg: schema.SubGraphT, t: schema.TensorT) -> int:
    sg.tensors = list(sg.tensors or [])
    sg.tensors.append(t)
    return len(sg.tensors) - 1


def _add_constant(
    model_t: schema.ModelT, sg: schema.SubGraphT, value: np.ndarray, dtype: int, name: str
) -> int:
    """A new constant tensor with its own new buffer (little-endian data)."""
    value = np.asarray(value)
    buf = schema.BufferT()
    buf.data = np.ascontiguousarray(value, value.dtype.newbyteorder("<")).reshape(-1).view(
        np.uint8).copy()
    model_t.buffers = list(model_t.buffers or [])
    model_t.buffers.append(buf)
    t = schema.TensorT()
    t.shape, t.type, t.buffer = np.array(value.shape, np.int32), dtype, len(model_t.buffers) - 1
    t.name = name
    return _add_tensor(sg, t)


def _opcode_index(model_t: schema.ModelT, opcode: str, version: int) -> int:
    """The operator code of a builtin, appended when the model has none yet."""
    model_t.operatorCodes = list(model_t.operatorCodes or [])
    for i in range(len(model_t.operatorCodes)):
        if opcode_name(model_t, i) == opcode:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = getattr(schema.BuiltinOperator, opcode)
    code.deprecatedBuiltinCode = min(code.builtinCode, 127)  # 127: placeholder for larger
    code.version = version
    model_t.operatorCodes.append(code)
    return len(model_t.operatorCodes) - 1


# ---------------------------------------------------------------------------------------------
# Hazards


@dataclass(frozen=True)
class Hazard:
    """One statically detectable way TFLM's arena could be read or written wrongly.

    ``kind`` is one of ``KINDS``. ``stored``/``true`` are the tensor's stored and true
    shapes (equal when the hazard is not about shapes); ``bytes_missing`` is true − stored
    bytes for shape hazards (≤ 0 when over-sized), the overlapping bytes for plan overlaps
    and 0 otherwise. Model-level hazards (``plan_count``) have subgraph = tensor = -1.
    """

    subgraph: int
    tensor: int
    name: str
    op_index: int  # the producing operator (or the operator concerned); -1 if none
    opcode: str
    stored: Shape
    true: Shape
    bytes_missing: int
    kind: str
    detail: str = ""

    def to_report(self) -> dict:
        """The entry of ``Report.shape_fixes`` for this hazard."""
        return {"kind": self.kind, "subgraph": self.subgraph, "tensor": self.tensor,
                "name": self.name, "op": self.op_index, "opcode": self.opcode,
                "stored": list(self.stored), "true": list(self.true),
                "bytes_missing": self.bytes_missing}


KINDS = {
    "shape": "stored shape differs from the shape the kernels produce",
    "dynamic_dim": "stored shape of an arena tensor has a negative (dynamic) dimension",
    "unproduced": "operator reads a tensor that no operator produces and is no input",
    "read_before_write": "operator reads a tensor produced by a later operator (stored order)",
    "uninitialized_padding": "TFLM's SPACE_TO_BATCH_ND pads with an uninitialized value",
    "plan_count": "offline plan offset count differs from the tensor count",
    "plan_alignment": "offline plan offset is not a multiple of 16",
    "plan_overlap": "offline plan overlaps two tensors that are live at the same time",
}


def find_hazards(model_t: schema.ModelT) -> list[Hazard]:
    """Every static TFLM memory hazard of the model, grouped by kind (order of ``KINDS``)."""
    true = infer_shapes(model_t)
    return [
        *_shape_hazards(model_t, true),
        *_dynamic_hazards(model_t, true),
        *_dataflow_hazards(model_t),
        *_padding_hazards(model_t),
        *_plan_hazards(model_t, true),
    ]


def _producers(model_t: schema.ModelT, s: int) -> dict[int, tuple[int, str]]:
    out: dict[int, tuple[int, str]] = {}
    for i, op in enumerate(model_t.subgraphs[s].operators or []):
        for t in op.outputs if op.outputs is not None else ():
            out.setdefault(int(t), (i, opcode_name(model_t, op.opcodeIndex)))
    return out


def _hazard(
    model_t: schema.ModelT, s: int, t: int, kind: str, where: tuple[int, str],
    true: Shape | None = None, missing: int = 0, detail: str = "",
) -> Hazard:
    tensor = model_t.subgraphs[s].tensors[t]
    stored = _stored_shape(tensor)
    name = tensor.name
    name = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name or "")
    return Hazard(s, t, name, where[0], where[1], stored, true if true is not None else stored,
                  missing, kind, detail)


def _dtype(model_t: schema.ModelT, s: int, t: int) -> str:
    return TYPE_NAMES.get(model_t.subgraphs[s].tensors[t].type, "")


def _shape_hazards(model_t: schema.ModelT, true: dict[Key, Shape]) -> list[Hazard]:
    producers = [_producers(model_t, s) for s in range(len(model_t.subgraphs))]
    out = []
    for (s, t), shape in sorted(true.items()):
        stored = _stored_shape(model_t.subgraphs[s].tensors[t])
        dtype = _dtype(model_t, s, t)
        missing = tensor_bytes(shape, dtype) - tensor_bytes(stored, dtype)
        where = producers[s].get(t, (-1, ""))
        out.append(_hazard(model_t, s, t, "shape", where, shape, missing))
    return out


def _dynamic_hazards(model_t: schema.ModelT, true: dict[Key, Shape]) -> list[Hazard]:
    """Arena tensors stored with a -1 dimension that inference could not make static."""
    out = []
    for s, sg in enumerate(model_t.subgraphs):
        producers = _producers(model_t, s)
        for t, tensor in enumerate(sg.tensors or []):
            dynamic = any(d < 0 for d in _stored_shape(tensor))
            if dynamic and (s, t) not in true and not _is_static(model_t, s, t):
                out.append(_hazard(model_t, s, t, "dynamic_dim", producers.get(t, (-1, ""))))
    return out


def _is_static(model_t: schema.ModelT, s: int, t: int) -> bool:
    """Constant or variable: TFLM does not plan it in the arena."""
    tensor = model_t.subgraphs[s].tensors[t]
    buffers = model_t.buffers or []
    if tensor.isVariable:
        return True
    if not 0 < tensor.buffer < len(buffers):
        return False
    buf = buffers[tensor.buffer]
    return (buf.data is not None and len(buf.data) > 0) or buf.offset > 1


def _dataflow_hazards(model_t: schema.ModelT) -> list[Hazard]:
    out = []
    for s, sg in enumerate(model_t.subgraphs):
        producers = _producers(model_t, s)
        inputs = {int(t) for t in (sg.inputs if sg.inputs is not None else ())}
        for i, op in enumerate(sg.operators or []):
            where = (i, opcode_name(model_t, op.opcodeIndex))
            for t in dict.fromkeys(int(t) for t in (op.inputs if op.inputs is not None else ())):
                if t < 0 or t in inputs or _is_static(model_t, s, t):
                    continue
                if t not in producers:
                    out.append(_hazard(model_t, s, t, "unproduced", where))
                elif producers[t][0] >= i:
                    detail = f"produced by operator {producers[t][0]} ({producers[t][1]})"
                    out.append(_hazard(model_t, s, t, "read_before_write", where, detail=detail))
    return out


def _padding_hazards(model_t: schema.ModelT) -> list[Hazard]:
    """SPACE_TO_BATCH_ND operators that pad (nonzero or unknown paddings).

    TFLM's kernel pads with ``SpaceToBatchParams.output_offset``, a persistent buffer that its
    Prepare never writes; ``memset`` takes its low byte. LiteRT pads with the output zero
    point. Seen here: TFLM padded with 0, -16 or -63 (varying between processes) where
    LiteRT used -128, so a dilated int8 model's border outputs are wrong and vary between runs.
    An S2B whose constant paddings are all zero writes no padding, so it is no hazard: that is
    what ``repair_padding`` leaves behind (the padding moves into a PAD ahead of it).
    """
    out = []
    for s, sg in enumerate(model_t.subgraphs):
        for i, op in enumerate(sg.operators or []):
            if opcode_name(model_t, op.opcodeIndex) != "SPACE_TO_BATCH_ND" or len(op.inputs) < 3:
                continue
            pads = _constant_value(model_t, sg.tensors[op.inputs[2]]) if op.inputs[2] >= 0 else None
            if pads is None or pads.any():
                detail = "paddings " + ("unknown" if pads is None else str(pads.tolist()))
                out.append(_hazard(model_t, s, int(op.outputs[0]), "uninitialized_padding",
                                   (i, "SPACE_TO_BATCH_ND"), detail=detail))
    return out


def _plan_hazards(model_t: schema.ModelT, true: dict[Key, Shape]) -> list[Hazard]:
    plan = fio.get_offline_plan(model_t)
    if plan is None:
        return []
    n = sum(len(sg.tensors or []) for sg in model_t.subgraphs)
    if len(plan) != n:
        detail = f"{len(plan)} offsets for {n} tensors: TFLM refuses the model"
        return [Hazard(-1, -1, "", -1, "", (), (), 0, "plan_count", detail)]
    graph = build_graph(model_t, true)
    keys = [(s, t) for s, sg in enumerate(graph.subgraphs) for t in range(len(sg.tensors))]
    offsets = dict(zip(keys, plan, strict=True))
    out = []
    for (s, t), off in offsets.items():
        if off >= 0 and off % ARENA_ALIGNMENT and graph.subgraphs[s].tensors[t].in_arena:
            out.append(_hazard(model_t, s, t, "plan_alignment", (-1, ""),
                               detail=f"offset {off}"))
    return out + _overlap_hazards(model_t, graph, offsets)


def _overlap_hazards(model_t, graph, offsets: dict[Key, int]) -> list[Hazard]:
    """Pairs of planned tensors live together whose byte ranges (true sizes) intersect.

    An output placed exactly on (same offset) an input of the same size that dies at an
    in-place-safe operator (``memory.INPLACE_OPS``) is deliberate aliasing, not a hazard; at
    any other intersecting offset the kernel's writes could run ahead of its reads.
    """
    use = simulate(graph, graph.stored_orders(), inplace=False)
    live = [(b.tensors[0], b) for b in use.buffers if b.first >= 0 and offsets[b.tensors[0]] >= 0]
    live.sort(key=lambda kb: offsets[kb[0]])
    inplace = _inplace_pairs(graph, use)
    out = []
    for i, (ka, a) in enumerate(live):
        end_a = offsets[ka] + a.size
        for kb, b in live[i + 1:]:
            if offsets[kb] >= end_a:
                break
            aliased = frozenset((ka, kb)) in inplace and offsets[ka] == offsets[kb]
            if not a.overlaps(b) or aliased:
                continue
            overlap = min(end_a, offsets[kb] + b.size) - offsets[kb]
            detail = f"overlaps tensor {kb[1]} of subgraph {kb[0]} by {overlap} bytes"
            out.append(_hazard(model_t, ka[0], ka[1], "plan_overlap", (-1, ""),
                               missing=overlap, detail=detail))
    return out


def _inplace_pairs(graph, use) -> set[frozenset[Key]]:
    """(input, output) pairs of in-place-safe ops where the input dies at the op."""
    last = {b.tensors[0]: b.last for b in use.buffers}
    pairs = set()
    for s, sg in enumerate(graph.subgraphs):
        for op in sg.ops:
            if op.opcode not in INPLACE_OPS or (s, op.index) not in use.op_scope:
                continue
            scope = use.op_scope[(s, op.index)]
            for o in op.outputs:
                for i in op.inputs:
                    same = sg.tensors[i].nbytes == sg.tensors[o].nbytes
                    if same and last.get((s, i)) == scope and i not in sg.outputs:
                        pairs.add(frozenset(((s, i), (s, o))))
    return pairs


def describe(hazards: Sequence[Hazard]) -> list[str]:
    """One line per hazard, for reports and the CLI."""
    lines = []
    for h in hazards:
        what = KINDS.get(h.kind, h.kind)
        where = f"subgraph {h.subgraph} tensor {h.tensor} ({h.name})" if h.tensor >= 0 else "model"
        op = f", operator {h.op_index} {h.opcode}" if h.op_index >= 0 else ""
        shapes = ""
        if h.kind == "shape":
            shapes = f": stored {list(h.stored)}, true {list(h.true)}, {h.bytes_missing:+d} bytes"
        extra = f" ({h.detail})" if h.detail else ""
        lines.append(f"{h.kind}: {where}{op}{shapes}{extra} — {what}")
    return lines
