"""What each TFLite operator does along H and W: whether a tile of its output can be computed
from a window of its inputs, and from which window.

Three kinds tile exactly: sliding windows (CONV_2D, DEPTHWISE_CONV_2D, MAX_POOL_2D, and
AVERAGE_POOL_2D where it never pads), explicit PAD/PADV2 of H and W, and pointwise ops
(elementwise arithmetic, activations, requantisation, channel concatenation) whose other
inputs are constants broadcast over H and W. Everything else — global pooling (MEAN), fully
connected layers, reshapes, softmax over space, an AVERAGE_POOL_2D whose SAME padding
shrinks its divisor at the border — ends a region: ``describe`` raises ``NotTileable``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ai_edge_litert import schema_py_generated as schema

from ..rewrites.edit import Editor
from ..tensors import is_constant as is_constant_buffer
from .window import AxisGeometry, same_pad, same_total_pad

POINTWISE = frozenset({
    "ADD", "SUB", "MUL", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "RELU", "RELU6",
    "RELU_N1_TO_1", "RELU_0_TO_1", "LOGISTIC", "TANH", "HARD_SWISH", "LEAKY_RELU", "PRELU",
    "ABS", "NEG", "QUANTIZE", "DEQUANTIZE", "ELU", "SQUARE", "SQRT", "RSQRT", "EXP",
    "CONCATENATION",
})
WINDOWS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D"})
PADS = frozenset({"PAD", "PADV2"})
DTYPES = frozenset({"INT8", "FLOAT32"})
IDENTITY = AxisGeometry(1, 1, 1, 0)


class NotTileable(Exception):
    """The operator cannot be computed tile by tile; the message says why."""


@dataclass(frozen=True)
class SpatialOp:
    """An operator's spatial behaviour.

    ``kind`` is "window", "pad" or "pointwise"; ``axes`` the geometry along H and W;
    ``spatial`` the positions of the inputs that are feature maps of the region (the rest
    are constants); ``pad_with`` what a tile pads a window op's input with: the input's zero
    point ("zero") for convolutions, the type's minimum ("min") for max pooling.
    """

    kind: str
    axes: tuple[AxisGeometry, AxisGeometry]
    spatial: tuple[int, ...]
    pad_with: str = "zero"


def is_constant(ed: Editor, t: int) -> bool:
    """A tensor with data in the model (weights, biases, paddings), or an absent input."""
    return t < 0 or is_constant_buffer(ed.model, ed.t(t).buffer)


def _feature_map(ed: Editor, t: int) -> tuple[int, int, int, int]:
    if ed.t(t).isVariable:  # not in the arena, and its value outlives the run
        raise NotTileable(f"tensor {ed.name(t)!r} is a variable tensor")
    sh = ed.shape(t)
    if len(sh) != 4 or sh[0] != 1:
        raise NotTileable(f"tensor {ed.name(t)!r} is not a batch-1 NHWC feature map")
    if min(sh) <= 0:  # a stored -1 (fuzz seed 6001 case 35901 crashed the emitter on one)
        raise NotTileable(f"tensor {ed.name(t)!r} has a stored dimension of {min(sh)}")
    if ed.dtype(t) not in DTYPES:
        raise NotTileable(f"tensor {ed.name(t)!r} is {ed.dtype(t)}, not int8/float32")
    return sh  # type: ignore[return-value]


def describe(ed: Editor, op: schema.OperatorT) -> SpatialOp:
    """The spatial behaviour of ``op``; raises ``NotTileable`` for ops that end a region."""
    code = ed.opcode(op)
    if code not in WINDOWS | PADS | POINTWISE:
        raise NotTileable(f"{code} has global reach or is not supported in a tile")
    ins, outs = ed.inputs(op), ed.outputs(op)
    if len(outs) != 1:
        raise NotTileable(f"{code} has {len(outs)} outputs")
    out = _feature_map(ed, outs[0])
    if code in WINDOWS:
        return _window(ed, op, code, ins, out)
    if code in PADS:
        return _pad(ed, ins, outs[0], code)
    return _pointwise(ed, op, code, ins, out)


def _window(ed: Editor, op, code: str, ins: list[int], out) -> SpatialOp:
    x = _feature_map(ed, ins[0])
    if not all(is_constant(ed, t) for t in ins[1:]):
        raise NotTileable(f"{code} has non-constant weights")
    o = ed.options(op, NotTileable)
    if code in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        w = ed.shape(ins[1]) if len(ins) > 1 and ins[1] >= 0 else ()
        if len(w) != 4:
            raise NotTileable(f"{code} weights are not 4-D")
        kernel = (w[1], w[2])
        dilation = (o.dilationHFactor or 1, o.dilationWFactor or 1)
    else:
        kernel, dilation = (o.filterHeight, o.filterWidth), (1, 1)
    stride = (o.strideH or 1, o.strideW or 1)
    if min(*kernel, *stride, *dilation) < 1:
        raise NotTileable(f"{code} has a kernel, stride or dilation below 1")
    same = o.padding == schema.Padding.SAME
    axes = []
    for a in range(2):
        size = x[1 + a]
        if same and code == "AVERAGE_POOL_2D" and same_total_pad(
                size, kernel[a], stride[a], dilation[a]):
            raise NotTileable("AVERAGE_POOL_2D with SAME padding divides by fewer taps at "
                              "the border")
        pad = same_pad(size, kernel[a], stride[a], dilation[a]) if same else 0
        axes.append(AxisGeometry(kernel[a], stride[a], dilation[a], pad))
    return SpatialOp("window", (axes[0], axes[1]), (0,),
                     "min" if code == "MAX_POOL_2D" else "zero")


def _pad(ed: Editor, ins: list[int], out: int, code: str) -> SpatialOp:
    _feature_map(ed, ins[0])
    pads = ed.constant(ins[1]) if len(ins) > 1 else None
    if pads is None or pads.shape != (4, 2) or pads[0].any() or pads[3].any():
        raise NotTileable(f"{code} is not a constant padding of H and W")
    if not all(is_constant(ed, t) for t in ins[2:]):
        raise NotTileable(f"{code} pads with a non-constant value")
    if not ed.same_quant(ins[0], out):
        raise NotTileable(f"{code} requantises")
    axes = tuple(AxisGeometry(1, 1, 1, int(pads[1 + a][0])) for a in range(2))
    return SpatialOp("pad", axes, (0,))  # type: ignore[arg-type]


def _pointwise(ed: Editor, op, code: str, ins: list[int], out) -> SpatialOp:
    if code == "CONCATENATION" and ed.options(op, NotTileable).axis not in (3, -1):
        raise NotTileable("CONCATENATION along a spatial axis")
    spatial = []
    for pos, t in enumerate(ins):
        if t < 0:
            continue
        if is_constant(ed, t):
            sh = ed.shape(t)
            if len(sh) >= 3 and (sh[-3] != 1 or sh[-2] != 1):
                raise NotTileable(f"{code} has a constant that varies over H or W")
            continue
        sh = _feature_map(ed, t)
        if sh[1:3] != out[1:3]:
            raise NotTileable(f"{code} broadcasts a feature map over H or W")
        spatial.append(pos)
    if not spatial:
        raise NotTileable(f"{code} has no feature-map input")
    return SpatialOp("pointwise", (IDENTITY, IDENTITY), tuple(spatial))
