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
from dataclasses import dataclass, field

from ai_edge_litert import schema_py_generated as schema

from ..dtypes import align, tensor_bytes
from ..rewrites.edit import Editor
from . import cost, region, rewrite
from .rewrite import CannotTile, Grid

# Bands along H, then square-ish patches.
GRIDS = (Grid(2), Grid(3), Grid(4), Grid(6), Grid(8), Grid(2, 2), Grid(3, 3), Grid(4, 4),
         Grid(6, 6))
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
          macs_cap: float = float("inf")) -> Candidate | None:
    """One candidate on a scratch copy; None when it adds more than ``macs_cap`` MACs.

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
    if cost.floor(ed, r.input, r.output, _crops(ed, rp), grid.tiles) >= peak_before:
        raise CannotPay(f"{grid} on ops {r.start}-{r.end - 1}")
    n_tensors = len(ed.sg.tensors)
    new = rewrite.emit(ed, rp, ops)
    return Candidate(
        r, grid, cost.local_peak(ed, new, r.input, r.output),
        cost.count_delta(ed, old, new, len(ed.sg.tensors) - n_tensors),
        macs_after - macs_before, rewrite.halo(rp), len(old), len(new), peak_before)


def _crops(ed: Editor, rp: rewrite.RegionPlan) -> list[int]:
    """Aligned sizes of the slices of the region input the tiles take (whole: no slice)."""
    x = rp.region.input
    sh = ed.shape(x)
    out = []
    for tp in rp.tiles:
        rows, cols = tp.need[x]
        if (rows.size, cols.size) != (sh[1], sh[2]):
            out.append(align(tensor_bytes((1, rows.size, cols.size, sh[3]), ed.dtype(x))))
    return out


def _candidates(model, prof, grids, max_ops, macs_cap,
                max_priced: int) -> tuple[list[Candidate], int]:
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
                c = price(model, prof, r, g, macs_cap)
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
    if ram_budget is not None:
        fitting = [c for c in choices if c.total <= ram_budget]
        if fitting:
            return min(fitting, key=lambda c: (c.macs, c.total))
        return min(choices, key=lambda c: (c.total, c.macs))
    cap = macs0 * (1 + max_overhead)
    if objective == "head":
        return min((c for c in choices if c.macs <= cap), key=lambda c: (c.head, c.total))
    return min((c for c in choices if c.macs <= cap), key=lambda c: (c.total, c.macs))


def tile_model(
    model: schema.ModelT,
    *,
    max_overhead: float = 0.3,
    ram_budget: int | None = None,
    grids: tuple[Grid, ...] = GRIDS,
    max_region_ops: int = 12,
    objective: str = "total",
    max_priced: int = MAX_PRICED,
) -> TileResult:
    """Tile the regions of subgraph 0 that pay; ``model`` is not modified.

    Without ``ram_budget``: the smallest estimated TFLM total (head + tail) whose MACs stay
    within ``1 + max_overhead`` of the input's (``objective="head"``: the smallest head).
    With it: the fewest added MACs whose total fits (``fits``), else the smallest total
    reached. At most ``max_priced`` candidates are emitted and priced (the result depends on
    the model and these arguments only, never on the machine's speed). Raises
    ``ValueError`` for an unknown objective. The result's model is the input itself
    (a copy) when nothing pays.
    """
    t0 = time.monotonic()
    prof = region.profile(model)
    macs0 = cost.model_macs(model)
    counts0 = cost.model_counts(model)
    cap = macs0 * max_overhead if ram_budget is None else macs0 * 4
    cands, priced = _candidates(model, prof, grids, max_region_ops, cap, max_priced)
    if objective not in ("total", "head"):
        raise ValueError(f"objective must be 'total' or 'head', not {objective!r}")
    best = choose(prof, cands, counts0, macs0, max_overhead, ram_budget, objective)
    out = copy.deepcopy(model)
    for c in sorted(best.picks, key=lambda c: -c.region.start):
        cuts = region.profile(out).cuts  # tensor indices move as tiles are compacted
        r = region.Region(c.region.start, c.region.end, cuts[c.region.start],
                          cuts[c.region.end])
        rewrite.tile_region(out, r, c.grid)
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
