"""Kernel scratch buffers on the target, as TFLM's kernels request them in ``Prepare``.

Kernels ask TFLM for scratch memory (``RequestScratchBufferInArena``) that lives for their
operator's scope and is planned *online*, around an offline plan. A plan that ignores them
can be exceeded on the target (CMSIS-NN's im2col buffers). The sizes here are the ones
CMSIS-NN's ``*_get_buffer_size`` functions and TFLM's kernels compute, for the features
each architecture compiles in: the DSP extension (Cortex-M4, M7, M33), MVE (Helium,
Cortex-M55 built hard-float) or neither (Cortex-M0, M3), with GCC (for which some sizes,
such as the 1x1 fast convolution's, are 0). Kernels read tensor dimensions from the shapes
stored in the flatbuffer, so these do too.

``requests`` returns, per operator, the byte counts in request order; TFLM rounds each to
16 and plans them after every tensor (``AddBuffer`` order). Operators whose kernels request
scratch in ways not modelled here raise :class:`UnknownScratch`, naming the operator.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from math import prod

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from ..dtypes import align
from ..flatbuffer_io import ModelError
from ..graph import MAX_ARENA, ModelGraph

# Architecture features as GCC's -mcpu (and our float ABI) define them for CMSIS-NN.
_DSP = {"cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55"}
_MVE = {"cortex-m55"}
_CH_IN_BLOCK_MVE = 124
_DW_ONE_IN_CH_THRESHOLD = 1  # CONVERT_DW_CONV_WITH_ONE_INPUT_CH_AND_OUTPUT_CH_ABOVE_THRESHOLD, GCC
# Builtins whose kernels (in this TFLM, either kernel set) request scratch in ways not modelled
# here; every other builtin requests none (read from the kernels' Prepare functions).
_UNMODELLED = frozenset({
    "ADD_N", "MIRROR_PAD", "TRANSPOSE_CONV", "SVDF", "UNIDIRECTIONAL_SEQUENCE_LSTM",
    "BATCH_MATMUL", "CUSTOM",
})
HOST_ARCH = "host"  # the reference kernels of the host's tflite-micro: no DSP, no MVE


class UnknownScratch(ValueError):
    """An operator whose kernel's scratch requests are not modelled for this target."""


@dataclass(frozen=True)
class _Op:
    opcode: str
    inputs: list[schema.TensorT | None]
    outputs: list[schema.TensorT]
    options: object


def _shape(t: schema.TensorT | None) -> list[int]:
    return [int(d) for d in t.shape] if t is not None and t.shape is not None else []


def _type(t: schema.TensorT | None) -> int:
    return -1 if t is None else int(t.type)


def _out_size(padding: int, size: int, filt: int, stride: int, dilation: int) -> int:
    """TFLM's ``ComputeOutSize``."""
    eff = (filt - 1) * dilation + 1
    if padding == schema.Padding.SAME:
        return (size + stride - 1) // stride
    return (size + stride - eff) // stride


def _pad(padding: int, size: int, filt: int, stride: int, dilation: int) -> int:
    """TFLM's ``ComputePaddingWithOffset`` (the leading padding)."""
    out = _out_size(padding, size, filt, stride, dilation)
    eff = (filt - 1) * dilation + 1
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2


def _align4(n: int) -> int:
    return n + (4 - n % 4) % 4


def _conv_im2col(arch: str, in_c: int, fw: int, fh: int) -> int:
    """``arm_convolve_s8_get_buffer_size`` (scalar/DSP) or its ``_mve`` variant."""
    if arch in _MVE:
        return 4 * ((in_c * fw * fh + 15) // 16) * 16
    return 2 * _align4(fw * fh * in_c) * 2


def _conv_1_x_n_mve(in_w: int, in_c: int, fw: int, out_w: int, stride_w: int,
                    pad_w: int, fh: int) -> int:
    total_pad = (out_w - 1) * stride_w + fw - in_w
    asym = total_pad % 2
    right = max(1, (pad_w + asym + stride_w - 1) // stride_w) if pad_w + asym != 0 else 0
    left = max(1, (pad_w + stride_w - 1) // stride_w) if pad_w != 0 else 0
    no_pad = max(out_w - (right + left), 0)
    if right + no_pad + left != out_w:
        return _conv_im2col("cortex-m55", in_c, fw, fh)
    pad_left = pad_w * in_c
    pad_right = right * in_c if asym else pad_left
    left_elems = fw * in_c
    return max(left_elems + pad_left, left_elems - in_c + pad_right)


def _conv2d(op: _Op, arch: str) -> list[int]:
    x, w = op.inputs[0], op.inputs[1]
    if _type(x) != schema.TensorType.INT8 or _type(w) != schema.TensorType.INT8:
        if _type(x) in (schema.TensorType.INT16,) or _type(w) == schema.TensorType.INT4:
            raise UnknownScratch("CONV_2D int16/int4")
        return []
    o = op.options
    _, in_h, in_w, in_c = _shape(x)
    _, fh, fw, f_c = _shape(w)
    out_w = _shape(op.outputs[0])[2]
    dil_w, dil_h = o.dilationWFactor or 1, o.dilationHFactor or 1
    pad_h = _pad(o.padding, in_h, fh, o.strideH, dil_h)
    pad_w = _pad(o.padding, in_w, fw, o.strideW, dil_w)
    if (pad_w == 0 and pad_h == 0 and fw == 1 and fh == 1 and dil_w == 1 and dil_h == 1
            and in_c == f_c):
        return []  # 1x1: the fast path's buffer is 0 with GCC, the other needs none
    if (in_h == 1 and dil_w == 1 and fh == 1 and (o.strideW * in_c) % 4 == 0
            and in_c == f_c):
        if arch in _MVE:
            return [_conv_1_x_n_mve(in_w, in_c, fw, out_w, o.strideW, pad_w, fh)]
        return [_conv_im2col(arch, in_c, fw, fh)]
    return [_conv_im2col(arch, in_c, fw, fh)]


def _depthwise(op: _Op, arch: str) -> list[int]:
    x, w = op.inputs[0], op.inputs[1]
    if _type(x) != schema.TensorType.INT8:
        return []
    if _type(w) != schema.TensorType.INT8:
        raise UnknownScratch("DEPTHWISE_CONV_2D int4")
    o = op.options
    n, in_h, in_w, in_c = _shape(x)
    _, fh, fw, out_c = _shape(w)
    dil_w, dil_h = o.dilationWFactor or 1, o.dilationHFactor or 1
    pad_h = _pad(o.padding, in_h, fh, o.strideH, dil_h)
    pad_w = _pad(o.padding, in_w, fw, o.strideW, dil_w)
    if arch in _MVE and in_c == 1 and out_c > _DW_ONE_IN_CH_THRESHOLD:
        raise UnknownScratch("DEPTHWISE_CONV_2D with one input channel on MVE")
    if in_c == out_c and n == 1 and dil_w == 1 and dil_h == 1:
        if arch in _MVE:
            return [4 * _CH_IN_BLOCK_MVE * fw * fh]
        if fw == 3 and fh == 3 and pad_h <= 1 and pad_w <= 1:
            return []
        return [in_c * fw * fh * 2] if arch in _DSP else []
    return []


def _fully_connected(op: _Op, arch: str) -> list[int]:
    x, w = op.inputs[0], op.inputs[1]
    if _type(x) == schema.TensorType.INT16 or _type(w) == schema.TensorType.INT4:
        raise UnknownScratch("FULLY_CONNECTED int16/int4")
    if _type(x) != schema.TensorType.INT8:
        return []
    out = _shape(op.outputs[0])
    accum_depth = _shape(w)[-1]
    q = w.quantization
    per_channel = q is not None and q.scale is not None and len(q.scale) > 1
    if len(out) > 2 and accum_depth % 4 == 0:
        return [] if per_channel else [out[-1] * 4 * 2]
    return []  # arm_fully_connected_s8: 0, or persistent kernel sums (MVE, constant weights)


def _avg_pool(op: _Op, arch: str) -> list[int]:
    x = op.inputs[0]
    if _type(x) == schema.TensorType.INT16:
        raise UnknownScratch("AVERAGE_POOL_2D int16")
    if _type(x) != schema.TensorType.INT8:
        return []
    depth = _shape(op.outputs[0])[3]
    return [depth * 4] if arch in _DSP and arch not in _MVE else []


def _mean_or_sum(op: _Op, arch: str) -> list[int]:
    x, axis = op.inputs[0], op.inputs[1]
    sizes = []
    if _type(x) in (schema.TensorType.INT8, schema.TensorType.INT16):
        sizes.append(4 * prod(_shape(op.outputs[0])))
    return sizes + [4 * len(_shape(x)), 4 * prod(_shape(axis))]


def _min_max(op: _Op, arch: str) -> list[int]:
    x, axis = op.inputs[0], op.inputs[1]
    return [4 * len(_shape(x)), 4 * prod(_shape(axis))]


def _svdf(op: _Op, arch: str) -> list[int]:
    """Reference SVDF (``svdf_common.cc``): int32 per filter, int8 also int32 per unit."""
    batch = _shape(op.inputs[0])[0]
    filters = _shape(op.inputs[1])[0]
    if _type(op.inputs[0]) == schema.TensorType.INT8:
        units = _shape(op.outputs[0])[1]
        return [4 * batch * filters, 4 * batch * units]
    return [4 * batch * filters]


_CMSIS = {"CONV_2D": _conv2d, "DEPTHWISE_CONV_2D": _depthwise,
          "FULLY_CONNECTED": _fully_connected, "AVERAGE_POOL_2D": _avg_pool}
_REFERENCE = {"MEAN": _mean_or_sum, "SUM": _mean_or_sum, "REDUCE_MAX": _min_max,
              "REDUCE_MIN": _min_max}
# Reference kernels only: CMSIS-NN's own versions of these request other sizes.
_REFERENCE_ONLY = {"SVDF": _svdf}


def _reference_conv(op: _Op, arch: str) -> list[int]:
    if _type(op.inputs[1]) == schema.TensorType.INT4:
        raise UnknownScratch(f"{op.opcode} int4")
    return []


_CONVS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def may_request(opcode: str, kernels: str) -> bool:
    """Whether ``op_requests`` looks at an operator of this name at all (else it requests
    nothing): a 50,000-op chain of ADDs and RELUs is not read tensor by tensor."""
    return (opcode in _REFERENCE or opcode in _CONVS or opcode in _UNMODELLED
            or (kernels == "cmsis_nn" and opcode in _CMSIS)
            or (kernels == "reference" and opcode in _REFERENCE_ONLY))


def op_requests(op: _Op, arch: str, kernels: str) -> list[int]:
    """Byte counts one operator requests, in request order (not yet rounded to 16)."""
    if kernels == "cmsis_nn" and op.opcode in _CMSIS:
        return _CMSIS[op.opcode](op, arch)
    if op.opcode in _REFERENCE:
        return _REFERENCE[op.opcode](op, arch)
    if kernels == "reference" and op.opcode in _REFERENCE_ONLY:
        return _REFERENCE_ONLY[op.opcode](op, arch)
    if op.opcode in _CONVS:
        return _reference_conv(op, arch)
    if op.opcode in _UNMODELLED:
        raise UnknownScratch(op.opcode)
    return []


def requests(model_t: schema.ModelT, graph: ModelGraph, arch: str,
             kernels: str) -> dict[tuple[int, int], tuple[int, ...]]:
    """(subgraph, op) -> aligned scratch sizes in request order, for ops that request any.

    Raises UnknownScratch for an operator whose requests are not modelled here, or whose
    inputs are not what its kernel reads (a malformed model: the runtimes will say more).
    """
    out: dict[tuple[int, int], tuple[int, ...]] = {}
    for s, sg in enumerate(graph.subgraphs):
        sg_t = model_t.subgraphs[s]

        def tensor(i: int, sg=sg, sg_t=sg_t) -> schema.TensorT | None:
            return None if i < 0 else _as_written(sg_t.tensors[i], sg.tensors[i])

        for v, node in enumerate(sg.ops):
            if not may_request(node.opcode, kernels):
                continue
            op_t = sg_t.operators[v]
            ins = [tensor(i) for i in op_t.inputs]
            outs = [tensor(i) for i in op_t.outputs]
            try:
                sizes = op_requests(_Op(node.opcode, ins, outs, op_t.builtinOptions), arch,
                                    kernels)
            except UnknownScratch as exc:
                raise UnknownScratch(
                    f"subgraph {s} op {v} ({node.opcode}): scratch not modelled: {exc}"
                ) from None
            except (IndexError, TypeError, AttributeError) as exc:  # inputs missing or empty
                raise UnknownScratch(
                    f"subgraph {s} op {v} ({node.opcode}): malformed operator ({exc})"
                ) from None
            sizes = [align(b) for b in sizes if b > 0]
            if sum(sizes) > MAX_ARENA:
                raise ModelError(f"subgraph {s} op {v} ({node.opcode}): its kernel's scratch "
                                 f"needs {sum(sizes)} bytes; TFLM arenas are 32-bit")
            if sizes:
                out[(s, v)] = tuple(sizes)
    return out


def _as_written(t: schema.TensorT, info) -> schema.TensorT:
    """The tensor with the shape the written model stores (the true shape, where shape
    inference repaired it): kernels size their scratch from the shapes they run with, and a
    corrupt stored shape (2^31 rows where the kernels make one) must not size it."""
    if tuple(info.shape) == tuple(info.stored_shape):
        return t
    view = copy.copy(t)
    view.shape = np.array(info.shape, dtype=np.int32)
    return view
