"""Choosing what to tile: regions and grids that minimise TFLM's total, or fit a RAM budget.

Every candidate — a region between two cuts (``region.regions``) and a grid of tiles — is
priced once, on a scratch copy of the model: its *local peak* (live bytes while its tiles
run, exact at a cut), the tail it adds and the MACs it adds. Regions are intervals of the
stored order and their local peaks do not interact, so the best set of disjoint regions for
a head target ``T`` is an interval dynamic programme: every op live above ``T`` must lie in
a chosen region whose local peak is at most ``T``. Each ``T`` (the untiled ops' live bytes
and the candidates' local peaks) gives one answer; the search keeps the one with the
smallest estimated total (head + tail) within the MAC overhead, or, with a RAM budget, the
one with the fewest added MACs whose total fits.

The search is bounded by work, not by time: at most ``max_priced`` candidates are emitted
and priced, in a fixed order, so a model gets the same tiling on any machine however
loaded. Candidates whose floor (``cost.floor``, from the windows alone) already reaches
the region's untiled peak are skipped without being emitted and do not count.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ai_edge_litert import schema_py_generated as schema

from ..dtypes import align, tensor_bytes
from ..rewrites.edit import Editor
from . import cost, region, rewrite
from .rewrite import CannotTile, Grid

# Bands along H, then square-ish patches.
GRIDS = (Grid(2), Grid(3), Grid(4), Grid(6), Grid(8), Grid(2, 2), Grid(3, 3), Grid(4, 4),
         Grid(6, 6))
# Thinner bands, priced only with the plan's row levers: band 0's working set is what is
# live beside the input's unconsumed rows (more than 10 are joined by a concat tree).
FINE_BANDS = (Grid(12), Grid(16), Grid(24))
# Candidates emitted and priced at most (each one op list on a scratch copy, a few ms).
# Every model of models/tile_* gets the same tiling with 300 as without a bound (they
# price up to 675); 400 keeps a margin at under 2 s of one core here.
MAX_PRICED = 400


class CannotPay(Exception):
    """The candidate's floor (``cost.floor``) is not below the region's untiled peak."""


@dataclass(frozen=True)
class Candidate:
    region: region.Region
    grid: Grid
    peak: int  # live bytes while its tiles run
    counts: cost.Counts  # tensors/ops/channels it adds
    macs_added: int
    halo: tuple[int, int]
    ops_before: int
    ops_after: int
    peak_before: int  # the region's peak untiled

    @property
    def tail_added(self) -> int:
        """Tail bytes of what it adds (the fit without its fixed part)."""
        return self.counts.tail() - cost.Counts(0, 0, 0).tail()


@dataclass
class Choice:
    """A set of candidates and what the model comes to with them."""

    picks: list[Candidate]
    head: int  # estimated: max(untiled ops' live bytes, the picks' local peaks)
    tail: int  # estimated
    macs: int

    @property
    def total(self) -> int:
        return self.head + self.tail


@dataclass
class TileResult:
    """``tile_model``'s answer: the tiled model (the input when nothing pays) and its costs."""

    model: schema.ModelT
    regions: list[dict] = field(default_factory=list)
    macs_before: int = 0
    macs_after: int = 0
    head_before: int = 0  # stored-order live peak (what TFLM's planner is measured against)
    head_after: int = 0
    tail_before: int = 0  # estimates (tflm.tail_from_counts); measure with tflite-micro
    tail_after: int = 0
    fits: bool | None = None  # None without a budget
    candidates: int = 0  # priced candidates that lower their region's peak
    priced: int = 0  # candidates emitted and priced (at most ``max_priced``)
    seconds: float = 0.0

    @property
    def total_before(self) -> int:
        return self.head_before + self.tail_before

    @property
    def total_after(self) -> int:
        return self.head_after + self.tail_after


def _scratch(model: schema.ModelT) -> schema.ModelT:
    """A copy that tiles can be emitted into without touching ``model`` (weights shared)."""
    c = copy.copy(model)
    c.buffers = list(model.buffers or [])
    c.operatorCodes = copy.deepcopy(model.operatorCodes)
    sg = copy.copy(model.subgraphs[0])
    sg.tensors, sg.operators = list(sg.tensors or []), list(sg.operators or [])
    c.subgraphs = [sg, *model.subgraphs[1:]]
    return c


def price(model: schema.ModelT, prof: region.Profile, r: region.Region, grid: Grid,
          macs_cap: float = float("inf"), levers: bool = False) -> Candidate | None:
    """One candidate on a scratch copy; None when it adds more than ``macs_cap`` MACs.

    With ``levers`` its peak is priced with the plan's row levers (``cost.row_peak``).

    Raises ``CannotTile`` if the grid does not fit the region and ``CannotPay`` (before
    emitting anything) if its floor is not below the region's untiled peak.
    """
    scratch = _scratch(model)
    ed = Editor(scratch, 0)
    ops = [prof.spatial[v] for v in r.ops]
    rp = rewrite.plan(ed, r, ops, grid)
    old = [ed.sg.operators[v] for v in r.ops]
    macs_before = sum(cost.op_macs(ed, op) for op in old)
    macs_after = sum(cost.per_pixel_macs(ed, op) * rewrite.computed_pixels(rp, ed.outputs(op)[0])
                     for op in old)
    if macs_after - macs_before > macs_cap:
        return None
    peak_before = max(prof.live[v] for v in r.ops)
    if cost.floor(ed, r.input, r.output, _crops(ed, rp), grid.tiles, levers) >= peak_before:
        raise CannotPay(f"{grid} on ops {r.start}-{r.end - 1}")
    n_tensors = len(ed.sg.tensors)
    new = rewrite.emit(ed, rp, ops)
    local = cost.row_peak if levers else cost.local_peak
    return Candidate(
        r, grid, local(ed, new, r.input, r.output),
        cost.count_delta(ed, old, new, len(ed.sg.tensors) - n_tensors),
        macs_after - macs_before, rewrite.halo(rp), len(old), len(new), peak_before)


def _crops(ed: Editor, rp: rewrite.RegionPlan) -> list[int]:
    """Per tile, the aligned size of the slice of the region input it takes (0: none)."""
    x = rp.region.input
    sh = ed.shape(x)
    out = []
    for tp in rp.tiles:
        rows, cols = tp.need[x]
        whole = (rows.size, cols.size) == (sh[1], sh[2])
        out.append(0 if whole else align(tensor_bytes((1, rows.size, cols.size, sh[3]),
                                                      ed.dtype(x))))
    return out


def _candidates(model, prof, grids, max_ops, macs_cap,
                max_priced: int, levers: bool = False) -> tuple[list[Candidate], int]:
    """Priced candidates, the regions holding the most bytes first, and how many were priced.

    Within a region, finer grids of one family (bands; patches) are priced only while the
    local peak keeps falling: beyond that they add halo, ops and tail for nothing. A grid
    whose floor cannot pay is skipped (a finer one of its family may still pay).
    """
    out = []
    priced = 0
    sizes = {t: align_size(model, t) for t in prof.cuts.values()}
    todo = []
    for r in region.regions(prof, max_ops):
        inside = max(prof.live[v] for v in r.ops)
        if inside > 1.25 * max(sizes[r.input], sizes[r.output]):
            todo.append((inside, r))  # else its ends alone hold nearly its peak
    todo.sort(key=lambda x: (-x[0], x[1].start, x[1].end))
    for _, r in todo:
        last: dict[bool, int] = {}
        for g in sorted(grids, key=lambda g: (g.cols > 1, g.tiles)):
            family = g.cols > 1
            if family in last and last[family] < 0:
                continue
            if priced >= max_priced:
                return out, priced
            try:
                c = price(model, prof, r, g, macs_cap, levers)
            except CannotPay:
                continue
            except CannotTile:
                c = None
            priced += c is not None
            if c is None or (family in last and c.peak >= last[family]):
                last[family] = -1
                continue
            last[family] = c.peak
            if c.peak < c.peak_before:
                out.append(c)
    return out, priced


def align_size(model: schema.ModelT, t: int) -> int:
    ed = Editor(model, 0)
    return align(tensor_bytes(ed.shape(t), ed.dtype(t)))


def _cover(prof: region.Profile, cands: list[Candidate], target: int,
           key) -> list[Candidate] | None:
    """Disjoint candidates covering every op live above ``target``, least total ``key``."""
    n = len(prof.live)
    ending: dict[int, list[Candidate]] = {}
    for c in cands:
        if c.peak <= target:
            ending.setdefault(c.region.end, []).append(c)
    inf = float("inf")
    best: list[float] = [0.0] + [inf] * n
    back: list[Candidate | None] = [None] * (n + 1)
    for i in range(1, n + 1):
        if prof.live[i - 1] <= target and best[i - 1] < inf:
            best[i] = best[i - 1]
        for c in ending.get(i, ()):
            v = best[c.region.start] + key(c)
            if v < best[i]:
                best[i], back[i] = v, c
    if best[n] == inf:
        return None
    picks, i = [], n
    while i > 0:
        c = back[i]
        if c is not None and best[i] == best[c.region.start] + key(c):
            picks.append(c)
            i = c.region.start
        else:
            i -= 1
    return picks[::-1]


def _evaluate(prof, picks: list[Candidate], tail0: cost.Counts, macs0: int) -> Choice:
    covered = {v for c in picks for v in c.region.ops}
    head = max([prof.live[v] for v in range(len(prof.live)) if v not in covered]
               + [c.peak for c in picks] + [0])
    counts = tail0
    for c in picks:
        counts = counts + c.counts
    return Choice(picks, head, counts.tail(), macs0 + sum(c.macs_added for c in picks))


def choose(prof: region.Profile, cands: list[Candidate], tail0: cost.Counts, macs0: int,
           max_overhead: float, ram_budget: int | None, objective: str = "total") -> Choice:
    """The best set of candidates (possibly none) under the objective."""
    return best_of(_choices(prof, cands, tail0, macs0), macs0, max_overhead, ram_budget,
                   objective)


def _choices(prof: region.Profile, cands: list[Candidate], tail0: cost.Counts,
             macs0: int) -> list[Choice]:
    """No tiling, and per head target the covers of least tail and of least MACs."""
    base = _evaluate(prof, [], tail0, macs0)
    targets = sorted({c.peak for c in cands} | set(prof.live))
    choices = [base]
    for target in targets:
        if target >= base.head:
            break
        for key in (lambda c: c.tail_added, lambda c: c.macs_added):
            picks = _cover(prof, cands, target, key)
            if picks is not None:
                choices.append(_evaluate(prof, picks, tail0, macs0))
    return choices


def best_of(choices: list[Choice], macs0: int, max_overhead: float, ram_budget: int | None,
            objective: str = "total") -> Choice:
    """The best of ``choices`` under the objective (the first, no tiling, always allowed).

    With ``ram_budget``: of those whose total fits it, the fewest MACs, or with
    ``objective="head"`` the smallest head (a firmware engineer's arena size fixed, the
    head as small as it goes); when none fits, the smallest total."""
    if ram_budget is not None:
        fitting = [c for c in choices if c.total <= ram_budget]
        if fitting and objective == "head":
            return min(fitting, key=lambda c: (c.head, c.macs))
        if fitting:
            return min(fitting, key=lambda c: (c.macs, c.total))
        return min(choices, key=lambda c: (c.total, c.macs))
    cap = macs0 * (1 + max_overhead)
    # the first whatever the cap (a model with a negative dim counts negative MACs)
    allowed = [choices[0], *(c for c in choices[1:] if c.macs <= cap)]
    if objective == "head":
        return min(allowed, key=lambda c: (c.head, c.total))
    return min(allowed, key=lambda c: (c.total, c.macs))


# The plan's height (the top of the bytes live there) at each op of a tiled model, in its
# stored order: what the caller's planner (``api.planned_heights``) reaches.
Confirm = Callable[[schema.ModelT], list[int]]


def apply_choice(model: schema.ModelT, choice: Choice) -> schema.ModelT:
    """A copy of ``model`` with ``choice``'s regions tiled."""
    out = copy.deepcopy(model)
    for c in sorted(choice.picks, key=lambda c: -c.region.start):
        cuts = region.profile(out).cuts  # tensor indices move as tiles are compacted
        r = region.Region(c.region.start, c.region.end, cuts[c.region.start],
                          cuts[c.region.end])
        rewrite.tile_region(out, r, c.grid)
    return out


def _confirmed(model, prof, cands, base: tuple[cost.Counts, int], choices: list[Choice],
               pick, confirm: Confirm, confirms: int) -> Choice:
    """The best choice once the row levers' estimates are checked by planning.

    A head priced with the row levers is the least any plan of those lifetimes needs; the
    pieces are rigid groups, so a chain of regions can need more. The best choice is
    planned (``confirm``: the plan's height at each op); if it is above the estimate the
    choice keeps the planned head, the covers without the region(s) whose ops reach the
    plan's top join the choices, and the best of those (else of all) is planned next, at
    most ``confirms`` times. The answer is a confirmed choice (or no tiling).
    """
    tail0, macs0 = base
    done: dict[tuple, int] = {}

    def key(ch: Choice) -> tuple:
        return tuple((c.region.start, c.region.end, c.grid) for c in ch.picks)

    fresh: list[Choice] = []  # the covers the last failed plan suggested: tried first
    for _ in range(confirms):
        best = pick([choices[0], *fresh]) if fresh else pick(choices)
        if not best.picks and fresh:
            best = pick(choices)
        fresh = []
        if not best.picks or key(best) in done:
            return best
        heights = confirm(apply_choice(model, best))
        planned = max(heights, default=0)
        done[key(best)] = planned
        if planned <= best.head:
            return best
        estimate = best.head
        for ch in choices:  # the same picks may come from both cover keys
            if key(ch) == key(best):
                ch.head = planned
        culprits = _at_top(best, len(prof.live), heights, planned) or best.picks
        seen = {key(ch): ch for ch in choices}
        for drop in [[c] for c in culprits] + [culprits]:
            gone = {c.region for c in drop}
            rest = [x for x in cands if x.region not in gone]
            for cost_of in (lambda c: c.tail_added, lambda c: c.macs_added):
                picks = _cover(prof, rest, estimate, cost_of)
                if picks is None:
                    continue
                alt = _evaluate(prof, picks, tail0, macs0)
                if key(alt) not in seen:
                    choices.append(alt)
                    seen[key(alt)] = alt
                if key(alt) not in done:
                    fresh.append(seen[key(alt)])
    return pick([ch for ch in choices if not ch.picks or key(ch) in done])


def _at_top(choice: Choice, n_ops: int, heights: list[int], top: int) -> list[Candidate]:
    """The picks whose tile ops (in the tiled model's stored order) reach the plan's
    ``top``: each region's ops take its place, ``ops_after`` of them."""
    at = {c.region.start: c for c in choice.picks}
    out, pos, v = [], 0, 0
    while v < n_ops:
        c = at.get(v)
        if c is None:
            pos, v = pos + 1, v + 1
            continue
        if any(h >= top for h in heights[pos:pos + c.ops_after]):
            out.append(c)
        pos, v = pos + c.ops_after, c.region.end
    return out


def tile_model(
    model: schema.ModelT,
    *,
    max_overhead: float = 0.3,
    ram_budget: int | None = None,
    grids: tuple[Grid, ...] = GRIDS,
    max_region_ops: int = 12,
    objective: str = "total",
    max_priced: int = MAX_PRICED,
    levers: bool = True,
    confirm: Confirm | None = None,
    confirms: int = 4,
) -> TileResult:
    """Tile the regions of subgraph 0 that pay; ``model`` is not modified.

    Without ``ram_budget``: the smallest estimated TFLM total (head + tail) whose MACs stay
    within ``1 + max_overhead`` of the input's (``objective="head"``: the smallest head).
    With it: the fewest added MACs whose total fits (``fits``), else the smallest total
    reached. At most ``max_priced`` candidates are emitted and priced (the result depends on
    the model and these arguments only, never on the machine's speed). Raises
    ``ValueError`` for an unknown objective. The result's model is the input itself
    (a copy) when nothing pays.

    With ``levers`` (single-subgraph models) candidates are priced with the plan's row
    levers (``cost.row_peak``) and thinner bands are tried; ``confirm`` (the planner's
    heights of a tiled model) then checks those estimates (``_confirmed``, at most
    ``confirms`` plans), and the answer is never worse than the search without the levers
    (``grids``, whole-tensor pricing), planned the same way.
    """
    t0 = time.monotonic()
    prof = region.profile(model)
    macs0 = cost.model_macs(model)
    counts0 = cost.model_counts(model)
    cap = macs0 * max_overhead if ram_budget is None else macs0 * 4
    levers = levers and len(model.subgraphs) == 1  # the planner's row layouts' scope
    base_grids = grids
    if levers and grids is GRIDS:
        grids = GRIDS + FINE_BANDS
    cands, priced = _candidates(model, prof, grids, max_region_ops, cap, max_priced, levers)
    if objective not in ("total", "head"):
        raise ValueError(f"objective must be 'total' or 'head', not {objective!r}")
    choices = _choices(prof, cands, counts0, macs0)

    def pick(cs: list[Choice]) -> Choice:
        return best_of(cs, macs0, max_overhead, ram_budget, objective)

    if confirm is not None and levers:
        best = _confirmed(model, prof, cands, (counts0, macs0), choices, pick, confirm,
                          confirms)
        # and never worse than the search without the levers, planned the same way
        plain_cands, more = _candidates(model, prof, base_grids, max_region_ops, cap,
                                        max_priced)
        priced += more
        plain = pick(_choices(prof, plain_cands, counts0, macs0))
        if plain.picks:
            plain.head = max(plain.head, max(confirm(apply_choice(model, plain)), default=0))
        best = pick([best, plain])
    else:
        best = pick(choices)
    out = apply_choice(model, best)
    result = TileResult(out, macs_before=macs0, macs_after=cost.model_macs(out),
                        head_before=prof.peak, tail_before=counts0.tail(),
                        candidates=len(cands), priced=priced)
    after = region.profile(out)
    result.head_after = after.peak
    result.tail_after = cost.model_counts(out).tail()
    ed = Editor(model, 0)
    for c in best.picks:
        result.regions.append({
            "ops": [c.region.start, c.region.end],
            "first": ed.opcode(ed.sg.operators[c.region.start]),
            "input": ed.name(c.region.input), "output": ed.name(c.region.output),
            "grid": [c.grid.rows, c.grid.cols], "tiles": c.grid.tiles,
            "halo": list(c.halo), "ops_before": c.ops_before, "ops_after": c.ops_after,
            "peak_before": c.peak_before, "peak_after": c.peak,
            "bytes_saved": c.peak_before - c.peak, "macs_added": c.macs_added,
            "tail_added_estimate": c.tail_added,
        })
    if ram_budget is not None:
        result.fits = result.total_after <= ram_budget
    result.seconds = time.monotonic() - t0
    return result
