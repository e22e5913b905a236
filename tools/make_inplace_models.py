#!/usr/bin/env python3
"""Build tiny models that put one operator type between two 1x1 convolutions.

Usage::

    python tools/make_inplace_models.py            # every op, int8 and float32
    python tools/make_inplace_models.py --only tanh hard_swish

Each model is ``input -> CONV_2D -> <op> -> CONV_2D -> output`` (binary ops take two
convolution outputs, then once more a broadcast operand computed at run time), so the
op's input is an intermediate that dies at the op: exactly the case where the planner
lets the output take the input's buffer. Most models come from the TF Lite converter.
Ops it fuses away (RELU, RELU6 into the convolution), never emits for static shapes
(SQUEEZE, EXPAND_DIMS become RESHAPE) or only emits at the model edge (QUANTIZE int8 ->
int8) are spliced by hand into the converted conv -> conv model instead.
``tests/test_inplace.py`` runs each model in TFLM with and without that aliasing and
requires bit-identical outputs before the op type may stay in ``memory.INPLACE_OPS``.
Files: ``models/inplace_<op>_<dtype>.tflite``, each under 50 KB. TensorFlow is needed
here only; the tests use the committed files.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
MAX_BYTES = 50_000
SHAPE = (8, 8, 16)  # H, W, C: 1 KiB per int8 activation, distinct from everything else

tf = None


def _tf():
    global tf
    if tf is None:
        import tensorflow as _tf

        _tf.get_logger().setLevel("ERROR")
        tf = _tf
    return tf


class _Weights:
    """Deterministic constant weights, fresh per model."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def conv(self, x):
        c = SHAPE[-1]
        w = self.rng.normal(0, 0.4, (1, 1, c, c)).astype(np.float32)
        b = self.rng.normal(0, 0.1, (c,)).astype(np.float32)
        return _tf().nn.conv2d(x, w, 1, "VALID") + b


def _unary(fn: Callable) -> Callable:
    def body(x, w):
        return fn(w.conv(x))
    return body


def _binary(fn: Callable) -> Callable:
    """fn(a, b) on two intermediates, then fn(y, mean(b)) with a run-time broadcast."""
    def body(x, w):
        a, b = w.conv(x), w.conv(x)
        y = fn(a, b)
        m = _tf().reduce_mean(b, axis=(1, 2), keepdims=True)
        return fn(y, m)
    return body


def _reshape(x, w):
    """[1,8,8,16] -> [1,16,8,8] -> 1x1 conv over 8 channels -> back: nothing can absorb it."""
    t = _tf()
    h, wd, c = SHAPE
    r = t.reshape(w.conv(x), (1, c, h, wd))
    k = w.rng.normal(0, 0.4, (1, 1, wd, wd)).astype(np.float32)
    return t.reshape(t.nn.conv2d(r, k, 1, "VALID"), (1, h, wd, c))


def _plain(x, w):
    """The base for spliced ops: conv -> (splice point) -> conv."""
    return w.conv(x)


def _hard_swish(x):
    return x * _tf().nn.relu6(x + 3.0) / 6.0


OPS: dict[str, Callable] = {
    "add": _binary(lambda a, b: a + b),
    "sub": _binary(lambda a, b: a - b),
    "mul": _binary(lambda a, b: a * b),
    "maximum": _binary(lambda a, b: _tf().maximum(a, b)),
    "minimum": _binary(lambda a, b: _tf().minimum(a, b)),
    "squared_difference": _binary(lambda a, b: _tf().math.squared_difference(a, b)),
    "logistic": _unary(lambda a: _tf().sigmoid(a)),
    "tanh": _unary(lambda a: _tf().tanh(a)),
    "hard_swish": _unary(_hard_swish),
    "leaky_relu": _unary(lambda a: _tf().nn.leaky_relu(a, 0.2)),
    "abs": _unary(lambda a: _tf().abs(a)),
    "neg": _unary(lambda a: -a),
    "softmax": _unary(lambda a: _tf().nn.softmax(a, axis=-1)),
    "reshape": _reshape,
    "relu": _plain,
    "relu6": _plain,
    "squeeze_expand_dims": _plain,
    "quantize": _plain,
}
FLOAT_ONLY = {"neg"}  # the converter runs int8 NEG as DEQUANTIZE -> NEG -> QUANTIZE
INT8_ONLY = {"quantize"}  # float models have nothing to requantize


# ---------------------------------------------------------------------------------------------
# Splicing ops into a converted conv -> conv model (object API; no TF needed)


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _opcode(model, name: str) -> int:
    schema = _schema()
    code = getattr(schema.BuiltinOperator, name)
    for i, c in enumerate(model.operatorCodes):
        if max(c.builtinCode, c.deprecatedBuiltinCode) == code:
            return i
    oc = schema.OperatorCodeT()
    oc.builtinCode = code
    oc.deprecatedBuiltinCode = min(code, 127)
    oc.version = 1
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1


def _new_tensor(model, like: int, name: str, shape=None, scale=None, zero_point=None) -> int:
    import copy

    sg = model.subgraphs[0]
    t = copy.deepcopy(sg.tensors[like])
    t.name = name
    t.buffer = 0
    if shape is not None:
        t.shape = np.array(shape, dtype=np.int32)
        t.shapeSignature = None
    if scale is not None:
        t.quantization.scale = np.array([scale], dtype=np.float32)
        t.quantization.zeroPoint = np.array([zero_point], dtype=np.int64)
        t.quantization.min = t.quantization.max = None
    sg.tensors.append(t)
    return len(sg.tensors) - 1


def _const_int32(model, name: str, values: list[int]) -> int:
    schema = _schema()
    buf = schema.BufferT()
    buf.data = np.array(values, dtype="<i4").view(np.uint8)
    model.buffers.append(buf)
    t = schema.TensorT()
    t.name, t.type, t.buffer = name, schema.TensorType.INT32, len(model.buffers) - 1
    t.shape = np.array([len(values)], dtype=np.int32)
    model.subgraphs[0].tensors.append(t)
    return len(model.subgraphs[0].tensors) - 1


def _operator(model, name: str, inputs, outputs, options_type=0, options=None):
    op = _schema().OperatorT()
    op.opcodeIndex = _opcode(model, name)
    op.inputs = np.array(inputs, dtype=np.int32)
    op.outputs = np.array(outputs, dtype=np.int32)
    op.builtinOptionsType, op.builtinOptions = options_type, options
    return op


def _splice(model, make_ops) -> None:
    """Put ``make_ops(model, a) -> (ops, b)`` between the first conv's output ``a`` and
    the second conv, which then reads ``b``."""
    sg = model.subgraphs[0]
    first, second = sg.operators[0], sg.operators[1]
    a = int(first.outputs[0])
    ops, b = make_ops(model, a)
    second.inputs = np.array([b if int(i) == a else int(i) for i in second.inputs], np.int32)
    sg.operators[1:1] = ops


def _relu(name: str):
    def make(model, a):
        b = _new_tensor(model, a, f"{name.lower()}_out")
        return [_operator(model, name, [a], [b])], b
    return make


def _requantize(model, a):
    q = model.subgraphs[0].tensors[a].quantization
    scale, zp = float(q.scale[0]) * 1.5, int(q.zeroPoint[0]) // 2 + 3
    b = _new_tensor(model, a, "requantized", scale=scale, zero_point=zp)
    return [_operator(model, "QUANTIZE", [a], [b])], b


def _squeeze_expand_dims(model, a):
    schema = _schema()
    shape = [int(d) for d in model.subgraphs[0].tensors[a].shape]
    e = _new_tensor(model, a, "expanded", shape=[*shape[:3], 1, shape[3]])
    s = _new_tensor(model, a, "squeezed")
    axis = _const_int32(model, "axis", [3])
    squeeze = schema.SqueezeOptionsT()
    squeeze.squeezeDims = [3]
    return [
        _operator(model, "EXPAND_DIMS", [a, axis], [e],
                  schema.BuiltinOptions.ExpandDimsOptions, schema.ExpandDimsOptionsT()),
        _operator(model, "SQUEEZE", [e], [s], schema.BuiltinOptions.SqueezeOptions, squeeze),
    ], s


SPLICES = {
    "relu": _relu("RELU"),
    "relu6": _relu("RELU6"),
    "quantize": _requantize,
    "squeeze_expand_dims": _squeeze_expand_dims,
}


def splice(data: bytes, name: str) -> bytes:
    from tflite_reorder.flatbuffer_io import load_model, serialize_model

    model = load_model(data).model
    _splice(model, SPLICES[name])
    return serialize_model(model)


def build(name: str, dtype: str) -> bytes:
    t = _tf()
    weights = _Weights(sorted(OPS).index(name))

    @t.function(input_signature=[t.TensorSpec((1, *SHAPE), t.float32)])
    def model(x):
        return weights.conv(OPS[name](x, weights))

    conv = t.lite.TFLiteConverter.from_concrete_functions([model.get_concrete_function()])
    if dtype == "int8":
        rng = np.random.default_rng(0)

        def rep():
            for _ in range(16):
                yield [rng.uniform(-2, 2, (1, *SHAPE)).astype(np.float32)]

        conv.optimizations = [t.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [t.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = t.int8
        conv.inference_output_type = t.int8
    data = conv.convert()
    return splice(data, name) if name in SPLICES else data


def op_types(data: bytes) -> list[str]:
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    m = schema.ModelT.InitFromPackedBuf(data, 0)
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in m.operatorCodes]
    return [names[codes[op.opcodeIndex]] for op in m.subgraphs[0].operators]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", choices=sorted(OPS), help="ops to build")
    ap.add_argument("--out", type=Path, default=MODELS, help="output directory")
    args = ap.parse_args(argv)
    for name in args.only or OPS:
        for dtype in ("int8", "float32"):
            if (dtype == "float32" and name in INT8_ONLY) or (
                dtype == "int8" and name in FLOAT_ONLY
            ):
                continue
            data = build(name, dtype)
            if len(data) > MAX_BYTES:
                raise SystemExit(f"{name}_{dtype}: {len(data)} bytes > {MAX_BYTES}")
            path = args.out / f"inplace_{name}_{dtype}.tflite"
            path.write_bytes(data)
            print(f"{path.name}: {len(data)} bytes, ops {op_types(data)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
