#!/usr/bin/env python3
"""Concatenation cases the other model scripts lack, into ``models/``.

    python tools/make_concat_models.py      # partial_concat_{int8,float32}, dethead_{int8,float32}

``partial_concat_*``: a DenseNet-style layer whose concatenation has one consumer that
needs it whole (a MEAN over the channels) next to one that can run per piece (batch
norm, ReLU, 1×1 conv)::

    a = conv1x1(x); b = conv3x3(a); C = concat(a, b); m = mean(C, channels)
    y = conv3x3(conv1x1(relu(bn(C)))) * m; out = gap(conv1x1(concat(a, b, y)))

``a`` and ``b`` are read again at the end, so ``C``'s copy is pure overhead while the 1×1
conv runs: *partial dissolution* runs that consumer on the pieces and keeps ``C`` for the
MEAN only.

``dethead_*``: a detection head (SSD style): two feature levels, per level a box conv
(A anchors × 4) and a class conv (A × K), each reshaped from ``[1, H, W, A*n]`` to
``[1, H*W*A, n]`` and concatenated along axis 1 (the flattened anchor axis) across the
levels; the boxes go out as they are, the class scores through a LOGISTIC (a per-row
op). Concatenations along a flattened axis, with an output consumer and a per-row one.

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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_rewrite_models import MODELS, ROOT, convert  # noqa: E402

MAX_BYTES = 300_000


def build_partial_concat():
    import keras
    from keras import layers

    keras.backend.clear_session()
    keras.utils.set_random_seed(11)
    x = keras.Input((24, 24, 8), batch_size=1)
    a = layers.Conv2D(8, 1, activation="relu")(x)
    b = layers.Conv2D(8, 3, padding="same", activation="relu")(a)
    c = layers.Concatenate()([a, b])
    m = layers.Lambda(lambda t: keras.ops.mean(t, axis=-1, keepdims=True))(c)
    t = layers.BatchNormalization()(c)
    t = layers.ReLU()(t)
    y = layers.Conv2D(8, 1, activation="relu")(t)
    y = layers.Conv2D(8, 3, padding="same", activation="relu")(y)
    y = layers.Multiply()([y, m])
    d = layers.Concatenate()([a, b, y])
    out = layers.Conv2D(4, 1)(d)
    out = layers.GlobalAveragePooling2D()(out)
    model = keras.Model(x, out)
    bn = next(la for la in model.layers if isinstance(la, layers.BatchNormalization))
    rng = np.random.default_rng(3)  # a trained-looking batch norm, not the identity
    bn.set_weights([rng.uniform(0.5, 1.5, 16), rng.uniform(-0.2, 0.2, 16),
                    rng.uniform(-0.1, 0.1, 16), rng.uniform(0.5, 1.5, 16)])
    return model


def build_dethead():
    import keras
    from keras import layers

    keras.backend.clear_session()
    keras.utils.set_random_seed(5)
    anchors, classes = 3, 4
    x = keras.Input((32, 32, 3), batch_size=1)
    f1 = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)  # 16x16
    f2 = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(f1)  # 8x8
    boxes, scores = [], []
    for f in (f1, f2):
        hw = f.shape[1] * f.shape[2]
        box = layers.Conv2D(anchors * 4, 3, padding="same")(f)
        cls = layers.Conv2D(anchors * classes, 3, padding="same")(f)
        boxes.append(layers.Reshape((hw * anchors, 4))(box))
        scores.append(layers.Reshape((hw * anchors, classes))(cls))
    box = layers.Concatenate(axis=1, name="boxes")(boxes)
    score = layers.Activation("sigmoid", name="scores")(layers.Concatenate(axis=1)(scores))
    return keras.Model(x, [box, score])


def check(data: bytes, name: str) -> None:
    """Runs in LiteRT (reference kernels) and TFLM with identical outputs."""
    sys.path.insert(0, str(ROOT / "src"))
    from tflite_reorder import tflm
    from tflite_reorder.runtimes import random_inputs, run_litert

    if len(data) > MAX_BYTES:
        raise SystemExit(f"{name}: {len(data)} bytes > {MAX_BYTES}")
    for case in random_inputs(data, 2):
        want = run_litert(data, case)
        got = tflm.run_tflm(data, case)
        if not all(np.array_equal(a, b) for a, b in zip(want, got, strict=True)):
            raise SystemExit(f"{name}: TFLM and LiteRT outputs differ")


def main() -> None:
    for stem, build in (("partial_concat", build_partial_concat), ("dethead", build_dethead)):
        model = build()
        for suffix, int8 in (("int8", True), ("float32", False)):
            name = f"{stem}_{suffix}"
            data = convert(model, int8)
            check(data, name)
            (MODELS / f"{name}.tflite").write_bytes(data)
            print(f"models/{name}.tflite: {len(data)} bytes")


if __name__ == "__main__":
    main()
