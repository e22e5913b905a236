"""One-operator models, built without TensorFlow, for the tiling padding rules.

``one_op`` makes an int8 or float32 model of a single CONV_2D, DEPTHWISE_CONV_2D,
MAX_POOL_2D, AVERAGE_POOL_2D or PAD on a ``[1, H, W, C]`` input, with random weights and
quantisation parameters that exercise rounding (non-zero zero points, per-channel scales).
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tflite_reorder.flatbuffer_io import serialize_model
from tflite_reorder.rewrites.edit import Editor, Quant

VERSION = {"CONV_2D": 3, "DEPTHWISE_CONV_2D": 3, "MAX_POOL_2D": 2, "AVERAGE_POOL_2D": 2,
           "PAD": 2}


def _q(scale, zp, dim=0) -> Quant:
    return Quant(np.atleast_1d(np.asarray(scale, np.float64)),
                 np.atleast_1d(np.asarray(zp, np.int64)), dim)


def one_op(
    opcode: str, dtype: str, hw: tuple[int, int], c: int = 3, *, kernel=(3, 3), stride=(1, 1),
    dilation=(1, 1), padding: str = "SAME", pads=((1, 2), (2, 1)), cout: int = 4, seed: int = 0,
) -> bytes:
    """Serialized one-op model (see the module docstring)."""
    rng = np.random.default_rng(seed)
    int8 = dtype == "INT8"
    m = schema.ModelT()
    m.version, m.buffers, m.operatorCodes = 3, [schema.BufferT()], []
    sg = schema.SubGraphT()
    sg.tensors, sg.operators = [], []
    m.subgraphs = [sg]
    x = schema.TensorT()
    x.name, x.buffer, x.shape = "x", 0, np.array([1, *hw, c], np.int32)
    x.type = getattr(schema.TensorType, dtype)
    in_q = _q(0.05, 7) if int8 else None
    if in_q is not None:
        x.quantization = in_q.to_t()
    sg.tensors.append(x)
    ed = Editor(m, 0)
    pad_enum = getattr(schema.Padding, padding)
    ins = [0]
    if opcode in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        depthwise = opcode == "DEPTHWISE_CONV_2D"
        oc = c if depthwise else cout
        wshape = (1, *kernel, oc) if depthwise else (oc, *kernel, c)
        wdim = 3 if depthwise else 0
        if int8:
            w = rng.integers(-127, 128, wshape)
            wq = _q(rng.uniform(0.002, 0.01, oc), np.zeros(oc), wdim)
            bq = _q(0.05 * wq.scale, np.zeros(oc))
            wt = ed.new_constant(w, 0, "w", wq)
            b = ed._constant(rng.integers(-500, 500, oc), schema.TensorType.INT32, "b", bq)
        else:
            wt = ed.new_constant(rng.standard_normal(wshape), 0, "w")
            b = ed.new_constant(rng.standard_normal(oc), 0, "b")
        ins += [wt, b]
        out_c = oc
        if depthwise:
            opts = schema.DepthwiseConv2DOptionsT()
            opts.depthMultiplier = 1
            otype = schema.BuiltinOptions.DepthwiseConv2DOptions
        else:
            opts = schema.Conv2DOptionsT()
            otype = schema.BuiltinOptions.Conv2DOptions
        opts.padding, opts.strideH, opts.strideW = pad_enum, *stride
        opts.dilationHFactor, opts.dilationWFactor = dilation
        out_q = _q(0.08, -5) if int8 else None
    elif opcode in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
        opts = schema.Pool2DOptionsT()
        opts.padding, opts.strideH, opts.strideW = pad_enum, *stride
        opts.filterHeight, opts.filterWidth = kernel
        otype, out_c, out_q = schema.BuiltinOptions.Pool2DOptions, c, in_q
    elif opcode == "PAD":
        ins.append(ed.new_int32(np.array([[0, 0], *pads, [0, 0]], np.int32), "paddings"))
        opts, otype, out_c, out_q = schema.PadOptionsT(), schema.BuiltinOptions.PadOptions, c, in_q
    else:
        raise ValueError(opcode)
    oh, ow = _out_hw(opcode, hw, kernel, stride, dilation, padding, pads)
    y = ed.new_tensor(0, (1, oh, ow, out_c), "y", quant=out_q)
    sg.operators.append(ed.new_op(opcode, ins, [y], otype, opts, VERSION[opcode]))
    sg.inputs, sg.outputs = np.array([0], np.int32), np.array([y], np.int32)
    return serialize_model(m)


def _out_hw(opcode, hw, kernel, stride, dilation, padding, pads) -> tuple[int, int]:
    if opcode == "PAD":
        return hw[0] + sum(pads[0]), hw[1] + sum(pads[1])
    out = []
    for a in range(2):
        if padding == "SAME":
            out.append(-(-hw[a] // stride[a]))
        else:
            ext = (kernel[a] - 1) * dilation[a] + 1
            out.append((hw[a] - ext) // stride[a] + 1)
    return out[0], out[1]


def structured_inputs(shape, dtype, seed: int = 0) -> list[np.ndarray]:
    """Random, constant (zero, min, max), gradients along H and W, and a min/max checkerboard."""
    rng = np.random.default_rng(seed)
    if dtype == np.int8:
        lo, hi = -128, 127
        rand = rng.integers(lo, hi + 1, shape)
    else:
        lo, hi = -3.0, 3.0
        rand = rng.standard_normal(shape) * 2
    n, h, w, c = shape
    grad_h = np.broadcast_to(np.linspace(lo, hi, h)[None, :, None, None], shape)
    grad_w = np.broadcast_to(np.linspace(hi, lo, w)[None, None, :, None], shape)
    checker = np.where((np.add.outer(np.arange(h), np.arange(w)) % 2)[None, :, :, None] == 0,
                       lo, hi)
    checker = np.broadcast_to(checker, shape)
    cases = [rand, np.zeros(shape), np.full(shape, lo), np.full(shape, hi), grad_h, grad_w,
             checker]
    return [np.ascontiguousarray(np.round(x) if dtype == np.int8 else x).astype(dtype)
            for x in cases]
