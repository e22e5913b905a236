#!/usr/bin/env python3
"""Extra models for the rewrite tests (``src/tflite_reorder/rewrites``), into ``models/``.

The committed models cover channel concats (``concat_conv_*``, ``concat_dw_int8``,
``densenet_int8``, ``nasnet_cells_int8``, ``inception_int8``) but none has a *tree* of ADDs
(every ADD chain there is left-deep already). This script builds that case::

    python tools/make_rewrite_models.py          # add_tree_int8, add_tree_float32

``add_tree_*``: a stem conv feeding four 3×3 conv branches summed as
``ADD(ADD(b1, b2), ADD(b3, b4))``, then a 1×1 conv, global pooling and a dense layer.
Each model is checked to run in LiteRT (reference kernels) and in TFLM with equal outputs.
Deterministic: fixed seeds, fixed representative data.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
SHAPE = (32, 32, 3)


def build_add_tree():
    import keras
    from keras import layers

    keras.backend.clear_session()
    keras.utils.set_random_seed(7)
    x = keras.Input(SHAPE, batch_size=1)
    stem = layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    branches = [layers.Conv2D(16, 3, padding="same", activation="relu")(stem) for _ in range(4)]
    left = layers.Add()(branches[:2])
    right = layers.Add()(branches[2:])
    y = layers.Add()([left, right])
    y = layers.Conv2D(16, 1, activation="relu")(y)
    y = layers.GlobalAveragePooling2D()(y)
    y = layers.Dense(10)(y)
    return keras.Model(x, y)


def convert(model, int8: bool, samples=None) -> bytes:
    """The Keras ``model`` as a .tflite: float, or full-integer int8 calibrated on
    ``samples`` (an iterable of input arrays; default 8 seeded uniform [-1, 1] draws)."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        shape = (1, *model.inputs[0].shape[1:])
        if samples is None:
            samples = [np.random.RandomState(i).uniform(-1, 1, shape).astype(np.float32)
                       for i in range(8)]

        def rep():
            for x in samples:
                yield [x]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert()


def check(data: bytes) -> None:
    """Runs in LiteRT (reference kernels) and TFLM with identical outputs; has an ADD tree."""
    sys.path.insert(0, str(ROOT / "src"))
    from tflite_reorder import tflm
    from tflite_reorder.flatbuffer_io import load_model
    from tflite_reorder.rewrites import add_tree
    from tflite_reorder.rewrites.edit import Editor
    from tflite_reorder.runtimes import random_inputs, run_litert

    if not add_tree.candidates(Editor(load_model(data).model, 0)):
        raise SystemExit("converted model has no ADD tree")
    for case in random_inputs(data, 2):
        want = run_litert(data, case)
        got = tflm.run_tflm(data, case)
        if not all(np.array_equal(a, b) for a, b in zip(want, got, strict=True)):
            raise SystemExit("TFLM and LiteRT outputs differ")


def main() -> None:
    model = build_add_tree()
    for name, int8 in (("add_tree_int8", True), ("add_tree_float32", False)):
        data = convert(model, int8)
        check(data)
        (MODELS / f"{name}.tflite").write_bytes(data)
        print(f"models/{name}.tflite: {len(data)} bytes")


if __name__ == "__main__":
    main()
