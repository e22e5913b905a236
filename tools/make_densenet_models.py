#!/usr/bin/env python3
"""DenseNet-style and other-axis concat models for the rewrite tests and benchmark.

Built with Keras' own DenseNet block structure (``keras.applications.densenet``: every
conv block is BN → ReLU → 1×1 conv → BN → ReLU → 3×3 conv → ``Concatenate([x, new])``, so
each block's concat feeds the next concat *and* a BN → conv; a transition is BN → ReLU →
1×1 conv → 2×2 average pool), random weights and random batch-norm statistics, converted
to full-integer int8 (int8 inputs and outputs, the converter's representative data)::

    python tools/make_densenet_models.py                      # the models/ files below
    python tools/make_densenet_models.py --densenet121 PATH   # Keras DenseNet121 (not kept)

* ``densenet_keras_int8``: DenseNet121's stem (7×7/2 conv, zero pad, 3×3/2 max pool) and
  blocks at reduced width and depth (growth 8, blocks 3-4-3), 64×64×3 input;
* ``densenet_bc_int8``: CIFAR-style DenseNet-BC (3×3 stem, bottleneck, compression 0.5,
  growth 12, blocks 4-4-4), 32×32×3 input: a chain of concatenations per block;
* ``hconcat_int8``: two conv branches concatenated along H, then a 1×1 conv, ReLU and 2×2
  max pool (each can run per piece), global pooling and a dense layer.

``--densenet121 PATH`` writes Keras ``DenseNet121(weights=None, input_shape=(64, 64, 3),
classifier_activation=None)`` (8 MB; the softmax is left out because LiteRT's and TFLM's
reference SOFTMAX abort the process on this model's int8 logits; ``tflite-reorder``
refuses a SOFTMAX whose input scale × beta is not above 2^-26, the cause of that abort in
the reference kernels, in one line with exit 2). Every model is checked to run in
LiteRT (reference kernels) and TFLM. Deterministic: fixed seeds, fixed representative data.
Also writes each model's representative data as ``<model>_calibration.npz`` next to it
when asked (``--calibration``), the format ``--calibration`` reads.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import argparse
import sys
from pathlib import Path

import numpy as np
from make_rewrite_models import convert as convert_keras  # tools/ is on sys.path as a script

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
BN_EPS = 1.001e-5  # keras.applications.densenet


def representative(shape: tuple[int, ...], n: int = 16) -> np.ndarray:
    """The converter's representative data: smooth random images in [-1, 1] (a low-res
    random field upsampled, plus a little noise), ``(n, 1, *shape)`` float32."""
    rs = np.random.RandomState(1234)
    h, w, c = shape
    out = []
    for _ in range(n):
        coarse = rs.uniform(-1, 1, (h // 8 + 1, w // 8 + 1, c))
        img = np.kron(coarse, np.ones((8, 8, 1)))[:h, :w]
        img = np.clip(img + rs.normal(0, 0.1, img.shape), -1, 1)
        out.append(img[None].astype(np.float32))
    return np.stack(out)


def conv_block(x, growth: int, name: str):
    from keras import layers

    x1 = layers.BatchNormalization(epsilon=BN_EPS, name=f"{name}_0_bn")(x)
    x1 = layers.Activation("relu", name=f"{name}_0_relu")(x1)
    x1 = layers.Conv2D(4 * growth, 1, use_bias=False, name=f"{name}_1_conv")(x1)
    x1 = layers.BatchNormalization(epsilon=BN_EPS, name=f"{name}_1_bn")(x1)
    x1 = layers.Activation("relu", name=f"{name}_1_relu")(x1)
    x1 = layers.Conv2D(growth, 3, padding="same", use_bias=False, name=f"{name}_2_conv")(x1)
    return layers.Concatenate(name=f"{name}_concat")([x, x1])


def dense_block(x, blocks: int, growth: int, name: str):
    for i in range(blocks):
        x = conv_block(x, growth, f"{name}_block{i + 1}")
    return x


def transition_block(x, reduction: float, name: str):
    from keras import layers

    x = layers.BatchNormalization(epsilon=BN_EPS, name=f"{name}_bn")(x)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    x = layers.Conv2D(int(x.shape[-1] * reduction), 1, use_bias=False, name=f"{name}_conv")(x)
    return layers.AveragePooling2D(2, strides=2, name=f"{name}_pool")(x)


def head(x, classes: int = 10):
    from keras import layers

    x = layers.BatchNormalization(epsilon=BN_EPS, name="bn")(x)
    x = layers.Activation("relu", name="relu")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return layers.Dense(classes, name="predictions")(x)


def build_densenet_keras():
    """DenseNet121's layout (stem, 4 blocks … here 3, transitions 0.5) at small width."""
    import keras
    from keras import layers

    x_in = keras.Input((64, 64, 3), batch_size=1)
    x = layers.ZeroPadding2D(((3, 3), (3, 3)))(x_in)
    x = layers.Conv2D(16, 7, strides=2, use_bias=False, name="conv1_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPS, name="conv1_bn")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(((1, 1), (1, 1)))(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    for i, n in enumerate((3, 4, 3)):
        x = dense_block(x, n, 8, f"conv{i + 2}")
        if i < 2:
            x = transition_block(x, 0.5, f"pool{i + 2}")
    return keras.Model(x_in, head(x)), (64, 64, 3)


def build_densenet_bc():
    """CIFAR DenseNet-BC: 3×3 stem of 2×growth channels, no pooling stem."""
    import keras
    from keras import layers

    x_in = keras.Input((32, 32, 3), batch_size=1)
    x = layers.Conv2D(24, 3, padding="same", use_bias=False, name="conv1_conv")(x_in)
    for i in range(3):
        x = dense_block(x, 4, 12, f"conv{i + 2}")
        if i < 2:
            x = transition_block(x, 0.5, f"pool{i + 2}")
    return keras.Model(x_in, head(x)), (32, 32, 3)


def build_hconcat():
    """Two branches concatenated along H; a 1×1 conv, ReLU and 2×2 max pool after it."""
    import keras
    from keras import layers

    x_in = keras.Input((32, 32, 3), batch_size=1)
    x = layers.Conv2D(16, 3, padding="same", activation="relu")(x_in)
    a = layers.Conv2D(24, 3, strides=(2, 1), padding="same", activation="relu")(x)
    b = layers.Conv2D(24, 3, strides=(2, 1), padding="same", activation="relu")(x)
    y = layers.Concatenate(axis=1)([a, b])  # 32×32×24 from two 16×32×24 halves
    y = layers.Conv2D(32, 1, activation="relu")(y)
    y = layers.MaxPooling2D(2)(y)
    y = layers.Conv2D(16, 3, padding="same", activation="relu")(y)
    y = layers.GlobalAveragePooling2D()(y)
    return keras.Model(x_in, layers.Dense(10)(y)), (32, 32, 3)


def build_densenet121():
    import keras

    model = keras.applications.DenseNet121(weights=None, input_shape=(64, 64, 3),
                                           classifier_activation=None)
    return model, (64, 64, 3)


def randomize_batch_norms(model, seed: int) -> None:
    """Random BN statistics (Keras starts them at identity, which the converter would
    fold away): gamma in [0.5, 1.5], beta and mean small, variance in [0.5, 2]."""
    from keras import layers

    rs = np.random.RandomState(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rs.uniform(0.5, 1.5, n), rs.uniform(-0.3, 0.3, n),
                               rs.uniform(-0.2, 0.2, n), rs.uniform(0.5, 2.0, n)])


def convert(model, shape: tuple[int, ...]) -> bytes:
    """int8, calibrated on ``representative(shape)`` (the data ``--calibration`` gets)."""
    return convert_keras(model, True, list(representative(shape)))


def check(data: bytes) -> None:
    """Runs in LiteRT (reference kernels) and in TFLM."""
    sys.path.insert(0, str(ROOT / "src"))
    from tflite_reorder import tflm
    from tflite_reorder.runtimes import random_inputs, run_litert

    for case in random_inputs(data, 2):
        run_litert(data, case)
        if tflm.available():
            tflm.run_tflm(data, case)


BUILDERS = {
    "densenet_keras_int8": (build_densenet_keras, 21),
    "densenet_bc_int8": (build_densenet_bc, 22),
    "hconcat_int8": (build_hconcat, 23),
}


def make(name: str, builder, seed: int, dst: Path, calibration: bool) -> None:
    import keras

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    model, shape = builder()
    randomize_batch_norms(model, seed)
    data = convert(model, shape)
    check(data)
    dst.write_bytes(data)
    print(f"{dst}: {len(data)} bytes")
    if calibration:
        npz = dst.with_name(f"{dst.stem}_calibration.npz")
        np.savez(npz, representative(shape))
        print(f"{npz}: representative inputs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--densenet121", type=Path, help="write Keras DenseNet121 here instead")
    ap.add_argument("--calibration", action="store_true",
                    help="also write <model>_calibration.npz (representative inputs)")
    args = ap.parse_args()
    if args.densenet121:
        make("densenet121", build_densenet121, 0, args.densenet121, args.calibration)
        return
    for name, (builder, seed) in BUILDERS.items():
        make(name, builder, seed, MODELS / f"{name}.tflite", args.calibration)


if __name__ == "__main__":
    main()
