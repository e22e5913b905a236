"""Receptive-field arithmetic (``tiling.window``) and the padding rules, one op at a time.

Every rule is proved by running: a one-op model (``tests/oneop.py``) is tiled with bands,
patches and single-row tiles, so that tiles touch every border, and must give bit-identical
outputs under LiteRT's reference kernels and under TFLM, int8 and float32, on random and
structured inputs (constant, gradients, extremes).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import model_path
from oneop import one_op, structured_inputs

from tflite_reorder import tflm
from tflite_reorder.flatbuffer_io import load_model, serialize_model
from tflite_reorder.rewrites.edit import Editor
from tflite_reorder.runtimes import run_litert
from tflite_reorder.tiling import region as regions
from tflite_reorder.tiling.rewrite import CannotTile, Grid, tile_region
from tflite_reorder.tiling.spatial import NotTileable, describe
from tflite_reorder.tiling.window import AxisGeometry, Span, same_pad, split


def test_window_matches_brute_force():
    for k, s, d, size in itertools.product((1, 2, 3, 5), (1, 2, 3), (1, 2), (5, 8, 9)):
        pad = same_pad(size, k, s, d)
        g = AxisGeometry(k, s, d, pad)
        out = -(-size // s)
        for lo in range(out):
            for hi in range(lo + 1, out + 1):
                rows = {i * s - pad + j * d for i in range(lo, hi) for j in range(k)}
                w = g.window(Span(lo, hi))
                assert (w.lo, w.hi) == (min(rows), max(rows) + 1)
                assert g.out_rows(w.size) == hi - lo


def test_same_pad_is_tflite_rule():
    # TFLite: total = max((out - 1) * s + eff - in, 0), before = total // 2
    assert same_pad(72, 3, 2, 1) == 0  # odd total 1: all after
    assert same_pad(9, 3, 1, 1) == 1
    assert same_pad(9, 5, 1, 2) == 4
    assert same_pad(8, 2, 2, 1) == 0


def test_split_and_span():
    assert [s.size for s in split(10, 3)] == [4, 3, 3]
    assert split(5, 5)[-1] == Span(4, 5)
    with pytest.raises(ValueError):
        split(3, 4)
    assert Span(-2, 5).clip(4) == Span(0, 4)
    assert Span(-2, 5).pads(4) == (2, 1)


CASES = [
    ("CONV_2D", {"kernel": (3, 3)}),
    ("CONV_2D", {"kernel": (3, 3), "stride": (2, 2)}),
    ("CONV_2D", {"kernel": (5, 3), "stride": (2, 1), "dilation": (1, 2)}),
    ("CONV_2D", {"kernel": (2, 2), "stride": (2, 2), "padding": "VALID"}),
    ("DEPTHWISE_CONV_2D", {"kernel": (3, 3)}),
    ("DEPTHWISE_CONV_2D", {"kernel": (3, 3), "stride": (2, 2)}),
    ("DEPTHWISE_CONV_2D", {"kernel": (5, 5), "dilation": (2, 2)}),
    ("MAX_POOL_2D", {"kernel": (3, 3), "stride": (2, 2)}),
    ("MAX_POOL_2D", {"kernel": (3, 3), "stride": (1, 1)}),
    ("AVERAGE_POOL_2D", {"kernel": (2, 2), "stride": (2, 2), "padding": "VALID"}),
    ("AVERAGE_POOL_2D", {"kernel": (3, 3), "stride": (1, 1), "padding": "VALID"}),
    ("PAD", {"pads": ((1, 2), (2, 1))}),
    ("PAD", {"pads": ((0, 1), (0, 1))}),
]
# single rows (every row a border of some tile), and 2-D patches touching all four borders
GRIDS = [Grid(9, 1), Grid(3, 4)]


def _tiled(data: bytes, grid: Grid) -> bytes | None:
    m = load_model(data).model
    prof = regions.profile(m)
    (r,) = regions.regions(prof)
    if grid.rows > m.subgraphs[0].tensors[r.output].shape[1] or \
            grid.cols > m.subgraphs[0].tensors[r.output].shape[2]:
        return None
    try:
        tile_region(m, r, grid)
    except CannotTile:  # e.g. a tile of a PAD's output that is all padding
        return None
    return serialize_model(m)


@pytest.mark.parametrize("dtype", ["INT8", "FLOAT32"])
@pytest.mark.parametrize(("opcode", "params"), CASES,
                         ids=[f"{c}-{i}" for i, (c, _) in enumerate(CASES)])
def test_one_op_tiles_are_bit_exact(opcode, params, dtype):
    data = one_op(opcode, dtype, (9, 10), 3, **params)
    np_type = np.int8 if dtype == "INT8" else np.float32
    inputs = structured_inputs((1, 9, 10, 3), np_type)
    want = [run_litert(data, [x])[0] for x in inputs]
    want_t = [tflm.run_tflm(data, [x])[0] for x in inputs] if tflm.available() else None
    tried = 0
    for grid in GRIDS:
        tiled = _tiled(data, grid)
        if tiled is None:
            continue
        tried += 1
        ops = {Editor(load_model(tiled).model, 0).opcode(op)
               for op in load_model(tiled).model.subgraphs[0].operators}
        assert opcode in ops and "CONCATENATION" in ops
        for x, w in zip(inputs, want, strict=True):
            assert np.array_equal(run_litert(tiled, [x])[0], w), (grid, x.ravel()[:4])
        if want_t is not None:
            for x, w in zip(inputs, want_t, strict=True):
                assert np.array_equal(tflm.run_tflm(tiled, [x])[0], w), grid
    assert tried >= 1


def test_average_pool_same_at_border_is_not_tileable():
    data = one_op("AVERAGE_POOL_2D", "INT8", (9, 10), 3, kernel=(3, 3), stride=(1, 1))
    ed = Editor(load_model(data).model, 0)
    with pytest.raises(NotTileable, match="border"):
        describe(ed, ed.sg.operators[0])
    prof = regions.profile(ed.model)
    assert regions.regions(prof) == []


def test_an_op_touching_a_variable_tensor_is_not_tileable():
    """A variable feature map is not in the arena (a cut ignores it) and outlives the run:
    tiling the op that writes it crashed the tile emitter (fuzz seed 5102 case 2443, an
    inception activation marked variable)."""
    from tflite_reorder.tiling import tile_model

    m = load_model(model_path("inception_int8")).model
    ed = Editor(m, 0)
    v, op = next((v, op) for v, op in enumerate(ed.sg.operators)
                 if ed.opcode(op) == "CONV_2D")
    ed.t(ed.outputs(op)[0]).isVariable = True
    with pytest.raises(NotTileable, match="variable tensor"):
        describe(ed, op)
    prof = regions.profile(m)
    assert all(not r.start <= v < r.end for r in regions.regions(prof))
    tile_model(m)  # runs: no region holds it


def test_an_op_touching_a_stored_negative_dimension_is_not_tileable():
    """A feature map stored as [1, 16, 16, -1] (fuzz seed 6001 case 35901): shape inference
    repairs the graph's view, but the emitter crops by the stored shape and crashed."""
    from tflite_reorder.tiling import tile_model

    m = load_model(model_path("inception_int8")).model
    ed = Editor(m, 0)
    v, op = next((v, op) for v, op in enumerate(ed.sg.operators)
                 if ed.opcode(op) == "CONV_2D")
    out = ed.t(ed.outputs(op)[0])
    out.shape = np.array([*out.shape[:3], -1], np.int32)
    with pytest.raises(NotTileable, match="stored dimension of -1"):
        describe(ed, op)
    tile_model(m)  # runs: no region holds it
