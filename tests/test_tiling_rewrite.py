"""The tiling rewrite on whole networks (``tiling.rewrite``, ``tiling.region``, ``tiling.cost``).

Every tiling model in ``models/`` (``tools/make_tiling_models.py``: MobileNetV1/V2,
EfficientNet-Lite, MCUNet-, ResNet-8-like int8 and a float32 MobileNetV2) is tiled, several
regions at once, and must give bit-identical outputs to the input under LiteRT's reference
kernels and TFLM (running the tiled model with an offline arena plan, as written), on
random and structured inputs. The cost model's local peak must equal
the live bytes TFLM's lifetime replay (``memory.simulate``) finds in the tiled model.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
from oneop import structured_inputs

from tflite_reorder import tflm
from tflite_reorder.arena import plan_arena, write_plan
from tflite_reorder.flatbuffer_io import load_model, serialize_model
from tflite_reorder.graph import build_graph
from tflite_reorder.memory import simulate
from tflite_reorder.rewrites.edit import Editor
from tflite_reorder.runtimes import random_inputs, run_litert
from tflite_reorder.tiling import region, search
from tflite_reorder.tiling.rewrite import Grid, tile_region

MODELS = Path(__file__).resolve().parent.parent / "models"
TILED = ["tile_mbv2_035_96_int8", "tile_mbv2_100_144_int8", "tile_mbv1_025_96_int8",
         "tile_mcunet_int8", "tile_resnet8_int8", "tile_effnet_lite_int8", "tile_mbv2_float32"]
# A small search: bands and 2x2 patches.
FAST = {"grids": (Grid(3), Grid(2, 2)), "max_region_ops": 6}


def raw(name: str) -> bytes:
    return (MODELS / f"{name}.tflite").read_bytes()


@cache
def tiled(name: str) -> tuple[bytes, search.TileResult]:
    res = search.tile_model(load_model(raw(name)).model, **FAST)
    return serialize_model(res.model), res


def _inputs(data: bytes) -> list[list[np.ndarray]]:
    x = random_inputs(data, 2, seed=3)
    shape, dtype = x[0][0].shape, x[0][0].dtype
    return x + [[s] for s in structured_inputs(shape, dtype.type)[1:]]


@pytest.mark.parametrize("name", TILED)
def test_tiled_network_is_bit_exact(name):
    data, res = tiled(name)
    assert res.regions, "no region tiled"
    assert res.head_after < res.head_before
    assert res.macs_after > res.macs_before
    codes = {Editor(load_model(data).model, 0).opcode(op)
             for op in load_model(data).model.subgraphs[0].operators}
    assert {"STRIDED_SLICE", "CONCATENATION"} <= codes
    for x in _inputs(raw(name)):
        assert all(np.array_equal(a, b) for a, b in
                   zip(run_litert(raw(name), x), run_litert(data, x), strict=True))


def planned(data: bytes) -> tuple[bytes, int]:
    """``data`` with an offline arena plan (stored order, in-place sharing on), as
    ``optimize`` writes one, and the plan's head."""
    model_t = load_model(data).model
    graph = build_graph(model_t)
    plan = plan_arena(simulate(graph, graph.stored_orders(), inplace=True), time_limit=1.0)
    return write_plan(model_t, graph, plan), plan.head


@pytest.mark.tflm
@pytest.mark.parametrize("name", TILED)
def test_tiled_network_is_bit_exact_in_tflm(name):
    """TFLM runs the tiled model as written: with the offline plan, at the planned head."""
    data, head = planned(tiled(name)[0])
    assert tflm.measure_arena(data).head == head
    for x in _inputs(raw(name))[:4]:
        assert all(np.array_equal(a, b) for a, b in
                   zip(tflm.run_tflm(raw(name), x), tflm.run_tflm(data, x), strict=True))


@pytest.mark.parametrize("name", ["tile_mbv2_035_96_int8", "tile_resnet8_int8"])
def test_local_peak_is_tflm_replay(name):
    """The search prices a candidate by ``cost.local_peak``; applied, the model must agree."""
    m = load_model(raw(name)).model
    prof = region.profile(m)
    cands = [c for r in region.regions(prof, 6)[:12] for g in (Grid(2), Grid(2, 2))
             if (c := _price(m, prof, r, g)) is not None]
    assert cands
    for c in cands:
        m2 = load_model(raw(name)).model
        tile_region(m2, c.region, c.grid)
        after = region.profile(m2)
        n_new = len(after.live) - len(prof.live)
        inside = after.live[c.region.start:c.region.end + n_new]
        assert max(inside) == c.peak


def _price(m, prof, r, g):
    try:
        return search.price(m, prof, r, g)
    except (search.CannotTile, search.CannotPay):
        return None


def test_regions_end_at_global_ops():
    m = load_model(raw("tile_mbv2_035_96_int8")).model
    prof = region.profile(m)
    ed = Editor(m, 0)
    codes = [ed.opcode(op) for op in ed.sg.operators]
    for r in region.regions(prof):
        assert not {"MEAN", "FULLY_CONNECTED", "RESHAPE", "SOFTMAX"} & {codes[v] for v in r.ops}
    assert "global reach" in prof.why[codes.index("MEAN")]
    # a region's input is the one tensor live at its start
    for pos, t in prof.cuts.items():
        assert pos == 0 or t in ed.outputs(ed.sg.operators[pos - 1]) or t == 0


def test_nothing_pays_returns_the_input():
    """DS-CNN: every layer is the same size; bands plus their concatenation hold as much."""
    res = search.tile_model(load_model(raw("tile_dscnn_int8")).model, **FAST)
    assert res.regions == [] and res.head_after == res.head_before
    assert serialize_model(res.model) == serialize_model(load_model(raw("tile_dscnn_int8")).model)
