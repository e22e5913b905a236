#!/usr/bin/env python3
"""Build models that TFLite Micro cannot run but LiteRT can (one neither can, one tiny).

Usage::

    python tools/make_compat_models.py                  # every model
    python tools/make_compat_models.py --only tiny_fp16w

Real float models often store their weights as float16 constants behind DEQUANTIZE ops (the
TF converter's float16 option); TFLM's DEQUANTIZE accepts int8/int16/uint8 inputs only. Sparse
weights become a DENSIFY op, which TFLM has no kernel for, and converter custom ops (here
``AudioSpectrogram`` and ``Mfcc``, which LiteRT registers) are missing from TFLM too. The
tool must still never make these models worse, verify them with LiteRT and say plainly why
TFLM cannot run them (``tests/test_compat.py``).

Files (each under 300 KB), all from the TF 2.21 converter except the last:

* ``models/tiny_fp16w.tflite`` - conv -> depthwise -> conv -> mean -> dense, float16 weights.
* ``models/mobilenet_deep_fp16w.tflite`` - 50 MobileNetV2 inverted-residual blocks (8/12
  channels, 16x16 and 8x8), float16 weights: 357 ops of which 156 DEQUANTIZE.
* ``models/dense_sparse.tflite`` - two dense layers, the first 90% zero weights converted with
  ``Optimize.EXPERIMENTAL_SPARSITY``: a DENSIFY op.
* ``models/audio_custom.tflite`` - ``AudioSpectrogram`` -> ``Mfcc`` custom ops.
* ``models/unknown_op.tflite`` - ``audio_custom`` with its custom codes renamed to one no
  runtime registers (edited here, no converter): a model nothing can run.
* ``models/tiny3_int8.tflite`` - int8 dense -> dense -> softmax on 8 values (32 B of
  activations), which TFLM does run: below its minimum arena TFLM's planner fails with "Too
  many buffers (max is 3)" and the interpreter crashes at some sizes (``tflm._Prober``).

Every model is checked after building: LiteRT (reference kernels) runs it, except
``unknown_op``; TFLM refuses it, except ``tiny3_int8``. TensorFlow is needed here only;
the tests use the committed files.
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
MAX_BYTES = 300_000
UNKNOWN_CODE = b"TfliteReorderTestUnknownOp"

tf = None
keras = None
layers = None


def _import_tf() -> None:
    global tf, keras, layers
    if tf is None:
        import keras as _keras
        import tensorflow as _tf

        _tf.get_logger().setLevel("ERROR")
        tf, keras, layers = _tf, _keras, _keras.layers


def _fp16(model) -> bytes:
    """The converter's float16 option: weights stored as float16, DEQUANTIZE before use."""
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_types = [tf.float16]
    return conv.convert()


def build_tiny_fp16w() -> bytes:
    inp = keras.Input((16, 16, 3), batch_size=1)
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = layers.Conv2D(16, 1)(x)
    x = layers.GlobalAveragePooling2D()(x)
    return _fp16(keras.Model(inp, layers.Dense(4)(x)))


def _inverted_residual(x, c: int, expand: int, stride: int):
    y = layers.ReLU(6.0)(layers.Conv2D(c * expand, 1)(x))
    y = layers.ReLU(6.0)(layers.DepthwiseConv2D(3, strides=stride, padding="same")(y))
    y = layers.Conv2D(c, 1)(y)
    return layers.Add()([x, y]) if stride == 1 and x.shape[-1] == c else y


def build_mobilenet_deep_fp16w() -> bytes:
    inp = keras.Input((32, 32, 3), batch_size=1)
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    for i in range(50):
        x = _inverted_residual(x, 8 if i < 25 else 12, 3, 2 if i in (10, 25) else 1)
    x = layers.GlobalAveragePooling2D()(x)
    return _fp16(keras.Model(inp, layers.Dense(10)(x)))


def build_dense_sparse() -> bytes:
    inp = keras.Input((64,), batch_size=1)
    sparse = layers.Dense(64)
    y = layers.ReLU()(sparse(inp))
    model = keras.Model(inp, layers.Dense(8)(y))
    w, b = sparse.get_weights()
    keep = np.random.default_rng(0).random(w.shape) < 0.1
    sparse.set_weights([w * keep, b])
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    return conv.convert()


def build_audio_custom() -> bytes:
    @tf.function(input_signature=[tf.TensorSpec([4000, 1], tf.float32)])
    def mfcc(x):
        s = tf.raw_ops.AudioSpectrogram(input=x, window_size=256, stride=128,
                                        magnitude_squared=True)
        return tf.raw_ops.Mfcc(spectrogram=s, sample_rate=16000, dct_coefficient_count=10)

    conv = tf.lite.TFLiteConverter.from_concrete_functions([mfcc.get_concrete_function()], mfcc)
    conv.allow_custom_ops = True
    return conv.convert()


def build_unknown_op() -> bytes:
    """``audio_custom`` whose custom ops no runtime registers (edited, not converted)."""
    from ai_edge_litert import schema_py_generated as schema

    from tflite_reorder.flatbuffer_io import parse_model, serialize_model

    model = parse_model(build_audio_custom()).model
    for oc in model.operatorCodes:
        if oc.builtinCode == schema.BuiltinOperator.CUSTOM:
            oc.customCode = UNKNOWN_CODE + (oc.customCode or b"")[:1]
    return serialize_model(model)


def build_tiny3_int8() -> bytes:
    inp = keras.Input((8,), batch_size=1)
    x = layers.Dense(8)(layers.Dense(8, activation="relu")(inp))
    conv = tf.lite.TFLiteConverter.from_keras_model(keras.Model(inp, layers.Softmax()(x)))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    conv.representative_dataset = lambda: (
        [rng.uniform(-1, 1, (1, 8)).astype(np.float32)] for _ in range(8))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    return conv.convert()


MODELS_BUILT: dict[str, tuple[Callable[[], bytes], str]] = {
    "tiny_fp16w": (build_tiny_fp16w, "DEQUANTIZE"),
    "mobilenet_deep_fp16w": (build_mobilenet_deep_fp16w, "DEQUANTIZE"),
    "dense_sparse": (build_dense_sparse, "DENSIFY"),
    "audio_custom": (build_audio_custom, "CUSTOM"),
    "unknown_op": (build_unknown_op, "CUSTOM"),
    "tiny3_int8": (build_tiny3_int8, "SOFTMAX"),
}


def check(name: str, data: bytes, marker: str) -> str:
    """Raise unless the model has ``marker`` ops, LiteRT runs it (but unknown_op) and TFLM
    refuses it (but tiny3_int8); returns a one-line description."""
    from tflite_reorder import runtimes, tflm
    from tflite_reorder.flatbuffer_io import parse_model
    from tflite_reorder.graph import build_graph

    graph = build_graph(parse_model(data).model)
    ops = [op.opcode for sg in graph.subgraphs for op in sg.ops]
    n_marker = sum(o.startswith(marker) for o in ops)
    if not n_marker:
        raise SystemExit(f"{name}: no {marker} op")
    if len(data) > MAX_BYTES:
        raise SystemExit(f"{name}: {len(data)} bytes > {MAX_BYTES}")
    litert = "LiteRT runs it"
    try:
        x = runtimes.random_inputs(data, 1)[0]
        runtimes.run_litert(data, x)
    except Exception as exc:
        if name != "unknown_op":
            raise SystemExit(f"{name}: LiteRT cannot run it: {exc}") from None
        litert = "LiteRT refuses it"
    else:
        if name == "unknown_op":
            raise SystemExit(f"{name}: LiteRT unexpectedly runs it")
    try:
        tflm.run_tflm(data, runtimes.structured_inputs(data))
    except tflm.TflmError:
        runs = False
    else:
        runs = True
    if runs != (name == "tiny3_int8"):
        raise SystemExit(f"{name}: TFLM {'runs' if runs else 'refuses'} it, unexpectedly")
    return (f"{name}: {len(data)} B, {len(ops)} ops ({n_marker} {marker}); {litert}; "
            f"TFLM {'runs' if runs else 'refuses'} it")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", choices=sorted(MODELS_BUILT), help="models to build")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    _import_tf()
    for name in args.only or MODELS_BUILT:
        build, marker = MODELS_BUILT[name]
        keras.utils.set_random_seed(0)
        keras.backend.clear_session()
        data = build()
        print(check(name, data, marker))
        (MODELS / f"{name}.tflite").write_bytes(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
