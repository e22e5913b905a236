#!/usr/bin/env python3
"""Chain-like MCU CNNs for patch-based (tiled) execution (``src/tflite_reorder/tiling``).

Usage::

    python tools/make_tiling_models.py              # every model below, into models/
    python tools/make_tiling_models.py --only tile_mbv1_025_96_int8

Random weights (fixed seeds), random BatchNorm statistics, int8 full-integer quantisation
with a random representative dataset (one float32 model). Files are kept small: where the
full network would exceed ~300 KB its low-resolution tail (which never sets the peak) is
cut short and the model says so in its description below.

* ``tile_mbv2_035_96_int8``: MobileNetV2 α 0.35 at 96×96, every inverted-residual stage,
  the last 1×1 conv 256 wide instead of 1280 (size), 10 classes.
* ``tile_mbv2_100_144_int8``: MobileNetV2 α 1.0 at 144×144 through the first two blocks of
  the 64-channel stage (stride 16), then a 1×1 conv to 128, global pooling and 10 classes
  (the full network is 3.5 MB int8; the cut-off layers run at 9×9 and never set the peak).
* ``tile_mbv1_025_96_int8``: MobileNetV1 α 0.25 at 96×96 (visual wake words), 2 classes;
  keras pads its stride-2 convs with ZeroPadding2D, so the model has PAD ops.
* ``tile_mcunet_int8``: MCUNet-like: inverted residuals with 3/5/7 kernels, 112×112.
* ``tile_resnet8_int8``: ResNet-8 (MLPerf Tiny image classification), 32×32.
* ``tile_dscnn_int8``: DS-CNN keyword spotting, 49×10 MFCC input (tiles along time).
* ``tile_mbv2_float32``: MobileNetV2 α 0.35 at 64×64 in float32, through the 64-channel
  stage, a 1×1 conv to 64, global pooling and 10 classes.
* ``tile_effnet_lite_int8``: EfficientNet-Lite0-style (EfficientNet-B0 without squeeze-
  excitation, ReLU6, as deployed on MCUs) at 96×96 through two blocks of the 80-channel
  stage, a 1×1 conv to 128, global pooling and 10 classes.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import argparse
import sys
from pathlib import Path

import numpy as np
from make_rewrite_models import convert  # tools/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"

keras = layers = tf = None


def _tf():
    global keras, layers, tf
    import keras as _k
    import tensorflow as _t

    keras, layers, tf = _k, _k.layers, _t


def _bn_act(x, act):
    x = layers.BatchNormalization()(x)
    if act == "relu6":
        return layers.ReLU(6.0)(x)
    if act == "relu":
        return layers.ReLU()(x)
    return x


def conv(x, c, k=1, s=1, act="relu6", padding="same"):
    x = layers.Conv2D(c, k, strides=s, padding=padding, use_bias=False)(x)
    return _bn_act(x, act)


def dw(x, k=3, s=1, act="relu6", padding="same"):
    x = layers.DepthwiseConv2D(k, strides=s, padding=padding, use_bias=False)(x)
    return _bn_act(x, act)


def inv_res(x, cout, s, t, k=3):
    cin = x.shape[-1]
    y = conv(x, cin * t, 1) if t != 1 else x
    y = dw(y, k, s)
    y = conv(y, cout, 1, act=None)
    return layers.Add()([x, y]) if s == 1 and cin == cout else y


def _c(c, alpha):
    return max(8, int(c * alpha + 4) // 8 * 8)


def mobilenet_v2(alpha, hw, stages, head=1280, classes=10):
    inp = keras.Input((hw, hw, 3), batch_size=1)
    x = conv(inp, _c(32, alpha), 3, 2)
    for t, c, n, s in stages:
        for i in range(n):
            x = inv_res(x, _c(c, alpha), s if i == 0 else 1, t)
    x = conv(x, head, 1)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(classes)(x))


MBV2_STAGES = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
               (6, 160, 3, 2), (6, 320, 1, 1)]


def build_mbv2_035_96():
    return mobilenet_v2(0.35, 96, MBV2_STAGES, head=256)


def build_mbv2_100_144():
    stages = [*MBV2_STAGES[:3], (6, 64, 2, 2)]
    return mobilenet_v2(1.0, 144, stages, head=128)


def build_mbv2_float():
    return mobilenet_v2(0.35, 64, MBV2_STAGES[:4], head=64)


def build_mbv1_025_96():
    inp = keras.Input((96, 96, 3), batch_size=1)
    x = conv(inp, 8, 3, 2, act="relu6")
    for c, s in [(16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (128, 1),
                 (128, 1), (128, 1), (128, 1), (256, 2), (256, 1)]:
        if s == 2:  # keras MobileNet: ZeroPadding2D(((0, 1), (0, 1))) + VALID
            x = layers.ZeroPadding2D(((0, 1), (0, 1)))(x)
            x = dw(x, 3, 2, padding="valid")
        else:
            x = dw(x, 3, 1)
        x = conv(x, c, 1)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(2)(x))


def mbconv_net(hw, stem, blocks, head=None, classes=10):
    """Stem conv, a depthwise-separable block, then inverted residuals (cout, s, t, k)."""
    inp = keras.Input((hw, hw, 3), batch_size=1)
    x = conv(inp, stem[0], 3, 2)
    x = dw(x, 3, 1)
    x = conv(x, stem[1], 1, act=None)
    for cout, s, t, k in blocks:
        x = inv_res(x, cout, s, t, k)
    if head:
        x = conv(x, head, 1)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(classes)(x))


def build_mcunet():
    return mbconv_net(112, (16, 8), [(16, 2, 4, 7), (16, 1, 3, 3), (24, 2, 6, 5),
                                     (24, 1, 4, 3), (40, 2, 5, 7), (40, 1, 4, 5),
                                     (48, 1, 4, 3), (96, 2, 5, 5)])


def build_resnet8():
    inp = keras.Input((32, 32, 3), batch_size=1)
    x = conv(inp, 16, 3, 1, act="relu")
    for c, s in [(16, 1), (32, 2), (64, 2)]:
        y = conv(x, c, 3, s, act="relu")
        y = conv(y, c, 3, 1, act=None)
        if s != 1 or x.shape[-1] != c:
            x = layers.Conv2D(c, 1, strides=s, padding="same")(x)
        x = layers.ReLU()(layers.Add()([x, y]))
    x = layers.AveragePooling2D(8)(x)
    x = layers.Flatten()(x)
    return keras.Model(inp, layers.Dense(10)(x))


def build_dscnn():
    inp = keras.Input((49, 10, 1), batch_size=1)
    x = conv(inp, 64, (10, 4), 2, act="relu")
    for _ in range(4):
        x = dw(x, 3, 1, act="relu")
        x = conv(x, 64, 1, act="relu")
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(12)(x))


def build_effnet_lite():
    stages = [(24, 2, 2, 3), (40, 2, 2, 5), (80, 2, 2, 3)]
    blocks = [(c, st if i == 0 else 1, 6, k) for c, st, n, k in stages for i in range(n)]
    return mbconv_net(96, (32, 16), blocks, head=128)


REGISTRY = {
    "tile_mbv2_035_96_int8": (build_mbv2_035_96, True),
    "tile_mbv2_100_144_int8": (build_mbv2_100_144, True),
    "tile_mbv1_025_96_int8": (build_mbv1_025_96, True),
    "tile_mcunet_int8": (build_mcunet, True),
    "tile_resnet8_int8": (build_resnet8, True),
    "tile_dscnn_int8": (build_dscnn, True),
    "tile_mbv2_float32": (build_mbv2_float, False),
    "tile_effnet_lite_int8": (build_effnet_lite, True),
}


def randomize_bn(model, seed):
    rs = np.random.RandomState(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rs.uniform(0.5, 1.5, g.shape), rs.uniform(-0.3, 0.3, b.shape),
                               rs.uniform(-0.3, 0.3, m.shape), rs.uniform(0.5, 2.0, v.shape)])


def quiet(call):
    """Run ``call`` with the converter's chatter on fds 1 and 2 swallowed."""
    import tempfile

    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            return call()
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def check(data: bytes) -> str:
    """Runs in LiteRT (reference kernels) and TFLM; says whether their outputs agree.

    They need not: the tiling tests compare each runtime with itself (input vs tiled).
    """
    sys.path.insert(0, str(ROOT / "src"))
    from tflite_reorder import tflm
    from tflite_reorder.runtimes import random_inputs, run_litert

    for case in random_inputs(data, 2):
        want, got = run_litert(data, case), tflm.run_tflm(data, case)
        for a, b in zip(want, got, strict=True):
            if not np.array_equal(a, b):
                diff = np.abs(a.astype(np.float64) - b.astype(np.float64)).max()
                return f"TFLM and LiteRT reference outputs differ (max {diff:g})"
    return "TFLM and LiteRT reference outputs identical"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", choices=list(REGISTRY))
    args = ap.parse_args(argv)
    _tf()
    for i, (name, (build, int8)) in enumerate(REGISTRY.items()):
        if args.only and name not in args.only:
            continue
        keras.backend.clear_session()
        keras.utils.set_random_seed(100 + i)
        model = build()
        randomize_bn(model, 200 + i)
        data = quiet(lambda m=model, q=int8: convert(m, q))
        agree = check(data)
        (MODELS / f"{name}.tflite").write_bytes(data)
        print(f"models/{name}.tflite: {len(data)} bytes; {agree}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
