"""Row-granular plans (``rows``, ``arena.layout``, ``arena.replay``, rigid groups in
``arena.blocks``): the pieces, the group placement against brute force, the byte replay,
and, by running, that TFLM computes the input's outputs with such a plan and reports its
head, and that a plan that breaks the row rule gives wrong outputs."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from oneop import structured_inputs

from tflite_reorder import api, arena, tflm
from tflite_reorder.arena import cpsat, replay
from tflite_reorder.arena.blocks import Blocks, group_fit, overlapping_pairs, place
from tflite_reorder.flatbuffer_io import (
    get_offline_plan,
    load_model,
    serialize_model,
    set_offline_plan,
)
from tflite_reorder.graph import build_graph
from tflite_reorder.memory import simulate
from tflite_reorder.rows import Piece, pieces, row_facts
from tflite_reorder.runtimes import run_litert
from tflite_reorder.tiling import region, rewrite
from tflite_reorder.tiling.rewrite import Grid

MODELS = Path(__file__).resolve().parent.parent / "models"
MBV1 = "tile_mbv1_025_96_int8"
# ops 0 in 24 bands (a concatenation tree), 1-3 in 8, 4-7 in 3: the row levers' tiling
SPEC = [(0, 1, 24), (1, 4, 8), (4, 8, 3)]


def test_pieces_hull_of_touches_per_chunk():
    # 3 rows of 24 B in 80 B (5 chunks): row 1 straddles chunks 1-2, row 2 chunks 3-4
    got = pieces(80, [(0, 80, 0), (0, 24, 1), (24, 48, 3), (48, 72, 5)])
    assert got == [Piece(0, 16, 0, 1), Piece(16, 32, 0, 3), Piece(48, 32, 0, 5)]
    with pytest.raises(ValueError):
        pieces(32, [(0, 16, 0)])


def _random_groups(rng: random.Random) -> Blocks:
    n = rng.randint(3, 9)
    size, first, last, leader, rel = [], [], [], [], []
    while len(size) < n:
        k = rng.choice([1, 1, 2, 3])
        at, off = len(size), 0
        for _ in range(k):
            f = rng.randint(0, 6)
            s = 16 * rng.randint(1, 4)
            size.append(s)
            first.append(f)
            last.append(f + rng.randint(0, 3))
            leader.append(at)
            rel.append(off)
            off += s
    return Blocks(tuple(size), tuple(first), tuple(last), tuple(leader), tuple(rel))


def test_group_fit_is_the_lowest_feasible_offset():
    rng = random.Random(3)
    for _ in range(300):
        b = _random_groups(rng)
        order = list(range(len(b)))
        rng.shuffle(order)
        offsets = place(b, order)
        assert not overlapping_pairs(b, offsets)
        for i in range(len(b)):  # members sit at their leader's offset plus rel
            assert offsets[i] == offsets[b.leader[i]] + b.rel[i] - b.rel[b.leader[i]]
        # the last group placed: no lower base would have been free
        last = b.group_of(order[-1])
        others = [o if i not in last else -1 for i, o in enumerate(offsets)]
        base = group_fit(b, last, others)
        assert base == offsets[b.leader[last[0]]]
        for lower in range(0, base, 16):
            trial = list(others)
            for j in last:
                trial[j] = lower + b.rel[j]
            placed = [i for i, o in enumerate(trial) if o >= 0]
            sub = Blocks(tuple(b.size[i] for i in placed), tuple(b.first[i] for i in placed),
                         tuple(b.last[i] for i in placed))
            assert overlapping_pairs(sub, [trial[i] for i in placed])


@pytest.mark.skipif(not cpsat.available(), reason="ortools not installed")
def test_cpsat_keeps_groups_rigid():
    rng = random.Random(8)
    for _ in range(20):
        b = _random_groups(rng)
        hint = place(b, range(len(b)))
        top = max(o + s for o, s in zip(hint, b.size, strict=True))
        solved = cpsat.solve(b, hint, top, 1.0)
        assert solved is not None and solved.head <= top
        assert not overlapping_pairs(b, solved.offsets)
        for i in range(len(b)):
            assert solved.offsets[i] - solved.offsets[b.leader[i]] == \
                b.rel[i] - b.rel[b.leader[i]]


def tiled_mbv1(spec=SPEC) -> bytes:
    m = load_model((MODELS / f"{MBV1}.tflite").read_bytes()).model
    for st, en, rows in sorted(spec, key=lambda x: -x[0]):
        cuts = region.profile(m).cuts
        rewrite.tile_region(m, region.Region(st, en, cuts[st], cuts[en]), Grid(rows))
    return serialize_model(m)


@pytest.fixture(scope="module")
def planned():
    """The tiled MobileNetV1 optimised (planned with the row levers, verified)."""
    return api.optimize(tiled_mbv1(), time_limit=10)


def test_concatenation_tree_stays_within_tflm_inputs():
    g = build_graph(load_model(tiled_mbv1()).model)
    concats = [op for op in g.subgraphs[0].ops if op.opcode == "CONCATENATION"]
    assert len(concats) > 3 and max(len(op.inputs) for op in concats) <= 10


@pytest.mark.tflm
def test_row_plan_is_bit_exact_in_tflm_and_its_head_is_measured(planned):
    plan = planned.plan
    assert not plan.clock_cut
    assert plan.refined is not None and plan.refined.inside > 0 and plan.refined.cut > 0
    assert planned.report.verification["ok"]
    assert tflm.measure_arena(planned.data).head == plan.head == planned.report.tflm_head
    assert plan.head <= 29_491  # 2.5x below the input's 73,728 B
    assert plan.head < plan.baseline
    raw = (MODELS / f"{MBV1}.tflite").read_bytes()
    for x in structured_inputs((1, 96, 96, 3), np.int8, seed=4):
        want = run_litert(raw, [x])
        got = tflm.run_tflm(planned.data, [x])
        assert all(np.array_equal(a, b) for a, b in zip(want, got, strict=True))


def _facts(m, g):
    return row_facts(m, g.stored_orders(),
                     {(0, t): i.nbytes for t, i in enumerate(g.subgraphs[0].tensors)})


def _broken(data: bytes) -> tuple[bytes, dict]:
    """The control: the first band of op 0 written over input rows 8.. that later bands
    still slice (every other tensor where the plan put it)."""
    m = load_model(data).model
    g = build_graph(m)
    sg = g.subgraphs[0]
    x = sg.inputs[0]
    first_conv = next(op for op in sg.ops if op.opcode == "CONV_2D")
    band0 = first_conv.outputs[0]
    offsets = list(get_offline_plan(m))
    offsets[band0] = offsets[x] + 8 * 96 * 3 // 16 * 16
    set_offline_plan(m, offsets)
    return serialize_model(m), {(0, t): o for t, o in enumerate(offsets) if o >= 0}


@pytest.mark.tflm
def test_a_plan_that_breaks_the_row_rule_is_caught_and_gives_wrong_outputs(planned):
    m = load_model(planned.data).model  # the written model: its stored order is the plan's
    g = build_graph(m)
    orders = g.stored_orders()
    facts = _facts(m, g)
    replay.check(g, orders, planned.plan.offsets, facts)  # the real one passes
    data, offsets = _broken(planned.data)
    with pytest.raises(replay.ReplayError, match="written over them"):
        replay.check(g, orders, offsets, facts)
    # the classifier of random weights saturates: compare the first region's output
    x = structured_inputs((1, 96, 96, 3), np.int8, seed=4)[0]
    want = run_litert(_first_region(planned.data), [x])[0]
    assert np.array_equal(want, tflm.run_tflm(_first_region(planned.data), [x])[0])
    assert not np.array_equal(want, tflm.run_tflm(_first_region(data), [x])[0])


def _first_region(data: bytes) -> bytes:
    """The model up to its first tiled region's output (the root of the first
    concatenation tree), which becomes the output: it lives to the end in the plan."""
    m = load_model(data).model
    g = build_graph(m)
    sg = g.subgraphs[0]
    concat = {op.index for op in sg.ops if op.opcode == "CONCATENATION"}
    root = next(v for v in sorted(concat)
                if not set(sg.consumers.get(sg.ops[v].outputs[0], [])) & concat)
    m.subgraphs[0].operators = m.subgraphs[0].operators[:root + 1]
    m.subgraphs[0].outputs = [sg.ops[root].outputs[0]]
    return serialize_model(m)


def test_row_layouts_are_never_worse_and_replay_clean():
    """The planner keeps the whole-tensor plan unless a row layout is lower; both pass the
    byte replay (the whole-tensor rule is the coarser one)."""
    m = load_model(tiled_mbv1([(0, 1, 4), (2, 4, 4)])).model
    g = build_graph(m)
    orders = g.stored_orders()
    use = simulate(g, orders, inplace=True)
    facts = _facts(m, g)
    plain = arena.plan_arena(use, 0.5)
    levered = arena.plan_arena(use, 0.5, g, facts)
    assert plain.refined is None and levered.refined is not None
    assert levered.head < plain.head
    replay.check(g, orders, levered.offsets, facts)
    replay.check(g, orders, plain.offsets, facts)
