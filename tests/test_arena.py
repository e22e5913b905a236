"""Arena plans: valid, never above TFLM's greedy, at the lower bound where reachable.

Checked on every model in ``models/`` (with and without in-place aliasing) and on random
synthetic instances, where the exact solver is compared with an exhaustive search.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import ALL_MODELS as MODELS
from hypothesis import given, settings
from hypothesis import strategies as st

from tflite_reorder import arena
from tflite_reorder.arena import (
    Blocks,
    Budget,
    Plan,
    cpsat,
    greedy_by_size,
    greedy_head,
    hill_climb,
    offsets_for_model,
    ordered_fit,
    plan_arena,
)
from tflite_reorder.arena import blocks as blocks_mod
from tflite_reorder.flatbuffer_io import load_model
from tflite_reorder.graph import build_graph
from tflite_reorder.memory import ArenaUse, Buffer, simulate

# ---------------------------------------------------------------------------------------------
# The independent checker


def plan_errors(use: ArenaUse, plan: Plan) -> list[str]:
    """Everything wrong with ``plan`` for ``use`` (empty when valid).

    Written from scratch, sharing no code with the planners: every pair of buffers alive at
    a common scope must occupy disjoint bytes; buffers never alive (lifetime -1) are free.
    """
    errors = []
    placed = []
    for b in use.buffers:
        offs = {plan.offsets.get(k) for k in b.tensors}
        if len(offs) != 1 or None in offs:
            errors.append(f"tensors of one buffer {b.tensors} have offsets {offs}")
            continue
        off = offs.pop()
        if off < 0 or off % 16:
            errors.append(f"{b.tensors[0]}: offset {off} not a non-negative multiple of 16")
        placed.append((b, off))
    for (a, oa), (b, ob) in itertools.combinations(placed, 2):
        alive_together = a.first >= 0 and b.first >= 0 and a.first <= b.last \
            and b.first <= a.last
        if alive_together and oa < ob + b.size and ob < oa + a.size:
            errors.append(f"{a.tensors[0]} [{oa},{oa + a.size}) and {b.tensors[0]} "
                          f"[{ob},{ob + b.size}) overlap while both are alive")
    top = max((o + b.size for b, o in placed), default=0)
    if top != plan.head:
        errors.append(f"head {plan.head} but buffers reach {top}")
    n_keys = sum(len(b.tensors) for b in use.buffers)
    if len(plan.offsets) != n_keys:
        errors.append(f"{len(plan.offsets)} offsets for {n_keys} arena tensors")
    return errors


def use_of(path: Path, inplace: bool) -> tuple:
    graph = build_graph(load_model(path).model)
    return graph, simulate(graph, graph.stored_orders(), inplace=inplace)


# ---------------------------------------------------------------------------------------------
# Real models


@pytest.mark.parametrize("inplace", [False, True], ids=["plain", "inplace"])
@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
def test_plan_on_model(path: Path, inplace: bool) -> None:
    graph, use = use_of(path, inplace)
    plan = plan_arena(use)
    assert plan_errors(use, plan) == []
    assert plan.lower_bound == use.lower_bound
    assert use.lower_bound <= plan.head <= greedy_head(use) == plan.baseline
    assert plan.optimal == (plan.head == use.lower_bound) or plan.method == cpsat.NAME
    flat = offsets_for_model(graph, plan)
    assert len(flat) == graph.n_tensors
    i = 0
    for s, sg in enumerate(graph.subgraphs):
        for t, info in enumerate(sg.tensors):
            assert flat[i] == (plan.offsets[(s, t)] if info.in_arena else -1)
            i += 1


def test_every_model_reaches_the_lower_bound(monkeypatch) -> None:
    """The point of the exercise: on the committed models we plan at the bound. The
    planners' work is counted, not timed; without the wall-clock guard the answer is the
    same on any machine under any load."""
    monkeypatch.setattr(arena, "WALL_SLACK", float("inf"))
    missed = []
    for path in MODELS:
        for inplace in (False, True):
            _, use = use_of(path, inplace)
            # The converter's float16-weight order keeps 156 weight buffers alive at once:
            # CP-SAT needs several seconds of work to reach the bound there.
            plan = plan_arena(use, 10.0 if path.stem == "mobilenet_deep_fp16w" else 1.0)
            if plan.head != use.lower_bound:
                missed.append(f"{path.stem} inplace={inplace}: {plan.head} > {use.lower_bound}")
    assert not missed


# ---------------------------------------------------------------------------------------------
# TFLM's greedy planner, reproduced


def test_greedy_ties_go_to_the_last_added() -> None:
    """TFLM fills its sort array from the tail: equal sizes are placed last-added first."""
    # Buffers 0 and 1 (equal size) meet at scope 1; buffer 2 lives with buffer 0 only.
    # TFLM places 1 at 0, then 0 above it, then 2 at 0; in add order 2 would go on top.
    blocks = Blocks(size=(32, 32, 16), first=(0, 1, 0), last=(1, 2, 0))
    assert greedy_by_size.plan(blocks) == [32, 0, 0]


def test_greedy_is_first_fit_by_size() -> None:
    blocks = Blocks(size=(64, 16, 48, 32), first=(0, 1, 2, 3), last=(1, 2, 3, 4))
    offsets = greedy_by_size.plan(blocks)
    assert offsets == [0, 64, 0, 48]
    assert arena.blocks.head(blocks, offsets) == 80


def test_dead_buffers_stack_in_tflm_but_not_in_our_plan() -> None:
    """Lifetime -1 (never used) buffers: TFLM's [-1, -1] intervals all collide."""
    use = ArenaUse(
        buffers=(
            Buffer(((0, 0),), 32, -1, -1), Buffer(((0, 1),), 32, -1, -1),
            Buffer(((0, 2),), 16, 0, 1),
        ),
        n_scopes=2, op_scope={},
    )
    assert greedy_head(use) == 64
    plan = plan_arena(use)
    assert plan.head == use.lower_bound == 32 and plan.optimal
    assert plan_errors(use, plan) == []


# ---------------------------------------------------------------------------------------------
# Synthetic instances


def random_use(rng: random.Random, n: int, scopes: int, max_units: int) -> ArenaUse:
    buffers = []
    for i in range(n):
        a, b = sorted(rng.randrange(scopes) for _ in range(2))
        buffers.append(Buffer(((0, i),), 16 * rng.randint(1, max_units), a, b))
    return ArenaUse(tuple(buffers), scopes, {})


def brute_force_head(blocks: Blocks) -> int:
    """Exhaustive optimum over canonical plans.

    Pushing every buffer down as far as it goes turns any plan into one no higher where
    each buffer sits at 0 or directly on a buffer alive with it; placing buffers in order
    of offset, each one's offset is then 0 or the top of an earlier conflicting one. We
    enumerate all orders and all such choices.
    """
    n = len(blocks)
    conflicts = [set(c) for c in blocks.conflicts]
    best = sum(blocks.size)

    def fits(i, off, offsets):
        return all(
            off >= offsets[j] + blocks.size[j] or offsets[j] >= off + blocks.size[i]
            for j in conflicts[i] if j in offsets
        )

    def extend(order_left, offsets, top):
        nonlocal best
        if top >= best:
            return
        if not order_left:
            best = top
            return
        for i in order_left:
            lowest = max((o for o in offsets.values()), default=0)
            for off in {0, *(offsets[j] + blocks.size[j] for j in conflicts[i] if j in offsets)}:
                # canonical: buffers are added in non-decreasing offset order
                if off < lowest or not fits(i, off, offsets):
                    continue
                offsets[i] = off
                extend(order_left - {i}, offsets, max(top, off + blocks.size[i]))
                del offsets[i]

    extend(frozenset(range(n)), {}, 0)
    return best


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 40), st.integers(1, 12))
def test_random_plans_are_valid(seed: int, n: int, scopes: int) -> None:
    use = random_use(random.Random(seed), n, scopes, 8)
    plan = plan_arena(use, time_limit=0.3)
    assert plan_errors(use, plan) == []
    assert use.lower_bound <= plan.head <= greedy_head(use)
    if plan.optimal:
        assert plan.head == use.lower_bound or plan.method == cpsat.NAME


@pytest.mark.skipif(not cpsat.available(), reason="ortools not installed")
@pytest.mark.parametrize("seed", range(40))
def test_exact_equals_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    use = random_use(rng, rng.randint(2, 6), rng.randint(2, 5), 5)
    _, blocks = arena.tflm_blocks(use)
    want = brute_force_head(blocks)
    hint = greedy_by_size.plan(blocks)
    solved = cpsat.solve(blocks, hint, arena.blocks.head(blocks, hint), 5.0)
    assert solved is not None and solved.optimal
    assert solved.head == want
    plan = plan_arena(use, time_limit=5.0)
    assert plan.optimal and plan.head == want
    assert plan_errors(use, plan) == []


@pytest.mark.parametrize("seed", [0, 4])
def test_clock_cut_is_reported(monkeypatch, seed: int) -> None:
    """A plan the wall-clock guard stopped says so (``clock_cut``); one that spent its
    counted work does not, and is at least as low. With no wall time at all only the
    work-free stages run: on these instances they stay above the lower bound. (CP-SAT is
    off: it is given at least 10 ms of wall time, in which a fast machine may solve these.)"""
    monkeypatch.setattr(cpsat, "cp_model", None)
    use = random_use(random.Random(seed), 40, 12, 8)
    monkeypatch.setattr(arena, "WALL_SLACK", 1e6)
    full = plan_arena(use)
    monkeypatch.setattr(arena, "WALL_SLACK", 0.0)
    cut = plan_arena(use)
    assert full.optimal and not full.clock_cut
    assert not cut.optimal and cut.clock_cut
    assert full.head < cut.head <= cut.baseline
    assert plan_errors(use, cut) == []


def test_greedy_misses_what_the_search_finds() -> None:
    """Smallest random case where TFLM's greedy is above the optimum (found by search)."""
    blocks = Blocks(size=(16, 32, 48, 32), first=(1, 0, 2, 0), last=(2, 1, 2, 0))
    assert arena.blocks.head(blocks, greedy_by_size.plan(blocks)) == 80
    assert brute_force_head(blocks) == 64 == blocks.load
    use = ArenaUse(
        tuple(Buffer(((0, i),), s, f, la) for i, (s, f, la) in
              enumerate(zip(blocks.size, blocks.first, blocks.last, strict=True))),
        3, {},
    )
    plan = plan_arena(use)
    assert plan.head == 64 and plan.optimal and plan_errors(use, plan) == []


def test_plans_without_ortools(monkeypatch) -> None:
    """The package works without ortools: the exact stage is skipped, the rest still run."""
    monkeypatch.setattr(cpsat, "cp_model", None)
    assert not cpsat.available()
    for seed in range(20):
        use = random_use(random.Random(seed), 25, 10, 8)
        plan = plan_arena(use, time_limit=0.2)
        assert plan_errors(use, plan) == []
        assert plan.head <= greedy_head(use)
        assert plan.method != cpsat.NAME


def test_heuristic_stages_are_valid_on_their_own() -> None:
    rng = random.Random(7)
    for _ in range(20):
        use = random_use(rng, 30, 12, 8)
        _, blocks = arena.tflm_blocks(use)
        for offsets in (
            greedy_by_size.plan(blocks),
            ordered_fit.improve(blocks, None, Budget(0.0)).offsets,
            hill_climb.improve(blocks, None, Budget(0.0)).offsets,
        ):
            assert arena.blocks.overlapping_pairs(blocks, offsets) == []
            assert all(o % 16 == 0 for o in offsets)


# --- scaling: the sweep-line conflicts, stacked [-1, -1] buffers, numpy fits ----------------


def naive_conflicts(blocks: Blocks) -> list[set[int]]:
    n = len(blocks)
    return [{j for j in range(n) if j != i and blocks.first[i] <= blocks.last[j]
             and blocks.first[j] <= blocks.last[i]} for i in range(n)]


def naive_place(blocks: Blocks, order, fit) -> list[int]:
    conflicts = naive_conflicts(blocks)
    offsets = [-1] * len(blocks)
    for i in order:
        spans = [(offsets[j], offsets[j] + blocks.size[j]) for j in conflicts[i]
                 if offsets[j] >= 0]
        offsets[i] = fit(blocks.size[i], spans)
    return offsets


def random_blocks(rng: random.Random, n: int, scopes: int, dead: int, clique: int) -> Blocks:
    """Random intervals, ``dead`` never-used [-1, -1] buffers and a ``clique`` of buffers
    alive over all scopes (long conflict lists: the numpy path)."""
    size, first, last = [], [], []
    for _ in range(n):
        a, b = sorted(rng.randrange(scopes) for _ in range(2))
        size.append(16 * rng.randint(1, 8))
        first.append(a)
        last.append(b)
    for _ in range(clique):
        size.append(16 * rng.randint(1, 8))
        first.append(0)
        last.append(scopes - 1)
    for _ in range(dead):
        size.append(16 * rng.randint(1, 8))
        first.append(-1)
        last.append(-1)
    idx = list(range(len(size)))
    rng.shuffle(idx)
    return Blocks(tuple(size[i] for i in idx), tuple(first[i] for i in idx),
                  tuple(last[i] for i in idx))


@pytest.mark.parametrize("seed", range(12))
def test_sweep_conflicts_and_fits_equal_the_naive_ones(seed: int) -> None:
    rng = random.Random(seed)
    blocks = random_blocks(rng, rng.randint(1, 60), rng.randint(1, 20), rng.randint(0, 80),
                           rng.choice((0, 3, 70)))
    want = naive_conflicts(blocks)
    assert [set(c) for c in blocks.conflicts] == want
    sizes = np.asarray(blocks.size)
    assert blocks.conflict_weight().tolist() == [int(sizes[list(c)].sum()) for c in want]
    for fit in (blocks_mod.lowest_fit, blocks_mod.best_fit):
        order = list(range(len(blocks)))
        rng.shuffle(order)
        offsets = blocks_mod.place(blocks, order, fit)
        assert offsets == naive_place(blocks, order, fit)
        assert blocks_mod.overlapping_pairs(blocks, offsets) == []
    bad = list(offsets)
    pairs = [(i, j) for i in range(len(blocks)) for j in want[i] if i < j]
    if pairs:
        i, j = rng.choice(pairs)
        bad[j] = bad[i]
        assert (i, j) in blocks_mod.overlapping_pairs(blocks, bad)


def test_100k_never_used_buffers_are_stacked_without_pairs() -> None:
    n = 100_000
    blocks = Blocks((16,) * n + (32,), (-1,) * n + (0,), (-1,) * n + (3,))
    offsets = greedy_by_size.plan(blocks)  # TFLM stacks them all
    assert sorted(offsets[:n]) == list(range(0, 16 * n, 16)) and offsets[n] == 0
    assert blocks_mod.overlapping_pairs(blocks, offsets) == []
    assert len(blocks._sweep[1]) == 0  # no pair was ever listed


def test_too_many_pairs_alive_together_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(blocks_mod, "MAX_CONFLICT_PAIRS", 100)
    blocks = Blocks((16,) * 20, (0,) * 20, (1,) * 20)
    with pytest.raises(blocks_mod.TooManyConflicts):
        blocks_mod.place(blocks, range(20))


def test_the_same_model_gets_the_same_plan() -> None:
    """Stage choices and offsets depend on counted work only, not on the clock."""
    for name in ("densenet_int8", "mobilenet_deep_fp16w"):
        _, use = use_of(next(p for p in MODELS if p.stem == name), True)
        a, b = plan_arena(use, 0.3), plan_arena(use, 0.3)
        assert (a.method, a.offsets, a.head) == (b.method, b.offsets, b.head)
