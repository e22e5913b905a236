"""Choosing regions and grids (``tiling.search``): the interval programme against brute force,
the objectives, and the RAM budget."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

from tflite_reorder.flatbuffer_io import load_model
from tflite_reorder.tiling import cost, region, search
from tflite_reorder.tiling.rewrite import Grid

MODELS = Path(__file__).resolve().parent.parent / "models"
FAST = {"grids": (Grid(3), Grid(2, 2)), "max_region_ops": 6}


def _random_case(rng: random.Random):
    n = rng.randint(3, 9)
    live = [rng.randint(1, 100) for _ in range(n)]
    prof = region.Profile(live, {}, [None] * n, [""] * n)
    cands = []
    for _ in range(rng.randint(1, 8)):
        a = rng.randint(0, n - 1)
        b = rng.randint(a + 1, n)
        cands.append(search.Candidate(
            region.Region(a, b, 0, 0), Grid(2), rng.randint(1, 100),
            cost.Counts(rng.randint(0, 20), rng.randint(0, 20), 0), rng.randint(0, 50),
            (0, 0), b - a, b - a, max(live[a:b])))
    return prof, cands


def _brute(prof, cands, target, key):
    best = None
    for k in range(len(cands) + 1):
        for subset in itertools.combinations(cands, k):
            spans = sorted((c.region.start, c.region.end) for c in subset)
            if any(spans[i][1] > spans[i + 1][0] for i in range(len(spans) - 1)):
                continue
            if any(c.peak > target for c in subset):
                continue
            covered = {v for c in subset for v in c.region.ops}
            if any(x > target and v not in covered for v, x in enumerate(prof.live)):
                continue
            cost_ = sum(key(c) for c in subset)
            best = cost_ if best is None else min(best, cost_)
    return best


def test_cover_is_optimal_against_brute_force():
    rng = random.Random(5)
    for _ in range(300):
        prof, cands = _random_case(rng)
        target = rng.randint(1, 100)
        for key in (lambda c: c.tail_added, lambda c: c.macs_added):
            picks = search._cover(prof, cands, target, key)
            want = _brute(prof, cands, target, key)
            if want is None:
                assert picks is None
                continue
            assert picks is not None
            assert sum(key(c) for c in picks) == want
            spans = sorted((c.region.start, c.region.end) for c in picks)
            assert all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1))


def _model():
    return load_model((MODELS / "tile_resnet8_int8.tflite").read_bytes()).model


def test_objectives_and_overhead_cap():
    total = search.tile_model(_model(), **FAST)
    head = search.tile_model(_model(), objective="head", **FAST)
    assert head.head_after <= total.head_after
    assert total.total_after <= head.total_after
    assert total.total_after < total.total_before
    tight = search.tile_model(_model(), max_overhead=0.0, **FAST)
    assert tight.regions == [] and tight.macs_after == tight.macs_before


def test_ram_budget_fits_or_says_best_reached():
    base = search.tile_model(_model(), **FAST)
    loose = search.tile_model(_model(), ram_budget=base.total_before, **FAST)
    assert loose.fits and loose.regions == []  # fits untiled: no MACs added
    snug = search.tile_model(_model(), ram_budget=base.total_after, **FAST)
    assert snug.fits and snug.total_after <= base.total_after
    assert snug.macs_after <= base.macs_after
    impossible = search.tile_model(_model(), ram_budget=1000, **FAST)
    assert impossible.fits is False
    assert impossible.total_after < impossible.total_before  # the best it reached


def test_search_is_bounded_by_work_not_time():
    """The same model and arguments give the same tiling: a count, not a clock, stops it."""
    m = _model()
    full = search.tile_model(m)
    assert 0 < full.priced <= search.MAX_PRICED
    again = search.tile_model(m)
    assert again.regions == full.regions and again.priced == full.priced
    few = search.tile_model(m, max_priced=3)
    assert few.priced == 3 and few.candidates <= 3
    none = search.tile_model(m, max_priced=0)
    assert none.priced == 0 and none.regions == []


def test_floor_never_exceeds_the_local_peak():
    """``cost.floor`` lets the search skip candidates unemitted; it must be a true bound,
    with the row levers too (``cost.row_peak``, never above the whole-tensor peak)."""
    from tflite_reorder.rewrites.edit import Editor
    from tflite_reorder.tiling import rewrite

    checked = lowered = 0
    for name in ("tile_mbv1_025_96_int8", "tile_resnet8_int8", "tile_dscnn_int8"):
        m = load_model((MODELS / f"{name}.tflite").read_bytes()).model
        prof = region.profile(m)
        for r in region.regions(prof, 5)[:25]:
            for g in (Grid(2), Grid(4), Grid(2, 2)):
                scratch = search._scratch(m)
                ed = Editor(scratch, 0)
                ops = [prof.spatial[v] for v in r.ops]
                try:
                    rp = rewrite.plan(ed, r, ops, g)
                except rewrite.CannotTile:
                    continue
                crops = search._crops(ed, rp)
                low = cost.floor(ed, r.input, r.output, crops, g.tiles)
                low_rows = cost.floor(ed, r.input, r.output, crops, g.tiles, levers=True)
                new = rewrite.emit(ed, rp, ops)
                whole = cost.local_peak(ed, new, r.input, r.output)
                rows = cost.row_peak(ed, new, r.input, r.output)
                assert low <= whole and low_rows <= rows <= whole
                lowered += rows < whole
                checked += 1
    assert checked > 50 and lowered > 10  # the row levers do lower some (bands only)


def test_row_lever_estimates_are_confirmed_by_planning():
    """With ``confirm`` the answer is a choice whose plan was checked (or no tiling):
    a planner that reaches every estimate changes nothing; one that never does makes the
    search try at most ``confirms`` choices (and the search without the levers once) and
    answer with the best planned one."""
    m = load_model((MODELS / "tile_mbv1_025_96_int8.tflite").read_bytes()).model
    plain = search.tile_model(m, objective="head")
    calls = []

    def exact(tiled):
        calls.append(tiled)
        return [0]

    same = search.tile_model(m, objective="head", confirm=exact)
    assert same.regions == plain.regions and len(calls) == 2
    seen = []

    def high(tiled):
        seen.append(tiled)
        return [10**6 - len(seen)]  # every plan above every estimate, later ones lower

    worst = search.tile_model(m, objective="head", confirm=high, confirms=3)
    assert len(seen) == 3 + 1
    assert worst.regions == []  # no tiling beats a planned 999,997 B



def test_no_tiling_is_always_a_choice_even_at_negative_macs():
    """A stored dim of -2 makes the model's MAC count negative, and the cap with it: the
    untiled model is still the answer (fuzz seed 78, case 68: min() of nothing)."""
    from tflite_reorder.tiling.search import Choice, best_of

    untiled, tiled = Choice([], 100, 10, -500), Choice(["a pick"], 50, 10, -400)
    for objective in ("total", "head"):
        assert best_of([untiled, tiled], -500, 0.3, None, objective) is untiled
    untiled, tiled = Choice([], 100, 10, 1000), Choice(["a pick"], 50, 10, 1200)
    assert best_of([untiled, tiled], 1000, 0.3, None) is tiled  # within the 30 % cap
    assert best_of([untiled, tiled], 1000, 0.1, None) is untiled
