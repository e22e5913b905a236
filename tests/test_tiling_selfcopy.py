"""TFLM's CONCATENATION with its inputs aliased into its output (the tiles' "self-copy").

A tiled region ends in a CONCATENATION along H of its bands. Bands are contiguous in NHWC
(batch 1), so an offline plan can put band ``k`` exactly where the concatenation copies it
(the output's offset plus the bytes of bands ``0..k-1``); the kernel then copies every band
onto itself. These tests write such a plan for tiled one-op models (int8 and float32) and
run them in TFLM: outputs must be bit-identical to the untiled model under LiteRT's
reference kernels, TFLM must report the plan's head, and a control plan that puts two bands
in each other's place must give different outputs (TFLM really reads the planned bytes).
"""

from __future__ import annotations

import numpy as np
import pytest
from oneop import one_op, structured_inputs

from tflite_reorder import tflm
from tflite_reorder.arena import replay
from tflite_reorder.flatbuffer_io import (
    get_offline_plan,
    load_model,
    serialize_model,
    set_offline_plan,
)
from tflite_reorder.graph import build_graph
from tflite_reorder.rewrites.edit import Editor
from tflite_reorder.rows import row_facts
from tflite_reorder.runtimes import run_litert
from tflite_reorder.tiling.region import Region
from tflite_reorder.tiling.rewrite import Grid, tile_region

pytestmark = pytest.mark.tflm

# H = 12 output rows in 3 or 4 bands; a row of the output is 8 x 4 values: 32 B in int8,
# 128 B in float32, so every band starts at a 16-byte multiple inside the output.
HW, COUT = (12, 8), 4


def tiled(dtype: str, bands: int) -> bytes:
    """A CONV_2D (SAME, 3x3) tiled in ``bands`` bands along H: slice, pad, conv, concat."""
    m = load_model(one_op("CONV_2D", dtype, HW, 3, cout=COUT, seed=5)).model
    tile_region(m, Region(0, 1, 0, int(m.subgraphs[0].outputs[0])), Grid(bands))
    return serialize_model(m)


def concat_of(data: bytes) -> tuple[list[int], int]:
    """The H concatenation's inputs (the bands, in order) and its output."""
    m = load_model(data).model
    ed = Editor(m, 0)
    (op,) = [op for op in ed.sg.operators if ed.opcode(op) == "CONCATENATION"]
    assert op.builtinOptions.axis == 1
    return ed.inputs(op), ed.outputs(op)[0]


def self_copy_plan(data: bytes, swap: bool = False) -> tuple[bytes, int]:
    """Every arena tensor in bytes of its own, except that each band sits inside the
    concatenation's output where it is copied to (``swap``: bands 0 and 1 exchange places,
    which no correct kernel can survive). Returns the planned model and its head."""
    m = load_model(data).model
    graph = build_graph(m)
    sg = graph.subgraphs[0]
    bands, out = concat_of(data)
    offsets = [-1] * len(sg.tensors)
    top = 0
    for t, info in enumerate(sg.tensors):
        if info.in_arena and t not in bands:
            offsets[t] = top
            top += info.arena_bytes
    inside = offsets[out]
    places = []
    for b in bands:
        places.append(inside)
        inside += sg.tensors[b].nbytes
    assert inside == offsets[out] + sg.tensors[out].nbytes
    if swap:  # equal bands (12 rows in 3): each fits the other's place exactly
        assert sg.tensors[bands[0]].nbytes == sg.tensors[bands[1]].nbytes
        places[0], places[1] = places[1], places[0]
    for b, p in zip(bands, places, strict=True):
        assert p % 16 == 0
        offsets[b] = p
    set_offline_plan(m, offsets)
    return serialize_model(m), top


@pytest.mark.parametrize("dtype", ["INT8", "FLOAT32"])
@pytest.mark.parametrize("bands", [3, 4])
def test_concatenation_copies_onto_itself_bit_exact(dtype, bands):
    plain = one_op("CONV_2D", dtype, HW, 3, cout=COUT, seed=5)
    data, head = self_copy_plan(tiled(dtype, bands))
    assert tflm.measure_arena(data).head == head
    np_dtype = np.int8 if dtype == "INT8" else np.float32
    for x in structured_inputs((1, *HW, 3), np_dtype):
        want = run_litert(plain, [x])
        got = tflm.run_tflm(data, [x])
        assert all(np.array_equal(a, b) for a, b in zip(want, got, strict=True))


@pytest.mark.parametrize("dtype", ["INT8", "FLOAT32"])
def test_misplaced_bands_are_detected(dtype):
    """The control: bands 0 and 1 in each other's place scramble the output."""
    plain = one_op("CONV_2D", dtype, HW, 3, cout=COUT, seed=5)
    data, _ = self_copy_plan(tiled(dtype, 3), swap=True)
    x = structured_inputs((1, *HW, 3), np.int8 if dtype == "INT8" else np.float32)[0]
    want, got = run_litert(plain, [x])[0], tflm.run_tflm(data, [x])[0]
    assert not np.array_equal(want, got)


def test_byte_replay_accepts_the_self_copy_and_catches_the_swap():
    """``arena.replay``: bands where the concatenation copies them are safe; bands in each
    other's place are overwritten before they are copied."""
    for swap in (False, True):
        data, _ = self_copy_plan(tiled("INT8", 3), swap=swap)
        m = load_model(data).model
        g = build_graph(m)
        offsets = {(0, t): o for t, o in enumerate(get_offline_plan(m)) if o >= 0}
        facts = row_facts(m, g.stored_orders(),
                          {(0, t): i.nbytes for t, i in enumerate(g.subgraphs[0].tensors)})
        if swap:
            with pytest.raises(replay.ReplayError):
                replay.check(g, g.stored_orders(), offsets, facts)
        else:
            replay.check(g, g.stored_orders(), offsets, facts)
