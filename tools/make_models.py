#!/usr/bin/env python3
"""Build the test/benchmark TFLite models under ``models/``.

Usage::

    python tools/make_models.py                 # build every model
    python tools/make_models.py --only darts_int8 dilated_int8
    python tools/make_models.py --list

Every model is built deterministically (Keras session cleared and all seeds
fixed per model), converted with the TF Lite converter (mostly int8
full-integer quantisation, a few float32), written to ``models/<name>.tflite``
and then checked:

* it loads and runs in LiteRT with the reference kernels
  (``OpResolverType.BUILTIN_REF``) and in TFLM (``tflite_micro.runtime``);
* the TFLM output is compared with LiteRT's (bit-exact expected, except for
  models with SPACE_TO_BATCH_ND whose stored shapes lie, see DESIGN.md §1);
* the file is < 1 MB and model-specific properties hold (WHILE/IF present,
  hostile order gives identical outputs, dilated stored shape != true shape).

Any failure raises (non-zero exit).  ``models/README.md`` is regenerated at the
end from all ``models/*.tflite`` files known to this script.

Reading, the memory figures and the runtimes are the package's (``flatbuffer_io``,
``shapes.true_graph``, ``memory.simulate``, ``runtimes``, ``tflm``); only TensorFlow (for
building) and the byte-preserving operator permutation of the hostile model are this
script's own.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from wsgraph import ws_graph  # tools/ is on sys.path when run as a script

from tflite_reorder import tflm
from tflite_reorder.dtypes import type_name
from tflite_reorder.flatbuffer_io import load_model
from tflite_reorder.memory import simulate
from tflite_reorder.runtimes import litert, run_litert, structured_inputs
from tflite_reorder.shapes import true_graph
from tflite_reorder.tensors import stored_shape

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = ROOT / "models"
MAX_BYTES = 1 << 20
TFLM_ARENA = 4 * 1024 * 1024
N_REP = 8  # representative-dataset samples

# Imported lazily in main() so that --help / --list are fast.
tf = None
keras = None
layers = None


def _import_tf():
    global tf, keras, layers
    if tf is None:
        import keras as _keras
        import tensorflow as _tf

        _tf.get_logger().setLevel("ERROR")
        tf, keras, layers = _tf, _keras, _keras.layers


# ---------------------------------------------------------------------------
# Reading, measuring and running models: the package's own reader, memory model and
# runtimes (no TF needed)
# ---------------------------------------------------------------------------


def _graph(data: bytes):
    """The operator DAG with the shapes the kernels really use (``shapes.true_graph``)."""
    return true_graph(load_model(data).model)


def permute_operators_in_place(data: bytes, order: list[int], subgraph: int = 0) -> bytes:
    """Return a copy of ``data`` whose subgraph operator vector is permuted.

    ``new_ops[j] = old_ops[order[j]]``.  Only the offsets in the operators
    vector change; every other byte (and every buffer's alignment) is kept, which the
    package's writer (a full re-serialisation) would not do: the hostile model is the
    converter's file with nothing but its order changed.
    Operator tables are serialised before (i.e. at higher addresses than)
    their vector, so the unsigned relative offsets stay valid.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    buf = bytearray(data)
    model = schema.Model.GetRootAs(buf, 0)
    sg = model.Subgraphs(subgraph)
    o = flatbuffers.number_types.UOffsetTFlags.py_type(sg._tab.Offset(10))  # operators
    assert o != 0
    n = sg._tab.VectorLen(o)
    start = sg._tab.Vector(o)
    assert sorted(order) == list(range(n))
    targets = []
    for j in range(n):
        pos = start + 4 * j
        targets.append(pos + int.from_bytes(buf[pos : pos + 4], "little"))
    for j in range(n):
        pos = start + 4 * j
        rel = targets[order[j]] - pos
        assert rel > 0
        buf[pos : pos + 4] = rel.to_bytes(4, "little")
    return bytes(buf)


def stored_order_peak(data: bytes, order: list[int] | None = None) -> int:
    """Peak live arena bytes of subgraph 0 in ``order`` (default: stored), TFLM's lifetimes
    (``memory.simulate``, no in-place sharing), true shapes."""
    graph = _graph(data)
    orders = graph.stored_orders()
    if order is not None:
        orders[0] = order
    return simulate(graph, orders, inplace=False).lower_bound


def topo_levels(data: bytes, subgraph: int = 0) -> list[int]:
    """Depth of each operator (0 = depends on no other operator), from the graph's edges."""
    sg = _graph(data).subgraphs[subgraph]
    level: list[int] = []
    for v, preds in enumerate(sg.preds):
        assert all(u < v for u in preds), "stored order is not topological"
        level.append(max((level[u] + 1 for u in preds), default=0))
    return level


def tflm_arena(data: bytes) -> dict:
    """TFLM's ``print_allocations`` for the stored order in a generous arena."""
    a = tflm.measure_arena(data, TFLM_ARENA)
    return {"total": a.total, "head": a.head, "tail": a.tail}


# ---------------------------------------------------------------------------
# Conversion
# ---------------------------------------------------------------------------


def rep_dataset(shapes: list[tuple[int, ...]]):
    def gen():
        for i in range(N_REP):
            rs = np.random.RandomState(i)
            yield [rs.uniform(-1.0, 1.0, size=s).astype(np.float32) for s in shapes]

    return gen


def _set_int8(conv, shapes):
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep_dataset(shapes)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8


def convert_keras(model, int8: bool) -> bytes:
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        shapes = [(1,) + tuple(inp.shape[1:]) for inp in model.inputs]
        _set_int8(conv, shapes)
    return quiet_convert(conv)


def quiet_convert(conv) -> bytes:
    """conv.convert() with the converter's/Keras' chatter captured (shown on error)."""
    import warnings

    err = None
    with tflm.captured() as log, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            data = conv.convert()
        except Exception as e:  # noqa: BLE001 - re-raised below with the log
            err = e
    if err is not None:
        raise RuntimeError(
            f"conversion failed: {err}\n--- converter log ---\n{log.text[-4000:]}"
        ) from err
    return data


def seed_all(seed: int):
    keras.backend.clear_session()  # deterministic layer names
    keras.utils.set_random_seed(seed)
    tf.random.set_seed(seed)
    np.random.seed(seed)


def randomize_bn(model, seed: int):
    """Give BatchNorm layers non-trivial statistics (so folding is visible)."""
    rs = np.random.RandomState(seed + 1000)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            w = layer.get_weights()  # gamma, beta, mean, var (if center/scale)
            new = []
            for arr, kind in zip(w, ("gamma", "beta", "mean", "var")[-len(w) :], strict=True):
                if kind == "gamma":
                    new.append(rs.uniform(0.5, 1.5, arr.shape).astype(arr.dtype))
                elif kind == "var":
                    new.append(rs.uniform(0.5, 2.0, arr.shape).astype(arr.dtype))
                else:
                    new.append(rs.uniform(-0.3, 0.3, arr.shape).astype(arr.dtype))
            layer.set_weights(new)


# ---------------------------------------------------------------------------
# Layer shorthands
# ---------------------------------------------------------------------------


def conv_bn(x, c, k=1, s=1, act="relu", d=1):
    x = layers.Conv2D(c, k, strides=s, padding="same", dilation_rate=d, use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    if act == "relu":
        x = layers.ReLU()(x)
    elif act == "relu6":
        x = layers.ReLU(6.0)(x)
    return x


def dw_bn(x, k=3, s=1, act="relu", d=1):
    x = layers.DepthwiseConv2D(k, strides=s, padding="same", dilation_rate=d, use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    if act == "relu":
        x = layers.ReLU()(x)
    elif act == "relu6":
        x = layers.ReLU(6.0)(x)
    return x


def classifier(x, classes=10):
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(classes)(x)
    return layers.Softmax()(x)


# ---------------------------------------------------------------------------
# Model builders (each returns a Keras model; see REGISTRY for flags)
# ---------------------------------------------------------------------------


def build_mobilenet():
    """MobileNetV2-style chain with inverted-residual ADDs."""
    inp = keras.Input((96, 96, 3))
    x = conv_bn(inp, 16, 3, 2, "relu6")  # 48x48x16
    x = dw_bn(x, 3, 1, "relu6")
    x = conv_bn(x, 8, 1, 1, None)  # 48x48x8

    def inv_res(x, cin, cout, s, t=4):
        y = conv_bn(x, cin * t, 1, 1, "relu6")
        y = dw_bn(y, 3, s, "relu6")
        y = conv_bn(y, cout, 1, 1, None)
        if s == 1 and cin == cout:
            y = layers.Add()([x, y])
        return y

    cfg = [  # cin, cout, stride
        (8, 12, 2),
        (12, 12, 1),
        (12, 16, 2),
        (16, 16, 1),
        (16, 16, 1),
        (16, 24, 2),
        (24, 24, 1),
        (24, 24, 1),
        (24, 32, 1),
        (32, 32, 1),
        (32, 48, 2),
        (48, 48, 1),
    ]
    for cin, cout, s in cfg:
        x = inv_res(x, cin, cout, s, t=4 if cin < 32 else 3)
    x = conv_bn(x, 64, 1, 1, "relu6")
    return keras.Model(inp, classifier(x), name="mobilenet")


def randwire_stage(x, n_nodes, c, seed, stage_idx):
    edges = ws_graph(n_nodes, 4, 0.75, seed + 17 * stage_idx)
    preds = {i: [] for i in range(n_nodes)}
    succs = {i: [] for i in range(n_nodes)}
    for a, b in edges:
        preds[b].append(a)
        succs[a].append(b)
    relu_cache = {}

    def relu_of(key, t):
        if key not in relu_cache:
            relu_cache[key] = layers.ReLU()(t)
        return relu_cache[key]

    outs = {}
    for v in range(n_nodes):
        if not preds[v]:
            h = relu_of("in", x)
            stride = 2
        elif len(preds[v]) == 1:
            h = relu_of(preds[v][0], outs[preds[v][0]])
            stride = 1
        else:
            h = outs[preds[v][0]]
            for u in preds[v][1:]:
                h = layers.Add()([h, outs[u]])
            h = layers.ReLU()(h)
            stride = 1
        h = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(h)
        h = layers.Conv2D(c, 1, use_bias=False)(h)
        h = layers.BatchNormalization()(h)
        outs[v] = h
    sinks = [v for v in range(n_nodes) if not succs[v]]
    y = outs[sinks[0]]
    for v in sinks[1:]:
        y = layers.Add()([y, outs[v]])
    if len(sinks) > 1:
        y = layers.Rescaling(1.0 / len(sinks))(y)
    return y


def build_randwire(n_nodes: list[int], chans: list[int], seed: int, hw=96):
    inp = keras.Input((hw, hw, 3))
    x = conv_bn(inp, 8, 3, 2, None)  # hw/2 x 8
    for i, (n, c) in enumerate(zip(n_nodes, chans, strict=True)):
        x = randwire_stage(x, n, c, seed, i)
    x = layers.ReLU()(x)
    x = conv_bn(x, 64, 1, 1, "relu")
    return keras.Model(inp, classifier(x), name="randwire")


# --- DARTS ------------------------------------------------------------------

DARTS_NORMAL = [
    ("sep_conv_3x3", 0),
    ("skip_connect", 1),
    ("sep_conv_3x3", 1),
    ("dil_conv_3x3", 0),
    ("avg_pool_3x3", 0),
    ("sep_conv_3x3", 2),
    ("dil_conv_3x3", 2),
    ("skip_connect", 3),
]
DARTS_REDUCE = [
    ("max_pool_3x3", 0),
    ("sep_conv_3x3", 1),
    ("avg_pool_3x3", 1),
    ("skip_connect", 0),
    ("dil_conv_3x3", 2),
    ("max_pool_3x3", 1),
    ("skip_connect", 2),
    ("sep_conv_3x3", 3),
]


def darts_factorized_reduce(x, c):
    x = layers.ReLU()(x)
    a = layers.Conv2D(c // 2, 1, strides=2, use_bias=False)(x)
    b = layers.Cropping2D(((1, 0), (1, 0)))(x)
    b = layers.Conv2D(c - c // 2, 1, strides=2, use_bias=False)(b)
    y = layers.Concatenate()([a, b])
    return layers.BatchNormalization()(y)


def darts_relu_conv_bn(x, c):
    x = layers.ReLU()(x)
    x = layers.Conv2D(c, 1, use_bias=False)(x)
    return layers.BatchNormalization()(x)


def darts_op(name, x, c, stride):
    if name == "sep_conv_3x3":
        for s in (stride, 1):
            x = layers.ReLU()(x)
            x = layers.DepthwiseConv2D(3, strides=s, padding="same", use_bias=False)(x)
            x = layers.Conv2D(c, 1, use_bias=False)(x)
            x = layers.BatchNormalization()(x)
        return x
    if name == "dil_conv_3x3":
        assert stride == 1
        x = layers.ReLU()(x)
        x = layers.DepthwiseConv2D(3, padding="same", dilation_rate=2, use_bias=False)(x)
        x = layers.Conv2D(c, 1, use_bias=False)(x)
        return layers.BatchNormalization()(x)
    if name == "max_pool_3x3":
        return layers.MaxPooling2D(3, strides=stride, padding="same")(x)
    if name == "avg_pool_3x3":
        return layers.AveragePooling2D(3, strides=stride, padding="same")(x)
    if name == "skip_connect":
        return x if stride == 1 else darts_factorized_reduce(x, c)
    raise ValueError(name)


def darts_cell(s0, s1, c, reduction, reduction_prev):
    s0 = darts_factorized_reduce(s0, c) if reduction_prev else darts_relu_conv_bn(s0, c)
    s1 = darts_relu_conv_bn(s1, c)
    geno = DARTS_REDUCE if reduction else DARTS_NORMAL
    states = [s0, s1]
    for i in range(4):
        hs = []
        for name, j in geno[2 * i : 2 * i + 2]:
            stride = 2 if reduction and j < 2 else 1
            hs.append(darts_op(name, states[j], c, stride))
        states.append(layers.Add()(hs))
    return layers.Concatenate()(states[2:])


def build_darts(layout: str, c: int, hw: int):
    inp = keras.Input((hw, hw, 3))
    s = conv_bn(inp, 3 * c, 3, 1, None)
    s0 = s1 = s
    red_prev = False
    for ch in layout:
        red = ch == "R"
        if red:
            c *= 2
        s0, s1 = s1, darts_cell(s0, s1, c, red, red_prev)
        red_prev = red
    return keras.Model(inp, classifier(s1), name="darts")


# --- NASNet -------------------------------------------------------------------


def build_nasnet():
    from keras.src.applications.nasnet import NASNet

    return NASNet(
        input_shape=(96, 96, 3),
        penultimate_filters=192,
        num_blocks=4,
        stem_block_filters=16,
        skip_reduction=False,
        filter_multiplier=2,
        include_top=True,
        weights=None,
        classes=10,
    )


def build_nasnet_cells():
    from keras.src.applications import nasnet as kn

    inp = keras.Input((48, 48, 3))
    x = layers.Conv2D(16, 3, strides=2, padding="valid", use_bias=False, name="stem_conv1")(inp)
    x = layers.BatchNormalization(momentum=0.9997, epsilon=1e-3, name="stem_bn1")(x)
    p = None
    x, p = kn._reduction_a_cell(x, p, 8, block_id="stem_1")  # 12x12
    x, p = kn._normal_a_cell(x, p, 8, block_id="0")
    x = layers.ReLU()(x)
    return keras.Model(inp, classifier(x), name="nasnet_cells")


# --- SwiftNet-like --------------------------------------------------------------


def build_swiftnet():
    """SwiftNet-like cells: four parallel branches (3x3 conv, expanded 3x3 / 5x5
    depthwise, 1x1) over the two previous cell outputs, joined pairwise by ADD,
    then CONCAT -> 1x1 conv + residual ADD.  Every cell also reads the output of
    the cell before the previous one (skip spanning cells)."""
    inp = keras.Input((96, 96, 3))
    x = conv_bn(inp, 8, 3, 2, "relu")  # 48x48x8
    x = dw_bn(x, 3, 2, "relu")  # 24x24x8
    prev, cur = x, x

    def cell(pp, p, c, stride):
        if stride == 2:
            p = layers.AveragePooling2D(2)(p)
        while pp.shape[1] > p.shape[1]:
            pp = layers.AveragePooling2D(2)(pp)
        a = conv_bn(p, c, 1)
        b = conv_bn(pp, c, 1)
        b1 = conv_bn(a, c, 3)
        b2 = conv_bn(dw_bn(conv_bn(a, 3 * c, 1), 3, 1, "relu"), c, 1, 1, None)
        b3 = conv_bn(dw_bn(conv_bn(b, 3 * c, 1), 5, 1, "relu"), c, 1, 1, None)
        b4 = conv_bn(b, c, 1)
        j1 = layers.Add()([b1, b3])
        j2 = layers.Add()([b2, b4])
        cat = layers.Concatenate()([j1, j2])
        out = conv_bn(cat, c, 1, 1, None)
        out = layers.Add()([out, a])
        return layers.ReLU()(out)

    for c, s in [(12, 1), (12, 1), (16, 2), (16, 1), (24, 2), (24, 1)]:
        prev, cur = cur, cell(prev, cur, c, s)
    return keras.Model(inp, classifier(cur, 2), name="swiftnet")


def build_densenet():
    inp = keras.Input((64, 64, 3))
    x = conv_bn(inp, 16, 3, 2, "relu")  # 32x32x16
    g = 8

    def dense_block(x, n):
        feats = [x]
        for _ in range(n):
            h = feats[0] if len(feats) == 1 else layers.Concatenate()(feats)
            h = layers.BatchNormalization()(h)
            h = layers.ReLU()(h)
            h = layers.Conv2D(2 * g, 1, use_bias=False)(h)
            h = layers.BatchNormalization()(h)
            h = layers.ReLU()(h)
            h = layers.Conv2D(g, 3, padding="same", use_bias=False)(h)
            feats.append(h)
        return layers.Concatenate()(feats)

    x = dense_block(x, 5)  # 32x32x56
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(24, 1, use_bias=False)(x)
    x = layers.AveragePooling2D(2)(x)  # 16x16x24
    x = dense_block(x, 5)  # 16x16x64
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    return keras.Model(inp, classifier(x), name="densenet")


def build_inception():
    """GoogLeNet-style modules; the 1x1 reductions are wide (as in GoogLeNet's
    3x3-reduce), so the branch order changes the peak."""
    inp = keras.Input((64, 64, 3))
    x = conv_bn(inp, 8, 3, 2, "relu")  # 32x32x8

    def module(x, c1, c3r, c3, c5r, c5, cp):
        b1 = conv_bn(x, c1, 1)
        b2 = conv_bn(conv_bn(x, c3r, 1), c3, 3)
        b3 = conv_bn(conv_bn(conv_bn(x, c5r, 1), c5, 3), c5, 3)
        b4 = conv_bn(layers.MaxPooling2D(3, strides=1, padding="same")(x), cp, 1)
        return layers.Concatenate()([b1, b2, b3, b4])

    x = module(x, 4, 24, 8, 16, 4, 4)  # 32x32x20
    x = module(x, 8, 32, 8, 16, 8, 4)  # 32x32x28
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)  # 16x16
    x = module(x, 8, 48, 16, 24, 8, 8)  # 16x16x40
    x = module(x, 12, 48, 16, 24, 12, 8)  # 16x16x48
    return keras.Model(inp, classifier(x), name="inception")


def build_concat_conv(hw=64):
    """CONCAT of branches immediately consumed by a 1x1 CONV_2D (x4 cells)."""
    inp = keras.Input((hw, hw, 3))
    x = conv_bn(inp, 16, 3, 2, "relu")  # hw/2 x16

    def cell(x, c):
        b1 = conv_bn(x, c // 2, 1)
        b2 = conv_bn(x, c // 2, 3)
        b3 = conv_bn(dw_bn(x, 3, 1, None), c // 2, 1)
        b4 = layers.MaxPooling2D(3, strides=1, padding="same")(x)
        cat = layers.Concatenate()([b1, b2, b3, b4])
        return conv_bn(cat, c, 1)  # the 1x1 conv on the concat

    x = cell(x, 16)
    x = cell(x, 16)
    x = layers.MaxPooling2D(2)(x)
    x = cell(x, 24)
    x = cell(x, 24)
    return keras.Model(inp, classifier(x), name="concat_conv")


def build_concat_dw():
    """CONCAT of branches consumed by a DEPTHWISE_CONV_2D (then 1x1 CONV_2D)."""
    inp = keras.Input((64, 64, 3))
    x = conv_bn(inp, 16, 3, 2, "relu")  # 32x32x16

    def cell(x, c):
        b1 = conv_bn(x, c // 2, 1)
        b2 = conv_bn(x, c // 2, 3)
        b3 = conv_bn(dw_bn(x, 3, 1, None), c // 2, 1)
        cat = layers.Concatenate()([b1, b2, b3])
        y = dw_bn(cat, 3, 1, "relu")  # DW on the concat
        return conv_bn(y, c, 1)

    x = cell(x, 16)
    x = layers.MaxPooling2D(2)(x)
    x = cell(x, 24)
    x = cell(x, 24)
    return keras.Model(inp, classifier(x), name="concat_dw")


def build_multi_output():
    """SPLIT, SPLIT_V and UNPACK with outputs feeding different branches;
    two model outputs, one of which is also consumed inside the graph."""
    ops = keras.ops
    inp = keras.Input((48, 48, 3))
    x = conv_bn(inp, 24, 3, 2, "relu")  # 24x24x24
    s0, s1, s2 = ops.split(x, 3, axis=-1)  # SPLIT (3 x 8)
    a = conv_bn(s0, 8, 3)
    b = dw_bn(s1, 3, 1, "relu")
    c = layers.MaxPooling2D(3, strides=1, padding="same")(s2)
    y = layers.Concatenate()([a, b, c])  # 24
    y = conv_bn(y, 24, 1, 1, None)
    out1 = layers.ReLU(name="feature_out")(y)  # model output 1 ...
    v0, v1, v2 = ops.split(out1, [4, 16], axis=-1)  # ... also used: SPLIT_V 4/12/8
    v0 = conv_bn(v0, 8, 3)
    v1 = dw_bn(v1, 3, 1, "relu")
    v1 = conv_bn(v1, 8, 1)
    v2 = conv_bn(v2, 8, 1)
    z = layers.Concatenate()([v0, v1, v2])  # 24
    z = layers.Reshape((24, 24, 2, 12))(z)
    u0, u1 = ops.unstack(z, num=2, axis=3)  # UNPACK -> 2 x [1,24,24,12]
    u0 = conv_bn(u0, 12, 3)
    u1 = dw_bn(u1, 3, 1, "relu")
    w = layers.Add()([u0, u1])
    w = layers.MaxPooling2D(2)(w)
    out2 = classifier(w, 4)
    return keras.Model(inp, [out1, out2], name="multi_output")


def build_dilated():
    inp = keras.Input((32, 32, 3))
    x = conv_bn(inp, 8, 1, 1, "relu")
    x = dw_bn(x, 3, 1, "relu", d=2)  # dilated depthwise
    x = conv_bn(x, 8, 3, 1, "relu", d=2)  # dilated conv
    return keras.Model(inp, x, name="dilated")


# --- control flow (tf.function, float32) ----------------------------------------


def build_while_tflite() -> bytes:
    """WHILE (loop count = 2nd model input) and IF, with parallel branches
    around them.  Built from a tf.function so control flow is kept."""
    rs = np.random.RandomState(14)

    def w(*shape):
        return tf.constant(rs.normal(0, 0.3, size=shape).astype(np.float32))

    w_a, w_b, w_c = w(3, 3, 4, 8), w(1, 1, 4, 8), w(3, 3, 16, 16)
    w_body, b_body = w(3, 3, 16, 16), w(16)
    w_t, w_f = w(1, 1, 16, 16), w(3, 3, 16, 16)
    w_o1, w_o2, w_o3 = w(1, 1, 16, 8), w(3, 3, 16, 8), w(1, 1, 16, 8)

    def conv(x, k):
        return tf.nn.conv2d(x, k, 1, "SAME")

    @tf.function(
        input_signature=[tf.TensorSpec([1, 32, 32, 4], tf.float32), tf.TensorSpec([1], tf.int32)]
    )
    def f(x, n):
        a = tf.nn.relu(conv(x, w_a))
        b = tf.nn.relu(conv(x, w_b))
        h = tf.concat([a, b], -1)  # 32x32x16
        h = tf.nn.max_pool2d(h, 2, 2, "SAME")  # 16x16x16
        side = tf.nn.relu(conv(h, w_c))
        limit = n[0]

        def cond(i, y):
            return i < limit

        def body(i, y):
            y = tf.nn.relu(conv(y, w_body) + b_body) + 0.5 * y
            return i + 1, y

        _, y = tf.while_loop(cond, body, [tf.constant(0), h])
        y = tf.cond(limit > 2, lambda: tf.nn.relu(conv(y, w_t)), lambda: conv(y, w_f) * 0.5)
        o1 = tf.nn.relu(conv(y, w_o1))
        o2 = tf.nn.relu(conv(side, w_o2))
        o3 = conv(y + side, w_o3)
        return tf.concat([o1, o2, o3], -1)

    conv_ = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    conv_.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return quiet_convert(conv_)


# ---------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------


@dataclass
class Spec:
    name: str
    what: str
    build: Callable[[], object]  # Keras model, or bytes when raw=True
    int8: bool = True
    raw: bool = False
    seed: int = 0
    randomize_bn: bool = True
    expect_bad_shapes: bool = False  # SPACE_TO_BATCH_ND stored-shape bug expected
    post: Callable[[bytes], None] | None = None  # extra checks


def build_hostile() -> bytes:
    src = MODELS_DIR / "inception_int8.tflite"
    if not src.exists():
        raise RuntimeError("hostile_order_int8 needs models/inception_int8.tflite (build it first)")
    data = src.read_bytes()
    lv = topo_levels(data)
    order = sorted(range(len(lv)), key=lambda i: (lv[i], i))  # breadth-first (level) order
    out = permute_operators_in_place(data, order)
    # checks: still topological, much higher peak, identical LiteRT outputs
    topo_levels(out)
    p_orig = stored_order_peak(data)
    p_host = stored_order_peak(data, order)
    if p_host < 1.15 * p_orig:
        raise RuntimeError(f"level order is not hostile enough: peak {p_host} vs {p_orig}")
    for seed in range(3):
        ins = structured_inputs(data, 100 + seed)
        a, b = run_litert(data, ins), run_litert(out, ins)
        for x, y in zip(a, b, strict=True):
            if not np.array_equal(x, y):
                raise RuntimeError("hostile order changed LiteRT outputs")
    print(
        f"    hostile order: {sum(1 for i, j in enumerate(order) if i != j)} of {len(order)} "
        f"ops moved; "
        f"live peak {p_host} B vs {p_orig} B in the converter's order; "
        f"LiteRT outputs identical on 3 random inputs"
    )
    return out


def check_dilated(data: bytes):
    """Stored shape of the SPACE_TO_BATCH_ND output vs the true (LiteRT) shape."""
    sg = load_model(data).model.subgraphs[0]
    graph = _graph(data).subgraphs[0]
    true = {d["index"]: list(d["shape"]) for d in litert(data).get_tensor_details()}
    n_bad = 0
    for op in graph.ops:
        if op.opcode in ("SPACE_TO_BATCH_ND", "DEPTHWISE_CONV_2D", "CONV_2D", "BATCH_TO_SPACE_ND"):
            for t in op.outputs:
                stored = list(stored_shape(sg.tensors[t]))
                if stored != true.get(t):
                    n_bad += 1
                    print(
                        f"    {op.opcode} output tensor {t}: stored shape {stored}, "
                        f"LiteRT allocate_tensors() shape {[int(v) for v in true.get(t, [])]}"
                    )
    if n_bad == 0:
        raise RuntimeError("expected a stored shape != true shape (DESIGN §1) but found none")


def check_control_flow(data: bytes):
    graph = _graph(data)
    all_ops = {op.opcode for sg in graph.subgraphs for op in sg.ops}
    if len(graph.subgraphs) < 2 or not ({"WHILE", "IF"} & all_ops):
        raise RuntimeError(f"control flow lost: subgraphs={len(graph.subgraphs)}, ops={all_ops}")
    # the loop count is an input: different counts must give different outputs
    base = structured_inputs(data, 7)
    outs = []
    for n in (1, 3):
        ins = [x if x.dtype != np.int32 else np.full(x.shape, n, np.int32) for x in base]
        outs.append(run_litert(data, ins)[0])
    if np.array_equal(outs[0], outs[1]):
        raise RuntimeError("loop count input has no effect")


REGISTRY: list[Spec] = [
    Spec("mobilenet_int8", "MobileNetV2-style chain, inverted-residual ADDs", build_mobilenet),
    Spec(
        "randwire_ws_int8",
        "RandWire, 2 WS(32,4,0.75) stages, ADD aggregation",
        lambda: build_randwire([32, 32], [16, 32], seed=1),
        seed=1,
    ),
    Spec(
        "randwire_small_int8",
        "RandWire, 2 WS(8,4,0.75) stages",
        lambda: build_randwire([8, 8], [16, 32], seed=2),
        seed=2,
    ),
    Spec(
        "darts_int8",
        "DARTS cells NNRNNR; dil_conv -> SPACE_TO_BATCH_ND (stored-shape bug)",
        lambda: build_darts("NNRNNR", 8, 32),
        expect_bad_shapes=True,
        seed=3,
    ),
    Spec(
        "darts_float32",
        "DARTS cells NRN, float32; dil_conv (stored-shape bug)",
        lambda: build_darts("NRN", 8, 32),
        int8=False,
        expect_bad_shapes=True,
        seed=4,
    ),
    Spec(
        "nasnet_int8",
        "NASNet-Mobile topology (keras NASNet, 4 blocks, 96x96, 192 filters)",
        build_nasnet,
        seed=5,
    ),
    Spec(
        "nasnet_cells_int8",
        "NASNet (keras cells): reduction_a + normal_a cell",
        build_nasnet_cells,
        seed=6,
    ),
    Spec(
        "swiftnet_int8",
        "SwiftNet-like cells: parallel conv/dw branches, ADD+CONCAT, cross-cell skips",
        build_swiftnet,
        seed=7,
    ),
    Spec(
        "densenet_int8", "DenseNet: 2 dense blocks x5 layers + transition", build_densenet, seed=8
    ),
    Spec(
        "inception_int8",
        "Inception modules x4 (1x1, 1x1-3x3, 1x1-3x3-3x3, pool-1x1)",
        build_inception,
        seed=9,
    ),
    Spec(
        "concat_conv_int8",
        "4 cells CONCAT -> 1x1 CONV_2D (partial-conv rewrite)",
        build_concat_conv,
        seed=10,
    ),
    Spec(
        "concat_conv_float32",
        "4 cells CONCAT -> 1x1 CONV_2D, float32",
        build_concat_conv,
        int8=False,
        seed=10,
    ),
    Spec(
        "concat_dw_int8",
        "3 cells CONCAT -> DEPTHWISE_CONV_2D -> 1x1 CONV_2D",
        build_concat_dw,
        seed=11,
    ),
    Spec(
        "multi_output_int8",
        "SPLIT, SPLIT_V, UNPACK; 2 model outputs, one also used inside",
        build_multi_output,
        seed=12,
    ),
    Spec(
        "while_float32",
        "WHILE (count = input 2) + IF, own subgraphs; parallel branches around",
        build_while_tflite,
        int8=False,
        raw=True,
        seed=13,
        post=check_control_flow,
    ),
    Spec(
        "hostile_order_int8",
        "inception_int8 with breadth-first (level) operator order",
        build_hostile,
        raw=True,
        seed=9,
    ),
    Spec(
        "dilated_int8",
        "dilated DW + dilated conv: SPACE_TO_BATCH_ND stored shape [1,..] vs true [4,..]",
        build_dilated,
        expect_bad_shapes=True,
        seed=15,
        post=check_dilated,
    ),
]
BY_NAME = {s.name: s for s in REGISTRY}


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------


def verify(spec: Spec, data: bytes) -> dict:
    if len(data) >= MAX_BYTES:
        raise RuntimeError(f"{spec.name}: {len(data)} bytes >= 1 MB")
    it = litert(data)
    in_det, out_det = it.get_input_details(), it.get_output_details()
    want = np.int8 if spec.int8 else np.float32
    for d in in_det + out_det:
        if d["dtype"] not in (want, np.int32):
            raise RuntimeError(f"{spec.name}: unexpected io dtype {d['dtype']}")
    ops0 = {op.opcode for sg in _graph(data).subgraphs for op in sg.ops}
    if spec.int8 and ({"QUANTIZE", "DEQUANTIZE"} & ops0):
        print(f"    note: contains {sorted({'QUANTIZE', 'DEQUANTIZE'} & ops0)}")
    max_diff = 0
    for seed in range(2):
        ins = structured_inputs(data, seed)
        ref = run_litert(data, ins)
        got = tflm.run_tflm(data, ins, arena_size=TFLM_ARENA)
        for r, g in zip(ref, got, strict=True):
            if r.shape != g.shape:
                g = g.reshape(r.shape)
            max_diff = max(
                max_diff,
                int(np.max(np.abs(r.astype(np.float64) - g.astype(np.float64))))
                if spec.int8
                else 0,
            )
            if not spec.int8:
                max_diff = max(max_diff, float(np.max(np.abs(r - g))))
    arena = tflm_arena(data)
    if max_diff != 0 and not spec.expect_bad_shapes:
        raise RuntimeError(f"{spec.name}: TFLM differs from LiteRT BUILTIN_REF by {max_diff}")
    if spec.post:
        spec.post(data)
    return dict(max_diff=max_diff, arena=arena)


def build_one(spec: Spec) -> None:
    t0 = time.time()
    print(f"[{spec.name}] building ...", flush=True)
    seed_all(spec.seed)
    if spec.raw:
        data = spec.build()
    else:
        model = spec.build()
        if spec.randomize_bn:
            randomize_bn(model, spec.seed)
        data = convert_keras(model, spec.int8)
    MODELS_DIR.mkdir(exist_ok=True)
    path = MODELS_DIR / f"{spec.name}.tflite"
    path.write_bytes(data)
    res = verify(spec, data)
    nops = [len(sg.ops) for sg in _graph(data).subgraphs]
    diff = (
        f", TFLM-vs-LiteRT max diff {res['max_diff']} (stored-shape bug)" if res["max_diff"] else ""
    )
    print(
        f"[{spec.name}] ok: {len(data)} B, ops {nops}, arena {res['arena']}{diff}, "
        f"{time.time() - t0:.1f}s",
        flush=True,
    )


def describe_file(spec: Spec, path: Path) -> dict:
    data = path.read_bytes()
    model = load_model(data).model
    graph = _graph(data)
    sg0 = model.subgraphs[0]
    ins = []
    for t in sg0.inputs:
        tt = sg0.tensors[int(t)]
        shape = ",".join(str(d) for d in stored_shape(tt))
        ins.append(f"{type_name(tt.type).lower()}[{shape}]")
    arena = tflm_arena(data)
    peak = stored_order_peak(data) if len(graph.subgraphs) == 1 else None
    return dict(
        peak=peak,
        name=spec.name,
        dtype="int8" if spec.int8 else "float32",
        bytes=len(data),
        ops=graph.n_ops,
        ops_detail="+".join(str(len(sg.ops)) for sg in graph.subgraphs),
        subgraphs=len(graph.subgraphs),
        inputs=", ".join(ins),
        arena=arena,
        what=spec.what,
    )


def write_readme() -> list[dict]:
    rows = []
    for spec in REGISTRY:
        p = MODELS_DIR / f"{spec.name}.tflite"
        if p.exists():
            rows.append(describe_file(spec, p))
    header = """\
# Test models

Generated by `python tools/make_models.py` (deterministic; do not edit by hand).
Only the models listed here come from this script; other files in `models/` belong to
other tools.
Ops = operators over all subgraphs (per-subgraph counts in parentheses).
Live peak = max over operators of live non-constant tensor bytes (16-byte rounded, true
shapes from LiteRT) in the stored order, TFLM lifetimes (DESIGN.md §1); single-subgraph
models only.
TFLM head/tail = `Arena allocation head|tail` from `print_allocations()` with the stored
order (TFLM's greedy planner). Models with SPACE_TO_BATCH_ND (darts_*, dilated_int8) store
too-small shapes (DESIGN.md §1): TFLM plans with those, so its head/outputs for them are
not trustworthy.

| model | dtype | bytes | ops | subgraphs | input shape | live peak | TFLM head | TFLM tail \
| exercises |
|---|---|---:|---:|---:|---|---:|---:|---:|---|"""
    lines = header.split("\n")  # (the backslash above continues the table header line)
    for r in rows:
        ops = f"{r['ops']}" + (f" ({r['ops_detail']})" if r["subgraphs"] > 1 else "")
        peak = r["peak"] if r["peak"] is not None else "n/a"
        cells = [f"`{r['name']}`", r["dtype"], r["bytes"], ops, r["subgraphs"], r["inputs"], peak]
        cells += [r["arena"]["head"], r["arena"]["tail"], r["what"]]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    (MODELS_DIR / "README.md").write_text("\n".join(lines) + "\n")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", metavar="NAME", help="build only these models")
    ap.add_argument("--list", action="store_true", help="list model names and exit")
    ap.add_argument("--no-readme", action="store_true", help="do not regenerate models/README.md")
    args = ap.parse_args(argv)
    if args.list:
        for s in REGISTRY:
            print(f"{s.name:22s} {s.what}")
        return 0
    names = args.only or [s.name for s in REGISTRY]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        ap.error(f"unknown model(s): {unknown}; known: {list(BY_NAME)}")
    _import_tf()
    t0 = time.time()
    failed = []
    for spec in REGISTRY:  # registry order (hostile_order needs inception first)
        if spec.name not in names:
            continue
        try:
            build_one(spec)
        except Exception as e:  # noqa: BLE001
            failed.append(spec.name)
            print(f"[{spec.name}] FAILED: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
    if not args.no_readme:
        rows = write_readme()
        print(
            f"\n{'model':22s} {'dtype':7s} {'bytes':>7s} {'ops':>11s} {'sg':>2s} {'peak':>7s} "
            f"{'head':>7s} {'tail':>7s}"
        )
        for r in rows:
            pk = r["peak"] if r["peak"] is not None else "n/a"
            print(
                f"{r['name']:22s} {r['dtype']:7s} {r['bytes']:7d} {r['ops_detail']:>11s} "
                f"{r['subgraphs']:2d} {pk:>7} {r['arena']['head']:7d} {r['arena']['tail']:7d}"
            )
    print(f"total {time.time() - t0:.0f}s")
    if failed:
        print(f"FAILED: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
