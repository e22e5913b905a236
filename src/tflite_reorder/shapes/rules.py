"""Shape rules: the output shapes each builtin's kernel computes from its inputs.

A rule takes the inference state of one subgraph (``Env``: shapes, and the values of small
integer tensors) and an operator, and returns one shape per output; ``None`` keeps a stored
shape. A rule that lacks what it needs raises ``Unknown`` and the stored shapes stay.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from ..dtypes import type_name

Shape = tuple[int, ...]
Key = tuple[int, int]  # (subgraph, tensor)

class Unknown(Exception):
    """A rule lacks something it needs (a value, an option); the stored shape is kept."""


# ---------------------------------------------------------------------------------------------
# Per-subgraph inference state


@dataclass
class Env:
    """Shapes and known values of one subgraph's tensors while walking its operators."""

    model: schema.ModelT
    sg: schema.SubGraphT
    shapes: list[Shape]
    values: dict[int, np.ndarray] = field(default_factory=dict)
    # inferred shapes of the subgraphs finished so far, for IF branches
    branches: Mapping[int, list[Shape]] = field(default_factory=dict)
    # constants whose value is read when a rule first asks for it: tensor -> its reader
    # (None from the reader: not a small integer tensor); most are never asked for
    constants: dict[int, Callable[[], np.ndarray | None]] = field(default_factory=dict)

    def shape(self, t: int) -> Shape:
        if t < 0:
            raise Unknown("optional input")
        return self.shapes[t]

    def value(self, t: int) -> np.ndarray:
        if t not in self.values:
            read = self.constants.pop(t, None)
            value = read() if read is not None else None
            if value is None:
                raise Unknown(f"value of tensor {t}")
            self.values[t] = value
        return self.values[t]

    def dtype(self, t: int) -> str:
        return type_name(self.sg.tensors[t].type)


def option(op: schema.OperatorT, name: str, default=None):
    """An option of the operator; converters omit option tables that hold only defaults.

    ``fastread`` operators read the one field (``LiteOperator.option``)."""
    read = getattr(op, "option", None)
    value = read(name) if read is not None else getattr(op.builtinOptions, name, None)
    if value is not None:
        return value
    if default is None:
        raise Unknown(f"option {name}")
    return default


def prod64(dims) -> int:
    """``int(np.prod(dims, dtype=np.int64))`` of Python ints, without numpy's per-call cost:
    the product modulo 2**64 read as a signed 64-bit integer (numpy's wraparound)."""
    p = math.prod(dims) & 0xFFFFFFFFFFFFFFFF
    return p - (1 << 64) if p >> 63 else p


def axis_index(axis: int, rank: int) -> int:
    axis = int(axis)
    if not -rank <= axis < max(rank, 1):
        raise Unknown(f"axis {axis} for rank {rank}")
    return axis + rank if axis < 0 else axis


def as_dims(values: np.ndarray) -> Shape:
    """The values of an integer tensor (or anything numpy reads as one) as a flat shape."""
    return tuple(map(int, np.asarray(values).reshape(-1).tolist()))


def _view(shape: Shape) -> np.ndarray:
    """A zero-memory array of ``shape``: numpy's own indexing then gives slice shapes."""
    return np.broadcast_to(np.zeros((), dtype=np.int8), shape)


# ---------------------------------------------------------------------------------------------
# Shape rules: (env, op) -> one shape per output. ``None`` in the list keeps a stored shape.

Rule = Callable[[Env, schema.OperatorT], list[Shape | None]]


def _same_as_first(env: Env, op: schema.OperatorT) -> list[Shape | None]:
    return [env.shape(op.inputs[0])] * len(op.outputs)


def broadcast(*shapes: Shape) -> Shape:
    """``np.broadcast_shapes`` of shapes of ints (the same result, the same ``ValueError``
    for shapes that do not broadcast), without numpy's per-call cost: binary ops are the
    commonest operators shape inference walks."""
    first = shapes[0] if shapes else ()
    if all(s == first for s in shapes) and min(first, default=0) >= 0:
        return tuple(int(d) for d in first)
    rank = max(len(s) for s in shapes)
    out = [1] * rank
    for s in shapes:
        for i, d in enumerate(s, rank - len(s)):
            d = int(d)
            if d < 0:
                raise ValueError("negative dimensions are not allowed")
            if d != out[i]:
                if out[i] != 1 and d != 1:
                    raise ValueError(f"shapes {shapes} do not broadcast")
                if d != 1:
                    out[i] = d
    return tuple(out)


def _broadcast(env: Env, op: schema.OperatorT) -> list[Shape | None]:
    return [broadcast(*(env.shape(t) for t in op.inputs if t >= 0))]


def _select_v1(env: Env, op: schema.OperatorT) -> list[Shape | None]:
    return [env.shape(op.inputs[1])]


def _out_size(size: int, kernel: int, stride: int, dilation: int, padding: int) -> int:
    """TFLite's ComputeOutSize: SAME keeps ceil(size/stride), VALID drops the border."""
    effective = (kernel - 1) * dilation + 1
    if padding == schema.Padding.SAME:
        return (size + stride - 1) // stride
    return (size + stride - effective) // stride


def _conv_like(env: Env, op: schema.OperatorT, kh: int, kw: int, channels: int) -> Shape:
    n, h, w, _ = env.shape(op.inputs[0])
    padding = option(op, "padding", schema.Padding.SAME)
    sh, sw = option(op, "strideH", 1), option(op, "strideW", 1)
    dh, dw = option(op, "dilationHFactor", 1), option(op, "dilationWFactor", 1)
    return (n, _out_size(h, kh, sh, dh, padding), _out_size(w, kw, sw, dw, padding), channels)


def _conv2d(env: Env, op: schema.OperatorT) -> list[Shape | None]:
    out_c, kh, kw, _ = env.shape(op.inputs[1])  # filter OHWI
    return [_conv_like(env, op, kh, kw, out_c)]


def _depthwise(env: Env, op: schema.OperatorT) -> list[Shape | None]:
    _, kh, kw, out_c = env.shape(op.inputs[1])  # filter 1HW(C*M)
    return [_conv_like(env, op, kh, kw, out_c)]


def _pool(env: Env, op: schema.OperatorT) -> list[Shape | None]:
    _, _, _, c = env.shape(op.inputs[0])
    return [_conv_like(env, op, option(op, "filterHeight"), option(op, "filterWidth"), c)]


def _transpose_conv(env: Env, op: schema.OperatorT) -> list[Shape | None]:
    return [as_dims(env.value(op.inputs[0]))]


def _fully_connected(env: Env, op: schema.OperatorT) -> list[Shape | None]:
    shape = env.shape(op.inputs[0])
    units, depth = env.shape(op.inputs[1])[:2]
    if option(op, "keepNumDims", False):
        return [(*shape[:-1], units)]
    return [(prod64(shape) // depth, units)]


def _svdf(env: Env, op: schema.OperatorT) -> list[Shape | None]:
    """[batch, filters / rank]: the shape TFLM's and LiteRT's kernels insist on."""
    filters = env.shape(op.inputs[1])[0]
    return [(env.shape(op.inputs[0])[0], filters // option(op, "rank"))]


def _batch_matmul(env: Env, op: schema.OperatorT) -> list[Shape | None]:
    a, b = env.shape(op.inputs[0]), env.shape(op.inputs[1])
    rows = a[-1] if option(op, "adjX", False) else a[-2]
    cols = b[-2] if option(op, "adjY", False) else b[-1]
    batch = broadcast(a[:-2], b[:-2])
    return [(*batch, rows, cols)]


def _concatenation(env: Env, op: schema.OperatorT) -> list[Shape | None]:
    shapes = [env.shape(t) for t in op.inputs]
    axis = axis_index(option(op, "axis", 0), len(shapes[0]))
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    return [tuple(out)]


def _pad(env: Env, op: schema.OperatorT) -> list[Shape | None]:
    shape = env.shape(op.inputs[0])
    pads = env.value(op.inputs[1]).reshape(len(shape), 2)
    return [tuple(d + int(p[0]) + int(p[1]) for d, p in zip(shape, pads, strict=True))]


def _resolve_reshape(new: Shape, elements: int) -> Shape:
    if new.count(-1) > 1:
        raise Unknown("reshape with several -1")
    if -1 in new:
        known = prod64([d for d in new if d != -1])
        if known == 0 or elements % known:
            raise Unknown("reshape does not divide")
        new = tuple(elements // known if d == -1 else d for d in new)
    return new


def _reshape(env: Env, op: schema.OperatorT) -> list[Shape | None]:
    elements = prod64(env.shape(op.inputs[0]))
    if len(op.inputs) > 1 and op.inputs[1] >= 0:
        new = as_dims(env.value(op.inputs[1]))
    else:
        new = as_dims(option(op, "newShape"))
    out = _resolve_reshape(new, elements)
    if prod64(out) != elements:
        raise Unknown("reshape changes the element count")
    return [out]


def _squeeze(env: Env, op: schema.OperatorT) -> list[Shape | None]:
    shape = env.shape(op.inputs[0])
    dims = option(op, "squeezeDims", ())
    axes = {axis_index(a, len(shape)) for a in dims} if len(dims) else {
        i for i, d in enumerate(shape) if d == 1
    }
    return [tuple(d for i, d in enumerate(shape) if i not in axes)]


def _expand_dims(env: Env, op: schema.OperatorT) -> list[Shape | None]:
    shape = env.shape(op.inputs[0])
    axis = axis_index(as_dims(env.value(op.inputs[1]))[0], len(shape) + 1)
    return [(*shape[:axis], 1, *shape[axis:])]


def _reduce(env: Env, op: schema.OperatorT) -> list[Shape | None]:
    shape = env.shape(op.inputs[0])
    axes = {axis_index(a, len(shape)) for a in as_dims(env.value(op.inputs[1]))}
    if option(op, "keepDims", False):
        return [tuple(1 if i in axes else d for i, d in enumerate(shape))]
    return [tuple(d for i, d in enumerate(shape) if i not in axes)]


def _arg_minmax(env: Env, op: schema.OperatorT) -> list[Shape | None]:
    shape = env.shape(op.inputs[0])
    axis = axis_index(as_dims(env.value(op.inputs[1]))[0], len(shape))
    return [tuple(d for i, d in enumerate(shape) if i != axis)]


def _split(env: Env, op: schema.OperatorT) -> list[Shape | None]:
    shape = env.shape(op.inputs[1])
    axis = axis_index(as_dims(env.value(op.inputs[0]))[0], len(shape))
    n = len(op.outputs)
    if shape[axis] % n:
        raise Unknown("split does not divide")
    out = list(shape)
    out[axis] = shape[axis] // n
    return [tuple(out)] * n


def _split_v(env: Env, op: schema.OperatorT) -> list[Shape | None]:
    shape = env.shape(op.inputs[0])
    sizes = list(as_dims(env.value(op.inputs[1])))
    axis = axis_index(as_dims(env.value(op.inputs[2]))[0], len(shape))
    if -1 in sizes:
        sizes[sizes.index(-1)] = shape[axis] - (sum(sizes) + 1)
    outs = []
    for size in sizes:
        out = list(shape)
        out[axis] = size
        outs.append(tuple(out))
    return outs


def _unpack(env: Env, op: schema.OperatorT) -> list[Shape | None]:
    shape = env.shape(op.inputs[0])
    axis = axis_index(option(op, "axis", 0), len(shape))
    return [tuple(d for i, d in enumerate(shape) if i != axis)] * len(op.outputs)


def _pack(env: Env, op: schema.OperatorT) -> list[Shape | None]:
    shape = env.shape(op.inputs[0])
    axis = axis_index(option(op, "axis", 0), len(shape) + 1)
    return [(*shape[:axis], len(op.inputs), *shape[axis:])]


def strided_index(env: Env, op: schema.OperatorT, rank: int) -> tuple:
    """TFLite's STRIDED_SLICE arguments as a numpy index (numpy clamps the same way)."""
    begin, end = as_dims(env.value(op.inputs[1])), as_dims(env.value(op.inputs[2]))
    strides = as_dims(env.value(op.inputs[3])) if len(op.inputs) > 3 else (1,) * len(begin)
    masks = [int(option(op, m, 0)) for m in
             ("beginMask", "endMask", "ellipsisMask", "newAxisMask", "shrinkAxisMask")]
    begin_m, end_m, ellipsis_m, new_axis_m, shrink_m = masks
    offset = bool(option(op, "offset", False))
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


def _strided_slice(env: Env, op: schema.OperatorT) -> list[Shape | None]:
    shape = env.shape(op.inputs[0])
    return [_view(shape)[strided_index(env, op, len(shape))].shape]


def slice_index(env: Env, op: schema.OperatorT) -> tuple:
    begin, size = as_dims(env.value(op.inputs[1])), as_dims(env.value(op.inputs[2]))
    return tuple(slice(b, None if s == -1 else b + s) for b, s in zip(begin, size, strict=True))


def _slice(env: Env, op: schema.OperatorT) -> list[Shape | None]:
    return [_view(env.shape(op.inputs[0]))[slice_index(env, op)].shape]


def _space_to_batch(env: Env, op: schema.OperatorT) -> list[Shape | None]:
    shape = env.shape(op.inputs[0])
    block = as_dims(env.value(op.inputs[1]))
    pads = env.value(op.inputs[2]).reshape(len(block), 2).tolist()
    spatial = []
    for i, b in enumerate(block):
        padded = shape[1 + i] + pads[i][0] + pads[i][1]
        if padded % b:
            raise Unknown("SPACE_TO_BATCH_ND block does not divide")
        spatial.append(padded // b)
    batch = shape[0] * prod64(block)
    return [(batch, *spatial, *shape[1 + len(block):])]


def _batch_to_space(env: Env, op: schema.OperatorT) -> list[Shape | None]:
    shape = env.shape(op.inputs[0])
    block = as_dims(env.value(op.inputs[1]))
    crops = env.value(op.inputs[2]).reshape(len(block), 2).tolist()
    prod = prod64(block)
    if shape[0] % prod:
        raise Unknown("BATCH_TO_SPACE_ND block does not divide the batch")
    spatial = [shape[1 + i] * b - crops[i][0] - crops[i][1]
               for i, b in enumerate(block)]
    return [(shape[0] // prod, *spatial, *shape[1 + len(block):])]


def _space_to_depth(env: Env, op: schema.OperatorT) -> list[Shape | None]:
    n, h, w, c = env.shape(op.inputs[0])
    b = int(option(op, "blockSize"))
    return [(n, h // b, w // b, c * b * b)]


def _depth_to_space(env: Env, op: schema.OperatorT) -> list[Shape | None]:
    n, h, w, c = env.shape(op.inputs[0])
    b = int(option(op, "blockSize"))
    return [(n, h * b, w * b, c // (b * b))]


def _transpose(env: Env, op: schema.OperatorT) -> list[Shape | None]:
    shape = env.shape(op.inputs[0])
    return [tuple(shape[p] for p in as_dims(env.value(op.inputs[1])))]


def _shape(env: Env, op: schema.OperatorT) -> list[Shape | None]:
    return [(len(env.shape(op.inputs[0])),)]


def _resize(env: Env, op: schema.OperatorT) -> list[Shape | None]:
    n, _, _, c = env.shape(op.inputs[0])
    h, w = as_dims(env.value(op.inputs[1]))
    return [(n, h, w, c)]


def _tile(env: Env, op: schema.OperatorT) -> list[Shape | None]:
    shape = env.shape(op.inputs[0])
    return [tuple(d * m for d, m in zip(shape, as_dims(env.value(op.inputs[1])), strict=True))]


def _from_value(index: int) -> Rule:
    """Output shape given by an input's value (BROADCAST_TO, FILL)."""
    return lambda env, op: [as_dims(env.value(op.inputs[index]))]


def _gather(env: Env, op: schema.OperatorT) -> list[Shape | None]:
    params, indices = env.shape(op.inputs[0]), env.shape(op.inputs[1])
    axis = axis_index(option(op, "axis", 0), len(params))
    batch = int(option(op, "batchDims", 0))
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
    "SVDF": _svdf,
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
    "WHILE": lambda env, op: [env.shape(t) for t in op.inputs],  # outputs = loop variables
}
