"""Splitting at cut ops: the cut ops are exactly the ops comparable to all others, and the
pieces' step costs are the whole problem's, on random graphs and random orders."""

from __future__ import annotations

import random

from randgraphs import random_order, random_problems, random_subgraph

from tflite_reorder.decompose import cut_positions, split, topological
from tflite_reorder.memory import build_problem, initial_live, peak, step_costs
from tflite_reorder.scheduler import _context


def test_cut_positions_are_the_comparable_ops():
    rng = random.Random(11)
    found = 0
    for _ in range(300):
        sg = random_subgraph(rng, rng.randint(1, 30), source_share=0.2)
        p = build_problem(sg)
        ctx = _context(p)
        full = (1 << p.n_ops) - 1
        truth = {v for v in range(p.n_ops) if ctx.anc[v] | ctx.desc[v] | (1 << v) == full}
        topo = topological(p)
        got = {topo[i] for i in cut_positions(p, topo)}
        assert got == truth
        found += len(truth)
    assert found > 100


def test_pieces_have_the_whole_problems_step_costs():
    rng = random.Random(12)
    multi = 0
    for _, p in random_problems(rng, 300, (2, 30), source_share=0.2):
        pieces, _ = split(p)
        order = random_order(rng, p)
        pos = {v: i for i, v in enumerate(order)}
        costs = step_costs(p, order)
        peaks = []
        for pc in pieces:
            mine = sorted(pc.ops, key=pos.__getitem__)
            if pc.problem is None:
                first = pos[mine[0]] == 0
                assert pc.forced_peak == max(max(costs[pos[v]] for v in mine),
                                             initial_live(p) * first)
                peaks.append(pc.forced_peak)
                continue
            multi += 1
            local = {v: i for i, v in enumerate(pc.ops)}
            sub_costs = step_costs(pc.problem, [local[v] for v in mine])
            assert sub_costs == [costs[pos[v]] for v in mine]
            peaks.append(peak(pc.problem, [local[v] for v in mine]))
        assert max(peaks) == peak(p, order)
    assert multi > 200
