"""Which rewrites to apply: only those that lower the optimal-order peak, within error bounds.

Candidate *sites*: every channel concat (``partition.dissolve``), every 1×1 strided op
reading a shifted tensor (``subsample``) and every ADD tree that is not a chain yet
(``add_tree``). A concat has up to three variants: ``calibrated`` and ``full`` do everything
``dissolve`` can, including the inexact channel-wise partitioning of CONV_2D and
FULLY_CONNECTED, ``exact`` only the bit-exact steps. ``full`` quantises int8 partial
products to their guaranteed range (interval bounds from the input's quantisation range and
the weights: no input can saturate them); ``calibrated`` exists only when the caller gives
representative inputs, and uses the ranges seen on them (widened, inside the guaranteed
ones). Random inputs never set a range: real data would saturate what noise did not reach.

Memory is decided first, because it is cheap: all sites are applied together, each in its
preferred variant, and the optimal-order peak measured; then, one at a time, a site is
dropped (or downgraded to ``exact``) when the peak does not rise without it. Starting from
all of them rather than adding one at a time matters: when the peak sits at several concats
at once, no single rewrite lowers it. Then the survivors are run together (LiteRT reference
kernels; random, structured and calibration inputs) and compared with the original; only
when that is over
the bounds is each site measured alone: a variant over the bounds, or an exact one that is
not bit-exact, is struck and the selection repeated, and so is the worst site when the
survivors are each within the bounds but not together.

Time: one budget (seconds) covers the whole search: the reference run, building each
site's variants, pricing candidate sets (a schedule each), the error checks and the final
pricing. The error check of the survivors decides correctness, so it always runs; the
choosing stops early enough for it (``CHECK_RESERVE`` times the reference run). Variants
are built hot sites first, for at most ``OPTIONS_SHARE`` of the choosing time; a site not
built by then is reported as not tried. Past the choosing deadline no new candidate set is
evaluated: the best choice measured so far is kept, and the result says it ran out of time.

Why one module of ~550 lines: the builder (cached builds of a choice of sites), the trial
cache and the selection share one search state; the rewrites themselves live apart
(``partition``, ``split``, ``subsample``, ``add_tree``).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from ..flatbuffer_io import get_offline_plan, remove_offline_plan, serialize_model
from ..scheduling import apply_orders
from . import add_tree, pool_first, split, subsample, trim
from .edit import Editor, NotApplicable, buffers_in_use, compact, fork
from .focus import hot_sites
from .measure import REFUSED, ErrorStats, Reference, observed_ranges, optimal_peak
from .partition import Step, dissolve

# Variants per site kind, most memory first. "full" may be inexact; "exact" is bit-exact.
# "calibrated" is "full" with int8 partial products quantised to the ranges seen on the
# caller's representative inputs (widened) instead of their guaranteed range: less rounding
# error. Offered only with calibration data; preferred over "full" when both are in bounds.
VARIANTS = {
    "concat": ("calibrated", "full", "exact"),
    "subsample": ("exact",),
    "add_tree": ("full",),
    "split": ("calibrated", "full", "exact"),
    "pool_first": ("full",),
    "trim_pad": ("exact",),
}
# Kinds applied before the concats, in this order: they rewrite an op a concat's dissolve
# would replace (a bottleneck it partitions, a transition conv it moves past); a trimmed
# PAD is then distributed by an output split.
FIRST_KINDS = ("trim_pad", "pool_first", "split")
# Shares of the input's optimal peak above which sites count as hot (``focus``): each
# gives a first candidate set, tried before all sites together.
HOT_SHARES = (0.75, 0.9)
# Kinds of the sites away from the peak, in the order their variants are built while the
# time lasts: one-op exact folds first (cheap, and they save tail), output splits last
# (the most numerous).
BUILD_ORDER = ("subsample", "trim_pad", "add_tree", "concat", "pool_first", "split")
# Share of the choosing time the variants may take to build (hot sites first); the rest
# is for pricing candidate sets.
OPTIONS_SHARE = 0.5
# The choosing stops this many reference runs before the budget ends: the survivors' error
# check (a rewritten model runs a little slower than its input) must fit after it.
CHECK_RESERVE = 2.0
# Seconds a schedule gets past the choosing deadline (only the final choice's pricing
# needs one then): the scheduler answers soundly, if not optimally, at once.
MIN_SCHEDULE = 0.05
# Priority of a site's main kind, for its "kind" in the report.
KIND_ORDER = ("channel_partition", "kernel_partition", "output_split", "pool_first",
              "trim_pad", "add_chain", "subsample", "distribute", "flatten")


@dataclass
class RewriteResult:
    """A rewritten copy of the model and what was applied, rejected and gained."""

    model: schema.ModelT
    applied: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    peak_before: int = 0  # optimal-order peak of the input
    peak_after: int = 0  # optimal-order peak with the applied rewrites
    optimal: bool = True  # both peaks proven optimal by the scheduler
    error: dict | None = None  # the rewritten model's error vs the input, all rewrites on
    seconds: float = 0.0
    out_of_time: bool = False  # the budget stopped the choosing (some sites kept untested)
    data: bytes | None = None  # ``model`` serialised, when rewritten


@dataclass(frozen=True, order=True)
class Site:
    subgraph: int
    op: int  # the anchor op's index in the original stored order
    kind: str = "concat"  # "concat", "subsample" (a 1x1 strided op), "add_tree" (its root),
    # "split" (a CONV_2D split by output channels), "pool_first" (a 1x1 conv's pool),
    # "trim_pad" (a PAD)


@dataclass
class _Built:
    model: schema.ModelT
    steps: dict[Site, list[Step]]
    remaps: list[dict[int, int]]
    origin: dict[int, int]  # id(OperatorT) -> original op index, for the report
    skipped: dict[Site, str] = field(default_factory=dict)  # sites that no longer applied
    _data: bytes | None = None

    @property
    def data(self) -> bytes:
        """The model's flatbuffer (serialised once: slow on models of 1000+ ops)."""
        if self._data is None:
            self._data = serialize_model(self.model)
        return self._data


@dataclass
class _Trial:
    """One site with one variant applied alone."""

    variant: str
    steps: list[Step]
    stats: ErrorStats


class _Builder:
    """Applies a choice of sites (each with a variant) to a fresh copy of the base model."""

    def __init__(self, base: schema.ModelT) -> None:
        self.base = base
        self.used = buffers_in_use(base)
        self.ranges: dict[str, tuple[float, float]] = {}  # for "calibrated" variants
        self._cache: dict[tuple, _Built] = {}

    def build(self, choice: dict[Site, str]) -> _Built:
        """The base with ``choice`` applied; the last few builds are kept (callers only read
        them: the search's steps ask for the same choice several times)."""
        key = tuple(sorted(choice.items()))
        if key not in self._cache:
            if len(self._cache) >= 4:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = self._build(choice)
        return self._cache[key]

    def _build(self, choice: dict[Site, str]) -> _Built:
        m = fork(self.base)
        editors: dict[int, Editor] = {}
        originals: dict[int, list[schema.OperatorT]] = {}
        origin: dict[int, int] = {}
        for s in {site.subgraph for site in choice}:
            editors[s] = Editor(m, s)
            editors[s].deferred = len(choice) > 1  # one sort at the end, not one per site
            originals[s] = list(editors[s].sg.operators)
            origin.update({id(op): i for i, op in enumerate(originals[s])})
        steps, skipped = {}, {}
        rank = {kind: i for i, kind in enumerate(FIRST_KINDS)}
        for site in sorted(choice, key=lambda k: (rank.get(k.kind, len(rank)), k)):
            ed = editors[site.subgraph]
            op = originals[site.subgraph][site.op]
            try:
                if not any(o is op for o in ed.sg.operators):
                    raise NotApplicable("the operator was removed by another rewrite")
                ranges = self.ranges if choice[site] == "calibrated" else None
                steps[site] = _apply(ed, op, site.kind, choice[site], ranges)
            except NotApplicable as exc:  # checked before any change: the model is intact
                if len(choice) == 1:
                    raise
                skipped[site] = str(exc)
        for ed in editors.values():
            ed.flush()
        remaps = compact(m, self.used)
        return _Built(m, steps, remaps, origin, skipped)


def _apply(
    ed: Editor, op: schema.OperatorT, kind: str, variant: str, ranges
) -> list[Step]:
    if kind == "concat":
        return dissolve(ed, op, contract=variant != "exact", ranges=ranges)
    if kind == "add_tree":
        add_tree.rebalance(ed, op)
        return [Step("add_chain", "ADD", False, op)]
    if kind == "split":
        return split.split(ed, op, contract=variant != "exact", ranges=ranges)
    if kind == "pool_first":
        return pool_first.move(ed, op)
    if kind == "trim_pad":
        return trim.trim(ed, op)
    subsample.fold(ed, op)
    return [Step("subsample", ed.opcode(op), True, op)]


def find_sites(model: schema.ModelT) -> list[Site]:
    sites = []
    for s in range(len(model.subgraphs)):
        ed = Editor(model, s)
        sites += [Site(s, i) for i, op in enumerate(ed.sg.operators)
                  if ed.opcode(op) == "CONCATENATION"]
        sites += [Site(s, i, "subsample") for i in subsample.candidates(ed)]
        sites += [Site(s, i, "add_tree") for i in add_tree.candidates(ed)]
        sites += [Site(s, i, "split") for i in split.candidates(ed)]
        sites += [Site(s, i, "pool_first") for i in pool_first.candidates(ed)]
        sites += [Site(s, i, "trim_pad") for i in trim.candidates(ed)]
    return sorted(sites)


class _Search:
    """The decision procedure; memory first (cheap), errors only for what memory needs."""

    def __init__(
        self, model: schema.ModelT, *, inplace: bool, time_limit: float, max_error_lsb: float,
        max_rel_error: float, cases: int, seed: int, budget: float,
        calibration: list[list[np.ndarray]] | None, clock=time.monotonic,
        use_tflm: bool = True,
    ) -> None:
        self.clock = clock  # injectable: the deadline logic is tested with a fake clock
        self.start = clock()
        self.hard = self.start + budget  # the whole search ends here
        self.deadline = self.hard  # the choosing ends here (moved earlier below)
        self.out_of_time = False
        self.not_built = 0  # sites whose variants were never built (out of time)
        self.original = model
        self.base = copy.deepcopy(model)
        if get_offline_plan(self.base) is not None:
            remove_offline_plan(self.base)  # its tensor count will not match any more
        self.builder = _Builder(self.base)
        self.inplace, self.time_limit = inplace, time_limit
        self.max_lsb, self.max_rel = max_error_lsb, max_rel_error
        self.ref = Reference(serialize_model(self.base), self.base, cases, seed, calibration,
                             use_tflm)
        self.check_seconds = self.ref.run_seconds  # one run of every error case
        self.deadline = self.hard - CHECK_RESERVE * self.check_seconds
        self.calibration = calibration or []
        self.cases, self.seed = cases, seed
        self.optimal = True
        self._peaks: dict[tuple, tuple[int, int]] = {}
        self._orders: dict[tuple, list[list[int]]] = {}  # the best order found per choice
        self._live: dict[tuple[int, int], int] = {}  # the input's live bytes per op
        self.min_schedule = 0.0  # seconds the first candidate sets get, while the budget allows
        self._trials: dict[tuple[Site, str], _Trial | None] = {}
        self._together: dict[tuple, ErrorStats | None] = {}  # errors of choices together
        self._calibrated = False
        self._exactness: dict[tuple[Site, str], bool] = {}
        self.reasons: dict[tuple[Site, str], dict] = {}  # why a variant was not applied

    # -- measuring ---------------------------------------------------------------------------

    def _measure_peak(self, choice: dict[Site, str]) -> tuple[int, int]:
        key = tuple(sorted(choice.items()))
        if key not in self._peaks:
            model = self.builder.build(choice).model if choice else self.base
            res = optimal_peak(model, self.inplace, self._schedule_seconds())
            self.optimal &= res.optimal
            self._peaks[key] = (res.peak, res.tail)
            self._orders[key] = res.orders
            if not choice:
                self._live = res.live or {}
        return self._peaks[key]

    def peak(self, choice: dict[Site, str]) -> int:
        """Optimal-order peak (TFLM's head) with ``choice`` applied (cached)."""
        return self._measure_peak(choice)[0]

    def cost(self, choice: dict[Site, str]) -> int:
        """What firmware must reserve with ``choice`` applied: the optimal-order head plus
        TFLM's persistent tail (estimated), which grows with every op a rewrite adds. The
        choosing minimises this, so no rewrite makes the whole arena larger."""
        return sum(self._measure_peak(choice))

    def _schedule_seconds(self) -> float:
        """One schedule's time: the per-call limit, cut to the choosing deadline. The first
        candidate sets get ``min_schedule`` (a partitioned block needs time to find its
        order) as long as that still ends before the error check's reserve; past the
        deadline a schedule gets ``MIN_SCHEDULE`` (short, still sound)."""
        now = self.clock()
        left = self.deadline - now
        if self.min_schedule:
            left = max(left, min(self.min_schedule, self.hard - now - self.check_seconds))
        return min(self.time_limit, max(MIN_SCHEDULE, left))

    def expired(self) -> bool:
        """Past the choosing deadline (remembered in ``out_of_time``, for the report)."""
        late = self.clock() > self.deadline
        self.out_of_time |= late
        return late

    def within(self, stats: ErrorStats) -> bool:
        return stats.max_lsb <= self.max_lsb and stats.max_rel <= self.max_rel

    def reject(self, site: Site, variant: str, reason: str, **extra) -> None:
        self.reasons[(site, variant)] = {
            "kind": site.kind, "subgraph": site.subgraph, "op": site.op, "variant": variant,
            "reason": reason, **extra}

    def trial(self, site: Site, variant: str) -> _Trial | None:
        """``site`` with ``variant`` alone: its error, if admissible (cached), else None."""
        key = (site, variant)
        if key not in self._trials:
            self._trials[key] = self._measure(site, variant)
        return self._trials[key]

    def _measure(self, site: Site, variant: str) -> _Trial | None:
        if variant == "calibrated":
            self.calibrate()
        built = self.builder.build({site: variant})
        steps = built.steps[site]
        try:
            stats = self.ref.compare(built.data)
        except REFUSED as exc:
            self.reject(site, variant, f"rewritten model does not run in "
                        f"{self.ref.runtime}: {exc}")
            return None
        extra = stats.to_dict()
        if all(s.exact for s in steps) and not stats.identical:
            self.reject(site, variant, "expected bit-exact, outputs differ", **extra)
        elif not self.within(stats):
            self.reject(site, variant, "error over the bound", **extra)
        else:
            return _Trial(variant, steps, stats)
        return None

    def calibrate(self) -> None:
        """Ranges of every int8 partial product on the calibration inputs (one run for all)."""
        if self._calibrated:
            return
        self._calibrated = True
        if self.expired() or self.ref.runtime != "litert":
            return  # no time, or no LiteRT: "calibrated" gets the guaranteed ranges
        concat = {s: "full" for s in self.sites if s.kind in ("concat", "split")}
        try:
            built = self.builder.build(concat)
            ranges = observed_ranges(built.data, built.model,
                                     self.calibration)
        except Exception:  # no ranges: "calibrated" falls back to the guaranteed ones
            ranges = {}
        self.builder.ranges = ranges
        self.builder._cache.clear()  # builds made before had no ranges

    # -- which variants exist at all (no LiteRT runs) ------------------------------------------

    def variants(self, site: Site) -> list[str]:
        """The variants that apply to ``site``, in order of preference, duplicates removed.

        A variant that does not apply is reported (``rejected``) unless a more preferred one
        does (a bottleneck's split applies as "full"; that "exact" does not is no news).
        """
        out: list[str] = []
        seen: list[list[tuple]] = []
        reasons: set[str] = set()
        for variant in VARIANTS[site.kind]:
            if variant == "calibrated" and not self.calibration:
                continue  # no data: the same model as "full"
            try:
                steps = self.builder.build({site: variant}).steps[site]
            except NotApplicable as exc:
                if not out and str(exc) not in reasons:
                    self.reject(site, variant, str(exc))
                    reasons.add(str(exc))
                continue
            except Exception as exc:  # a rewrite bug must not cost the whole run
                self.reject(site, variant, f"internal error: {type(exc).__name__}: {exc}")
                continue
            if variant == "calibrated" and (not self.calibration
                                            or not any(s.quantized for s in steps)):
                continue  # no data, or no int8 partial products: the same model as "full"
            if all(s.exact for s in steps):
                variant = "exact"  # a "full" that found nothing inexact to do
            self._exactness[(site, variant)] = all(s.exact for s in steps)
            for s in steps:
                if s.kind == "kernel_partition" and not s.exact:
                    self.reject(site, variant, "kernel-wise partitioning would not be "
                                "bit-exact (branch quantisation differs)")
                    break
            else:
                sig = [(s.kind, s.opcode, s.quantized) for s in steps]
                if variant not in out and (sig not in seen or variant == "full"):
                    out.append(variant)
                    seen.append(sig)
        return out

    # -- the decision --------------------------------------------------------------------------

    def run(self) -> RewriteResult:
        peak_before = self.peak({})
        self.sites = find_sites(self.base)
        options = self._options(peak_before)
        stats = None
        while True:
            choice = self.select(options, self.cost({}))
            if not choice:
                break
            stats = self._combined(choice)
            if stats is not None and self.within(stats):
                break
            # Over the bounds (or not runnable) together: find the culprits. Inexact sites
            # first (an exact one can only be at fault when all of them are clean); past the
            # budget, all inexact sites go at once instead of one measurement each.
            inexact = [s for s in choice if not self._exact(s, choice[s])]
            suspects = inexact or list(choice)
            failed, untested = [], []
            for site in suspects:  # one error check each, while the time lasts
                if self.expired() and (site, choice[site]) not in self._trials:
                    untested.append(site)
                elif self.trial(site, choice[site]) is None:
                    failed.append(site)
            for site in failed:
                options[site].remove(choice[site])
            if failed:
                continue
            if untested:  # past the deadline: the unmeasured suspects go at once
                for site in untested:
                    self.reject(site, choice[site], "error over the bound together; no time "
                                "left to measure sites alone", **(stats.to_dict() if stats
                                                                 else {}))
                    options[site].remove(choice[site])
                continue
            if not inexact:  # every exact site is bit-exact alone, yet not together
                for site in choice:
                    self.reject(site, choice[site], "exact sites differ together")
                    options[site].remove(choice[site])
                continue
            choice = {s: choice[s] for s in inexact}
            worst = max(choice, key=lambda s: (self.trial(s, choice[s]).stats.max_lsb,
                                               self.trial(s, choice[s]).stats.max_rel))
            self.reject(worst, choice[worst], "combined error over the bound",
                        **(stats.to_dict() if stats else {}))
            options[worst].remove(choice[worst])
        return self._result(peak_before, choice, stats)

    def _priced(self, choice: dict[Site, str]) -> bool:
        """Whether ``choice``'s cost is known (pricing it again is free)."""
        return not choice or tuple(sorted(choice.items())) in self._peaks

    def _options(self, peak_before: int) -> dict[Site, list[str]]:
        """Each site's variants (one build per variant): the hot sites first (``focus``),
        then the others, for at most ``OPTIONS_SHARE`` of the choosing time (on a model
        with hundreds of sites, building each one alone costs more than the whole budget).
        A site not built in time is reported as not tried."""
        hot = hot_sites(self.base, self.sites, self._live, int(min(HOT_SHARES) * peak_before))
        hot_set = set(hot)
        rank = {kind: i for i, kind in enumerate(BUILD_ORDER)}
        rest = sorted((site for site in self.sites if site not in hot_set),
                      key=lambda k: (rank.get(k.kind, len(rank)), k))
        now = self.clock()
        until = now + OPTIONS_SHARE * max(0.0, self.deadline - now)
        options = {}
        for site in hot + rest:
            if self.clock() > until:
                self.not_built += 1
                where = "" if site in hot_set else " (the site is not where the arena peaks)"
                self.reject(site, "-", "not tried: the time limit ran out before its "
                            f"variants were built{where}")
                self.out_of_time = True
                continue
            options[site] = self.variants(site)
        return {site: v for site, v in options.items() if v}

    def _exact(self, site: Site, variant: str) -> bool:
        """Whether ``site`` alone takes only bit-exact steps (a build, no LiteRT run)."""
        key = (site, variant)
        if key not in self._exactness:
            steps = self.builder.build({site: variant}).steps[site]
            self._exactness[key] = all(s.exact for s in steps)
        return self._exactness[key]

    def _combined(self, choice: dict[Site, str]) -> ErrorStats | None:
        """Error of all of ``choice`` together; None when it does not run, or when a site
        claimed exact is not (then each site must be measured alone)."""
        built = self.builder.build(choice)
        key = tuple(sorted(choice.items()))
        if key not in self._together:
            try:
                self._together[key] = self.ref.compare(built.data)
            except REFUSED:
                self._together[key] = None
        stats = self._together[key]
        if stats is None:
            return None
        if stats.identical or any(not all(s.exact for s in steps)
                                  for steps in built.steps.values()):
            return stats
        return None  # all claimed exact, yet outputs differ: find the culprit

    def select(self, options: dict[Site, list[str]], cost_before: int) -> dict[Site, str]:
        """The sites (with variants) needed for the lowest head + tail; memory only."""
        everything = {site: v[0] for site, v in options.items() if v}
        # The sites where the arena peaks (``focus``) first; then all sites together, the
        # concats alone (what partitioning needs on concat-heavy models, without the
        # splits) and each kind alone (kinds can get in each other's way: an output split
        # feeding a concat another site dissolves), smallest set first: under the time
        # limit the cheap sets (a few exact folds) get priced before the whole model's
        # (on a large model all sites together build a graph too large to schedule in
        # time, with more TFLM tail than they save). All are tried while the time lasts.
        peak = self.peak({})
        hot = [{k: everything[k] for k in hot_sites(self.base, everything, self._live,
                                                    int(share * peak))}
               for share in HOT_SHARES]
        others = [everything, {k: v for k, v in everything.items() if k.kind == "concat"}]
        others += [{k: v for k, v in everything.items() if k.kind == kind}
                   for kind in sorted({k.kind for k in everything})]
        starts = hot + sorted(others, key=len)
        starts = [c for i, c in enumerate(starts) if c and c not in starts[:i]]
        choice, current, priced = {}, cost_before, set()
        for start in starts:
            if self.expired() and (choice or priced) and not self._priced(start):
                continue  # past the deadline: only what is priced already (free)
            self.min_schedule = self.time_limit / 2 if start in hot else 0.0
            p = self.cost(start)
            priced |= start.keys()
            if p < current:
                choice, current = start, p
        self.min_schedule = 0.0
        for site in everything.keys() - priced:
            self.reject(site, everything[site], "not tried: the time limit ran out before "
                        "a candidate set with it was priced")
        if not choice and len(everything) > 1 and not self.expired():
            # Rewrites that raise the peak on their own (a partial product wider than the
            # concat) can hide the ones that help: keep those that do not, and retry.
            choice = {k: v for k, v in everything.items()
                      if not self.expired() and self.cost({k: v}) <= cost_before}
            current = self.cost(choice) if choice else cost_before
        if not choice:
            choice = {k: v for k, v in everything.items() if k in priced}
        if current >= cost_before:
            for site, variant in choice.items():
                self.reject(site, variant, "does not lower head + TFLM tail")
            return {}
        # Two passes: a site kept in the first may become useless once a later one was
        # dropped or downgraded (the second pass drops it; it stops early without change).
        for _ in range(2):
            before = dict(choice)
            choice, current, expired = self._drop_pass(choice, current, options, cost_before)
            if expired or choice == before:
                break
        return self._prune(choice)

    def _drop_pass(
        self, choice: dict[Site, str], current: int, options: dict[Site, list[str]],
        cost_before: int,
    ) -> tuple[dict[Site, str], int, bool]:
        """One pass over ``choice``: each site dropped, or downgraded to ``exact``, when the
        cost stays as low. Returns the choice, its cost and whether the budget ran out."""
        decided: set[Site] = set()
        for site in sorted(choice):
            if self.expired():
                # No time to try the rest one by one: drop them all if the peak stays as
                # low without them (each rewrite adds operators and TFLM tail), else keep.
                rest = {k: v for k, v in choice.items() if k in decided}
                if len(rest) < len(choice) and (self.cost(rest) if rest else cost_before
                                                ) <= current:
                    for k in choice.keys() - rest.keys():
                        self.reject(k, choice[k], "not needed: head + TFLM tail are as "
                                    "low without the sites not yet decided")
                    choice = rest
                    current = self.cost(rest) if rest else cost_before
                return choice, current, True
            decided.add(site)
            without = {k: v for k, v in choice.items() if k != site}
            p = self.cost(without) if without else cost_before
            if p <= current:
                self.reject(site, choice[site], "not needed: head + TFLM tail are as low "
                            "without it")
                choice, current = without, p
            elif choice[site] != "exact" and "exact" in options[site]:
                exact = {**choice, site: "exact"}
                if self.cost(exact) <= current:
                    choice, current = exact, self.cost(exact)
        return choice, current, False

    def _prune(self, choice: dict[Site, str]) -> dict[Site, str]:
        """Drop the sites another rewrite of ``choice`` absorbed (they changed nothing, so
        the model and its peak stay the same)."""
        if not choice:
            return choice
        skipped = self.builder.build(choice).skipped
        for site, reason in skipped.items():
            self.reject(site, choice[site], f"absorbed by another rewrite ({reason})")
        return {k: v for k, v in choice.items() if k not in skipped}

    # -- the answer --------------------------------------------------------------------------

    def _result(self, peak_before, choice, stats) -> RewriteResult:
        applied: list[dict] = []
        model, current = copy.deepcopy(self.original), peak_before
        choice = self._drop_losers(choice)
        if choice:
            built = self.builder.build(choice)
            model, current = built.model, self.peak(choice)
            for site in sorted(choice):
                saved = self._saved(choice, site)
                applied.append(self._entry(site, choice[site], built, saved))
            self._local_errors(built, applied)
            # Stored in the best order found: scheduling it again can only do as well.
            apply_orders(model, self._orders[tuple(sorted(choice.items()))])
            built._data = None
        done = set(choice.items())
        rejected = [r for key, r in self.reasons.items() if key not in done]
        error = {**stats.to_dict(), "runtime": self.ref.runtime} if stats and choice else None
        return RewriteResult(model, applied, rejected, peak_before, current, self.optimal,
                             error,
                             self.clock() - self.start,
                             self.out_of_time, built.data if choice else None)

    def _drop_losers(self, choice: dict[Site, str]) -> dict[Site, str]:
        """``choice`` without the sites whose measured saving in the final set is ≤ 0.

        A site decided early can stop paying once later sites join or leave the set (and a
        time-limited search can misjudge one), so every applied rewrite is re-priced against
        the final set; one that saves nothing there is rejected and the rest re-priced.
        """
        changed = True
        while changed and choice:
            changed = False
            for site in sorted(choice):
                saved = self._saved(choice, site)
                if saved is not None and saved <= 0:
                    self.reject(site, choice[site], "not needed: saves nothing beside the "
                                "other rewrites applied")
                    choice = {k: v for k, v in choice.items() if k != site}
                    changed = True
                    break
        return choice

    def _saved(self, choice: dict[Site, str], site: Site) -> int | None:
        """What one applied site saves: head + TFLM tail without it minus with all of
        ``choice`` (subsample folding can save tail alone: it removes ops); past the budget
        only when already measured (None otherwise)."""
        without = {k: v for k, v in choice.items() if k != site}
        key = tuple(sorted(without.items()))
        if without and key not in self._peaks and self.expired():
            return None
        return self.cost(without) - self.cost(choice)

    def _local_errors(self, built: _Built, applied: list[dict]) -> None:
        """Error where each rewrite ends (the output of the op it replaced), subgraph 0.

        A diagnostic, not a bound (the bound is on the outputs): skipped when the search ran
        out of time, since it runs both models once more with every tensor kept.
        """
        if (self.out_of_time or self.ref.runtime != "litert"
                or self.clock() + 2 * self.check_seconds > self.hard):
            return  # (tensors inside a model are read with LiteRT only)
        pairs, where = [], []
        for entry in applied:
            t = entry.pop("_output", None)
            if entry["subgraph"] == 0 and t is not None and t in built.remaps[0]:
                pairs.append((t, built.remaps[0][t]))
                where.append(entry)
        try:
            errors = self.ref.local(built.data, pairs)
        except REFUSED:
            return
        for entry, err in zip(where, errors, strict=True):
            entry["local_max_error"] = err

    def _original_output(self, s: int, op: int | None) -> int | None:
        """The first output of the input's op ``op`` (rewrites may retarget the op they
        keep, as ``trim`` does, so it is read from the input, not the rewritten op)."""
        if op is None:
            return None
        return int(self.base.subgraphs[s].operators[op].outputs[0])

    def _entry(self, site: Site, variant: str, built: _Built, saved: int) -> dict:
        steps = built.steps[site]
        kinds = {s.kind for s in steps}
        kind = next(k for k in KIND_ORDER if k in kinds)
        main = next(s for s in steps if s.kind == kind)
        entry = {
            "kind": kind,
            "subgraph": site.subgraph,
            "op": built.origin.get(id(main.op), site.op),
            "opcode": main.opcode,
            "site": site.kind,
            "site_op": site.op,
            "variant": variant,
            "steps": [f"{s.kind}:{s.opcode}" for s in steps],
            "exact": all(s.exact for s in steps),
            "saved_bytes": saved,  # head + estimated TFLM tail
            "_output": self._original_output(site.subgraph, built.origin.get(id(main.op))),
        }
        trial = self._trials.get((site, variant))
        if trial is not None:  # measured alone (only when the sites together were not)
            stats = trial.stats
            if stats.max_rel > 0 or self.ref.scales.count(None) == len(self.ref.scales):
                entry["max_rel_error"] = stats.max_rel
            else:
                entry["max_error_lsb"] = stats.max_lsb
        return entry


def rewrite_model(
    model_t: schema.ModelT,
    *,
    inplace: bool = True,
    time_limit: float = 5.0,
    max_error_lsb: float = 2.0,
    max_rel_error: float = 1e-5,
    cases: int = 20,
    seed: int = 0,
    budget: float | None = None,
    calibration: list[list[np.ndarray]] | None = None,
    use_tflm: bool = True,
) -> RewriteResult:
    """SERENITY-style graph rewrites that lower the optimal-order peak; ``model_t`` untouched.

    ``time_limit`` bounds each scheduler call (one per candidate set evaluated); ``budget``
    the whole search (default 1.6 × ``time_limit``): the reference run, building variants,
    pricing and the error checks. Past it the best choice measured so far is kept and
    ``out_of_time`` says the budget stopped the search (the sites it never built or priced
    are in ``rejected``, as not tried); the final error check (correctness) always runs,
    inside the budget's reserve. Errors are measured at the model
    outputs on ``cases`` random inputs, structured inputs and the ``calibration`` samples
    (LiteRT reference kernels; TFLM, which matches them, for a model LiteRT refuses, when
    ``use_tflm``; ``error["runtime"]`` says which): integer outputs in LSBs
    (``max_error_lsb``), float outputs relative to their largest magnitude
    (``max_rel_error``). int8 partial products get
    their guaranteed range, or with ``calibration`` the range seen on it (inside the
    guaranteed one).
    """
    try:
        search = _Search(model_t, inplace=inplace, time_limit=time_limit,
                         max_error_lsb=max_error_lsb, max_rel_error=max_rel_error,
                         cases=cases, seed=seed,
                         budget=1.6 * time_limit if budget is None else budget,
                         calibration=calibration, use_tflm=use_tflm)
    except REFUSED as exc:  # no runtime runs it: no error measurable, nothing rewritten
        peak = optimal_peak(model_t, inplace, time_limit)
        reason = f"errors cannot be measured, so nothing was rewritten: {exc}"
        return RewriteResult(copy.deepcopy(model_t), [], [{"kind": "model", "reason": reason}],
                             peak.peak, peak.peak, peak.optimal)
    return search.run()
