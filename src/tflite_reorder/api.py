"""The Python API: read → graph → schedule (→ rewrite) → plan → write → verify, one direction.

``peak_memory`` answers "how much arena does this model need, and how little could it
need?" without writing anything (the NAS-loop call). ``optimize`` produces the new model
bytes and a :class:`~tflite_reorder.results.Report`. ``inspect_order``, ``arena_figures``,
``find_hazards`` and ``plot_memory`` are what the CLI's other commands print; the CLI and
batch mode only parse options and present what these return.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable

from . import arena, fastpeak, hazards, report, shapes, tflm
from . import verify as runtimes
from .candidate import Candidate, GraphSpec, read_graph, read_safe_graph
from .flatbuffer_io import (
    LoadedModel,
    ModelError,
    get_offline_plan,
    load_model,
    parse_model,
    read_bytes,
    remove_offline_plan,
    serialize_model,
    set_offline_plan,
    shared_reads,
    unallocated_variables,
)
from .gcpause import fewer_collections
from .graph import ModelGraph, build_graph
from .memory import ArenaUse, simulate
from .results import (
    BudgetError,
    Inspection,
    NotVerified,
    OpRow,
    Optimized,
    PeakMemory,
    Report,
    VerificationError,
)
from .rewrites.padding import repair_model
from .rows import row_facts
from .runtimes import RuntimeTimeout, run_budget
from .scheduler import Progress
from .scheduling import (
    apply_orders,
    certificate,
    never_worse,
    peak_of_graph,
    replayed,
    schedule_model,
    stored_peak,
    subgraph_reports,
)
from .selfcheck import check_written
from .sweep import PeakResult, peak_memory_many
from .target import pipeline
from .target.pipeline import Target
from .tiling import tile_model
from .verify import Runnability, verify_written

Model = str | os.PathLike | bytes | LoadedModel

__all__ = [
    "Candidate", "GraphSpec", "Model", "PeakResult", "apply_orders", "arena_figures",
    "check_model", "find_hazards", "inspect_order", "load_model", "optimize", "peak_memory",
    "peak_memory_many", "plot_memory", "read_graph", "schedule_model",
]


@fewer_collections()
def peak_memory(
    model: Candidate, *, inplace: bool = False, time_limit: float = 10.0, tile: bool = False,
    max_overhead: float = 0.3,
) -> PeakMemory:
    """Arena bytes of the stored order and of the optimal order; nothing is written.

    ``model`` is a path, ``.tflite`` bytes, a loaded model, a graph description
    (``candidate.GraphSpec`` or its dict form) or a ``ModelGraph`` from ``read_graph``
    (reused as is: a loop asking several questions of one candidate reads it once). Bytes
    and paths are read straight from the flatbuffer tables, weights untouched; with
    ``inplace=False`` the model is answered by the compiled path (``fastpeak``:
    the same answer, or it declines and this general path gives it).
    ``inplace=True`` counts the sharing an offline plan from ``optimize`` would add. The
    figures are ``optimize``'s (its ``peak_before`` and ``peak_after``): the model made safe
    in TFLM first (``read_safe_graph``: explicit padding), and ``optimal <= stored`` whatever
    stops the search.
    ``tile=True`` answers for the model tiled (``tiling.tile_model``: the smallest TFLM total
    within ``max_overhead`` extra MACs); ``stored`` stays the untiled input's. It needs a
    ``.tflite`` model (path, bytes or loaded), not a graph description.
    Raises ``ModelError`` for input it cannot read or understand.
    """
    t0 = time.monotonic()
    if tile:
        if isinstance(model, ModelGraph | GraphSpec | dict):
            raise ModelError("tile=True needs a .tflite model (weights), not a graph")
        stored = stored_peak(read_safe_graph(model))
        tiled = tile_model(load_model(model).model, max_overhead=max_overhead)
        result = peak_of_graph(read_graph(serialize_model(tiled.model)), inplace, time_limit)
        result.stored = stored
    else:
        source = None
        if isinstance(model, str | os.PathLike):
            model, source = read_bytes(model), str(model)
        fast = None
        if not inplace and isinstance(model, bytes | bytearray | memoryview):
            fast = fastpeak.peak_memory(model, time_limit)  # None: the general path answers
        result = fast or peak_of_graph(read_safe_graph(model, source), inplace, time_limit)
    result.seconds = time.monotonic() - t0
    return result


def optimize(
    model: Model,
    *,
    inplace: bool = True,
    plan: bool = True,
    fix_shapes: bool = True,
    rewrite: bool = False,
    max_error: float | None = None,
    tflm_compat: bool = False,
    calibration: str | os.PathLike | None = None,
    time_limit: float = 10.0,
    verify: bool = True,
    use_tflm: bool = True,
    progress: Progress | None = None,
    output_name: str | None = None,
    on_stage: Callable[[str], None] | None = None,
    target: Target | None = None,
    tile: bool = False,
    ram_budget: int | None = None,
    max_overhead: float = 0.3,
    tile_objective: str = "total",
    verify_timeout: float | None = None,
) -> Optimized:
    """Reorder (and plan) a model for minimum TFLM arena; returns the new bytes and a report.

    Never worse: ``peak_after <= peak_before`` whatever stops the search (the stored order
    is always a candidate, and rewrites that end up needing more are dropped).
    With ``verify``, which runtimes run the input is checked first (before any search):
    ``ModelError`` when none does; when only LiteRT does, the output is verified with
    LiteRT and a warning says why TFLM cannot run it. Whenever TFLM runs the output its
    measured head must equal the planned one.

    With ``target`` (a Cortex-M build: architecture, kernel set, TFLM tree) the order and
    the plan count its kernels' scratch buffers, and the written model is run on that
    build under QEMU (``report.target``: measured head, tail, total, outputs verified).

    Raises ``ModelError`` for input it cannot handle, ``VerificationError`` when the
    written model does not compute what the input computes or TFLM's head differs from
    the plan, and ``SelfCheckError`` when the bytes fail the writer's self-check. With
    ``rewrite`` the graph is rewritten first where that lowers the optimal peak (numerics
    may change within ``max_error`` output LSBs for int8 models, 1e-5 relative for float);
    verification then compares bit for bit with the rewritten model and the rewrite error
    is reported.
    With ``tflm_compat`` DEQUANTIZE of float16 constants and DENSIFY of sparse constants
    (which TFLM cannot run) are folded into plain constants first; the output is then
    verified bit for bit against the input under LiteRT, in LiteRT and in TFLM.
    ``calibration`` is an ``.npz`` of representative inputs (one array per model input,
    samples first, as the TFLite converter's representative data): int8 partial sums get
    the ranges seen on it instead of their guaranteed ranges, and the error is measured on
    it too; an unreadable or mismatched file raises ``ModelError``.
    With ``tile`` (implied by ``ram_budget``) the regions that set the peak run tile by
    tile (``tiling.tile_model``; bit-exact, more MACs and ops): the smallest TFLM total
    within ``max_overhead`` extra MACs, or the fewest extra MACs whose TFLM total (head +
    tail, measured when tflite-micro is installed) fits ``ram_budget`` bytes; when nothing
    fits, ``BudgetError`` says the best reached; ``tile_objective="head"`` asks for the
    smallest head within ``max_overhead`` instead of the smallest total. The search prices
    the plan's row levers (``arena.layout``) and confirms those estimates by planning.
    Every runtime run (verification, rewrite error measurement, TFLM's figures) may take
    ``verify_timeout`` seconds (None: ``runtimes.RUN_TIMEOUT``, or the enclosing
    ``runtimes.run_budget``); a verification cut short raises ``NotVerified`` (a
    ``ModelError``), a rewrite whose error measurement is cut short is rejected.
    """
    t0 = time.monotonic()
    # after t0: the time limit counts from the call
    with fewer_collections(), run_budget(verify_timeout):
        stage = on_stage or (lambda _s: None)
        loaded = load_model(model)
        if isinstance(model, LoadedModel):
            m = copy.deepcopy(loaded.model)  # the caller's tables stay as they were
        else:  # ours alone: edit them in place (a deep copy of 100,000 tensors takes seconds)
            m, loaded = loaded.model, LoadedModel(None, loaded.raw, loaded.source)
        rep = Report(input=loaded.source, output=output_name)
        if tflm_compat:
            stage("tflm-compat")
            _tflm_compat(m, rep, time_limit)
        runs: list[Runnability] | None = None
        if verify:
            stage("runtimes")
            runs = _runnable(loaded, rep, use_tflm, m, tflm_compat)

        stage("shapes")
        t_work = time.monotonic()  # from here to the plan: what --time-limit bounds
        unsafe, as_read = _unsafe_in_tflm(m, rep, repaired=fix_shapes)
        read_tables = m

        reference = loaded  # what the written model must compute (the rewritten model, if any)
        if rewrite:
            stage("rewrite")
            m, reference = _rewrite(m, loaded, rep, inplace, time_limit, max_error, calibration,
                                    use_tflm)

        if tile or ram_budget is not None:
            stage("tile")
            m = _tile(m, rep, ram_budget, max_overhead, time_limit, plan, tile_objective)

        if fix_shapes:
            rep.repairs = repair_model(m)
        if m is read_tables and not rep.repairs and not rewrite and rep.tiles is None:
            # unchanged since the hazards were looked for: that graph (and its replays) hold
            true, graph, replays = as_read
        else:
            true = shapes.true_shapes(m)
            graph = build_graph(m, true)
            replays = {}
        rep.ops, rep.subgraphs = graph.n_ops, len(graph.subgraphs)
        if unsafe and not fix_shapes and plan:
            rep.warnings.append(
                "stored shapes or padding are unsafe in TFLM; without --fix-shapes no arena plan "
                "is written (TFLM plans online)"
            )
            plan = False
        if not plan:
            inplace = False

        reqs: dict = {}
        warning = None
        if target is not None:
            reqs, warning = pipeline.scratch_for(m, graph, target)
        elif plan:
            reqs, warning = pipeline.host_scratch_for(m, graph)
        if warning:
            rep.warnings.append(warning)
        if reqs and rep.tiles is None and not rep.rewrites:
            # the stored order pays the same kernel scratch: "before" counts it as "after" does
            stored = graph.stored_orders()
            before = pipeline.plan_use(replayed(graph, stored, False, replays), reqs,
                                       stored).lower_bound
            if rep.peak_input == rep.peak_before:  # nothing repaired: the input is that model
                rep.peak_input = before
            rep.peak_before = before

        stage("schedule")
        # with --tflm-compat's searches the model's own gets what is left of one time limit
        search_limit = max(0.0, t0 + time_limit - time.monotonic()) if tflm_compat else time_limit
        if rewrite:  # what the rewrites left of 1.5 x --time-limit, less the plan's tenth
            left = t_work + REWRITE_RUN_SHARE * time_limit - time.monotonic() - time_limit / 10
            search_limit = min(search_limit, max(0.0, left))
        orders, use = _schedule(graph, rep, inplace, search_limit, progress, reqs, replays)
        if rep.rewrites and rep.peak_after > rep.peak_before:
            return _without_rewrites(model, rep, locals())
        levers = _row_levers(m, graph) if plan else (None, None)  # before the ops move
        if rep.tiles and plan and levers[1] is not None:
            orders, use = _tile_order(graph, orders, use, rep, inplace, reqs, levers, time_limit)
        apply_orders(m, orders)
        if fix_shapes and true:
            shapes.fix_shapes(m, true)

        stage("plan")
        # TFLM's own planner places the kernels' scratch with the tensors, as ours does
        online = pipeline.plan_use(replayed(graph, orders, False, replays), reqs, orders)
        the_plan = _plan(m, graph, orders, pipeline.plan_use(use, reqs, orders), rep, plan,
                         time_limit, online, levers)

        rep.search_seconds = time.monotonic() - t_work
        stage("write")
        data = serialize_model(m)
        check_written(graph, data, orders, the_plan, use)
        if rep.tiles is not None:
            # the input made safe in TFLM when it is not (as the "before" peaks are)
            before = _safe_reference(_tables(loaded)) if unsafe else loaded.raw
            _tflm_totals(before, data, rep, use_tflm)
            if rep.tiles:
                stage("untiled")
                plain = _untiled(model, rep, locals())
                if plain is not None:
                    rep = plain.report
                    if ram_budget is not None and rep.tflm_after["total"] > ram_budget:
                        raise BudgetError(rep, rep.tflm_after["total"])
                    return plain
            if ram_budget is not None and rep.tflm_after["total"] > ram_budget:
                raise BudgetError(rep, rep.tflm_after["total"])

        if verify:
            stage("verify")
            with shared_reads():  # each model's read-only checks once, for all interpreters
                safe = _safe_reference(_tables(reference)) if unsafe else None
                ver = verify_written(reference, data, safe, runs,
                                     tflm_against_litert=bool(tflm_compat and reference is loaded))
                rep.verification = ver.to_dict()
                rep.seconds = time.monotonic() - t0
                if ver.timed_out:
                    raise NotVerified(f"{loaded.source}: cannot verify: " + "; ".join(
                        f"{r.runtime} {r.why}" for r in ver.timed_out), rep)
                if not ver.ok:
                    raise VerificationError(rep)
                if the_plan is not None and target is None and "tflm" in rep.verification["ran"]:
                    rep.tflm_head = _measured_head(data, loaded.source, rep)
                    if rep.tflm_head != the_plan.head:
                        raise VerificationError(
                            rep, f"TFLM's measured arena head {rep.tflm_head} B is not the "
                                 f"planned {the_plan.head} B")
        if target is not None:
            stage("target")
            ref = _safe_reference(_tables(reference)) if unsafe else reference.raw
            on = pipeline.verify(ref, data, target, rep.arena_planned)
            rep.target = on.to_dict()
            if verify and on.verified is False:
                rep.seconds = time.monotonic() - t0
                raise VerificationError(rep)
        rep.seconds = time.monotonic() - t0
        return Optimized(data, rep, orders, the_plan, use)


def _measured_head(data: bytes, source: str, rep: Report) -> int:
    """TFLM's measured head of the written ``data``; ``NotVerified`` when TFLM timed out
    (the planned head is then not confirmed: ``rep.verification`` says so)."""
    try:
        return tflm.measure_arena(data).head
    except RuntimeTimeout as exc:
        rep.verification["arena_confirmed"] = False
        raise NotVerified(f"{source}: cannot confirm the planned arena: TFLM {exc} "
                          f"measuring the written model", rep) from None


def _runnable(loaded: LoadedModel, rep: Report, use_tflm: bool, m=None,
              tflm_compat: bool = False) -> list[Runnability]:
    """Which runtimes run the input, before any search; ``ModelError`` when none does,
    ``NotVerified`` when one timed out (a loop that never ends: no search for nothing).

    With ``tflm_compat`` the output is made TFLM-runnable, so TFLM's refusal of the input
    is no warning (verification compares TFLM on the output with LiteRT on the input).
    """
    runs = runtimes.runnability(loaded.raw, use_tflm)
    late = [r for r in runs if r.timed_out]
    if late:
        raise NotVerified(f"{loaded.source}: cannot verify: " + "; ".join(
            f"{r.runtime} {r.why} running the input" for r in late))
    if not any(r.runs for r in runs):
        why = "; ".join(f"{r.runtime}: {r.why}" for r in runs)
        raise ModelError(f"{loaded.source}: cannot verify: no runtime runs this model ({why}); "
                         f"use --no-verify to write it unverified")
    if tflm_compat:
        return runs
    tflm_run = next(r for r in runs if r.runtime == "tflm")
    if not tflm_run.runs and tflm_run.why.startswith("tflite-micro is not installed"):
        rep.warnings.append("tflite-micro is not installed: verified with LiteRT only; the "
                            "planned arena was not measured (pip install "
                            "'tflite-reorder[tflm]')")
    elif not tflm_run.runs and use_tflm:
        rep.warnings.append("TFLM cannot run this model (reason above), so the output was "
                            "verified with LiteRT only; its arena plan is for TFLM builds "
                            "that can run it" + _compat_note(m))
    return runs


_ARGS = ("inplace", "plan", "fix_shapes", "time_limit", "verify", "use_tflm", "progress",
         "output_name", "on_stage", "tile", "ram_budget", "max_overhead", "calibration",
         "tile_objective", "target", "max_error", "rewrite", "verify_timeout")


def _again(model: Model, args: dict, **change) -> Optimized:
    """``optimize`` once more with the same arguments but ``change``."""
    return optimize(model, **{**{k: args[k] for k in _ARGS}, **change})


def _without_rewrites(model: Model, rep: Report, args: dict) -> Optimized:
    """Re-run without rewrites: the rewritten graph's order needs more than the input's."""
    again = _again(model, args, rewrite=False)
    again.report.warnings.append(
        f"rewrites dropped: the rewritten model's best order found needs {rep.peak_after} B, "
        f"more than the input's {rep.peak_before} B")
    return again


def _untiled_wins(untiled: dict, tiled: dict, ram_budget: int | None, objective: str) -> bool:
    """Whether the untiled arena is at least as good under the run's objective: the
    total (head + tail), the head for ``tile_objective="head"``, and with a RAM budget
    fitting it (with no MACs added; with ``"head"``: fitting it with a head no larger) or,
    when neither fits, the smaller total."""
    if ram_budget is not None:
        fits, tiled_fits = untiled["total"] <= ram_budget, tiled["total"] <= ram_budget
        if objective == "head" and fits and tiled_fits:
            return untiled["head"] <= tiled["head"]
        return fits or (not tiled_fits and untiled["total"] <= tiled["total"])
    key = "head" if objective == "head" else "total"
    return untiled[key] <= tiled[key]


def _untiled(model: Model, rep: Report, args: dict) -> Optimized | None:
    """The same run without tiling, when it is at least as good (``_untiled_wins``): a
    tiled answer is never worse than the best untiled one (the search prices estimates;
    this compares what the two written models need). None when the tiled one is better;
    ``rep.tflm_untiled`` gets the untiled figures either way."""
    plain = _again(model, args, tile=False, ram_budget=None, verify=False, on_stage=None,
                   tflm_compat=args["tflm_compat"])
    r = plain.report
    rep.tflm_untiled = _arena_of(plain.data, r.arena_planned or r.tflm_greedy_head,
                                 args["use_tflm"])
    if not _untiled_wins(rep.tflm_untiled, rep.tflm_after, args["ram_budget"],
                         args["tile_objective"]):
        return None
    again = _again(model, args, tile=False, ram_budget=None,
                   tflm_compat=args["tflm_compat"]) if args["verify"] else plain
    a = again.report
    a.tiles, a.ram_budget, a.tflm_untiled = [], rep.ram_budget, rep.tflm_untiled
    a.macs_before = a.macs_after = rep.macs_before
    a.tflm_before, a.tflm_after = rep.tflm_before, rep.tflm_untiled
    t, u = rep.tflm_after, rep.tflm_untiled
    a.warnings.append(
        f"tiling dropped: the tiled model needs a TFLM arena of {t['head']} + {t['tail']} = "
        f"{t['total']} B (head + tail), the untiled one {u['head']} + {u['tail']} = "
        f"{u['total']} B")
    return again


def _unsafe_in_tflm(m, rep: Report, repaired: bool) -> tuple[list, tuple]:
    """The input's shape and padding hazards, and its stored-order peaks as is and made safe;
    also the input's true shapes, graph and replays (``scheduling.replayed``), for reuse
    while the model stays unchanged (shape inference runs once for hazards and graph).

    "Before" figures compare with the safe input: the repairs add memory that the unsafe
    input only appears to save.
    """
    true = shapes.true_shapes(m)
    found = [h for h in hazards.find_hazards(m, true)
             if h.kind in ("shape", "uninitialized_padding")]
    rep.shape_fixes = [h.to_report() for h in found]
    graph = build_graph(m, true)
    replays: dict = {}
    rep.peak_input = rep.peak_before = stored_peak(graph, replays)
    if repaired and found:
        safe = copy.deepcopy(m)
        repair_model(safe)
        rep.peak_before = stored_peak(shapes.true_graph(safe))
    return found, (true, graph, replays)


# With --rewrite, shapes + rewrites + scheduling + planning stay within this many time limits;
# the rewrite search (error checks included) gets REWRITE_SEARCH_SHARE of them: scheduling
# the result starts from the best order the search found and planning takes a tenth.
REWRITE_RUN_SHARE = 1.5
REWRITE_SEARCH_SHARE = 1.3
COMPAT_SHARE = 0.25  # of the time limit, for the two searches --tflm-compat reports


def _tflm_compat(m, rep: Report, time_limit: float) -> None:
    """Fold the constants TFLM cannot compute (``rewrites.tflm_compat``) into ``m``; the
    report gets what was folded, the flash it costs and the arena it saves (stored order,
    and best order, both before and after).

    The two best-order searches share ``COMPAT_SHARE`` of ``time_limit`` (one deadline);
    ``optimize`` then gives the model's own search what is left of ``time_limit``, so the
    searches of the run stay within it together.
    """
    from .rewrites.tflm_compat import make_tflm_compatible

    deadline = time.monotonic() + COMPAT_SHARE * time_limit
    before = shapes.true_graph(m)
    result = make_tflm_compatible(m)
    after = shapes.true_graph(m)
    best_before = peak_of_graph(before, False, max(0.0, deadline - time.monotonic()) / 2)
    best_after = peak_of_graph(after, False, max(0.0, deadline - time.monotonic())) \
        if result.folded else best_before
    rep.tflm_compat = {
        **result.to_dict(),
        "arena_stored_before": stored_peak(before), "arena_stored_after": stored_peak(after),
        "arena_best_before": best_before.optimal, "arena_best_after": best_after.optimal,
        "arena_saved": best_before.optimal - best_after.optimal,
        "arena_best_proven": best_before.is_optimal and best_after.is_optimal,
    }


def _compat_note(m) -> str:
    """Point at ``--tflm-compat`` when it would make the model TFLM-runnable."""
    from .rewrites.tflm_compat import foldable

    if m is None or not foldable(m):
        return ""
    return "; --tflm-compat folds its float16/sparse weights into constants TFLM runs"


def _compat_hint(m, tflm_compat: bool) -> str:
    """Name ``--tflm-compat`` when the input fails to run because of what it folds."""
    from .rewrites.tflm_compat import foldable

    if tflm_compat or not foldable(m):
        return ""
    return ", or --tflm-compat to fold its float16/sparse weights into constants TFLM runs"


def _rewrite(m, loaded: LoadedModel, rep: Report, inplace: bool, time_limit: float,
             max_error: float | None, calibration: str | os.PathLike | None = None,
             use_tflm: bool = True):
    """Apply the rewrites that lower the optimal peak; the rewritten model is the reference.

    The search, error measurement included, gets ``REWRITE_SEARCH_SHARE`` × ``time_limit``;
    scheduling the result gets what is left of ``REWRITE_RUN_SHARE`` × ``time_limit`` (the
    rewritten model comes stored in the best order the search found, so a short schedule
    loses nothing), planning a tenth: the run stays within 1.5 × ``time_limit`` plus
    reading, writing and verification.
    """
    from .rewrites import rewrite_model
    from .rewrites.measure import load_calibration

    samples = None
    if calibration is not None:
        try:
            samples = load_calibration(str(calibration), loaded.raw)
        except ValueError as exc:
            raise ModelError(f"{calibration}: {exc}") from None
    t = time.monotonic()
    rw = rewrite_model(m, inplace=inplace, time_limit=time_limit / 4,
                       max_error_lsb=2.0 if max_error is None else max_error,
                       budget=REWRITE_SEARCH_SHARE * time_limit, calibration=samples,
                       use_tflm=use_tflm)
    reference = loaded
    if rw.applied:
        m = rw.model
        reference = parse_model(rw.data, loaded.source)
    rep.rewrites = rw.applied
    rep.rewrites_rejected = rw.rejected
    rep.rewrite_error = rw.error
    rep.peak_without_rewrites = rw.peak_before
    rep.rewrite_out_of_time = rw.out_of_time
    rep.rewrite_seconds = time.monotonic() - t
    return m, reference


def planned_heights(model_t, time_limit: float = 1.0, inplace: bool = True) -> list[int]:
    """Per op of ``model_t`` (stored order), the top of the bytes the planner's plan has
    live there, with the row levers: what ``tile_model`` confirms its estimates with."""
    graph = build_graph(model_t, shapes.true_shapes(model_t))
    orders = graph.stored_orders()
    use = simulate(graph, orders, inplace=inplace)
    the_plan = arena.plan_arena(use, time_limit, *_row_levers(model_t, graph))
    return arena.heights(use, the_plan, [use.op_scope[(0, v)] for v in orders[0]])


def _tile(m, rep: Report, ram_budget: int | None, max_overhead: float, time_limit: float,
          plan: bool, objective: str = "total"):
    """Tile the regions that pay; the report gets regions, MACs and the budget."""
    confirm = (lambda t: planned_heights(t, time_limit / 10)) if plan else None
    res = tile_model(m, max_overhead=max_overhead, ram_budget=ram_budget, levers=plan,
                     confirm=confirm, objective=objective)
    rep.tiles, rep.ram_budget = res.regions, ram_budget
    rep.macs_before, rep.macs_after = res.macs_before, res.macs_after
    if res.regions and get_offline_plan(res.model) is not None:
        remove_offline_plan(res.model)  # its tensor count no longer matches
    return res.model


def _arena_of(data: bytes, planned: int | None, use_tflm: bool) -> dict:
    """TFLM's head/tail/total for ``data``: measured, or the planned head and tail estimate."""
    if use_tflm and tflm.available():
        try:
            a = tflm.measure_arena(data)
            return {"head": a.head, "tail": a.tail, "total": a.total, "source": "tflm"}
        except (tflm.TflmError, ModelError):  # ModelError: the preflight refuses TFLM
            pass
    head = planned if planned is not None else stored_peak(shapes.true_graph(
        load_model(data).model))
    tail = tflm.estimate_tail(data)
    return {"head": head, "tail": tail, "total": head + tail, "source": "estimate"}


def _tflm_totals(before: bytes, data: bytes, rep: Report, use_tflm: bool) -> None:
    """The arena before (the input with TFLM's own planner) and after, for the tiles' report."""
    rep.tflm_before = _arena_of(before, None, use_tflm)
    rep.tflm_after = _arena_of(data, rep.arena_planned or rep.tflm_greedy_head, use_tflm)


def _schedule(graph: ModelGraph, rep: Report, inplace: bool, time_limit: float,
              progress: Progress | None, reqs=None, replays: dict | None = None
              ) -> tuple[list[list[int]], ArenaUse]:
    """Best orders, their TFLM replay, and the report's peak and certificate figures.

    With a target's scratch requests ``reqs`` the peaks include them; ``replays`` as for
    ``scheduling.replayed`` (each order is replayed once per in-place setting).
    """
    replays = {} if replays is None else replays
    ts = time.monotonic()
    scratch = pipeline.op_scratch(reqs or {})
    orders, results = schedule_model(graph, inplace, time_limit, progress, scratch)

    def measure(o: list[list[int]]) -> int:  # the model's arena with the kernels' scratch
        return pipeline.plan_use(replayed(graph, o, inplace, replays), reqs or {},
                                 o).lower_bound

    orders, rep.kept_stored_order = never_worse(graph, orders, inplace, replays,
                                                scratch=scratch,
                                                measure=measure if reqs else None)
    rep.schedule_seconds = time.monotonic() - ts
    use = replayed(graph, orders, inplace, replays)
    rep.peak_after = pipeline.plan_use(use, reqs or {}, orders).lower_bound
    rep.peak_after_no_inplace = pipeline.plan_use(replayed(graph, orders, False, replays),
                                                  reqs or {}, orders).lower_bound
    rep.lower_bound, rep.optimal = certificate(graph, results, rep.peak_after)
    rep.inplace = inplace
    rep.per_subgraph = subgraph_reports(graph, results, orders, inplace, scratch)
    return orders, use


def _plan(m, graph: ModelGraph, orders, use: ArenaUse, rep: Report, plan: bool,
          time_limit: float, online: ArenaUse,
          levers: tuple = (None, None)) -> arena.Plan | None:
    """Write an offline plan into ``m`` (or drop a stale one); TFLM's own head for comparison
    (``online``: the arena use TFLM plans without an offline plan; ``levers``: the graph
    and row facts for the row-granular layouts, ``_row_levers``).

    No plan is written with more buffer pairs alive together than the planner holds
    (``TooManyConflicts``), nor when TFLM would leave a called subgraph's variable tensor
    without memory (``flatbuffer_io.unallocated_variables``: the plan places the tensor
    whose entry TFLM reads for it, and every plan of ours places it): TFLM plans the arena
    online (``tflm_greedy_head``, the head ``arena`` reports), and the report says so.
    """
    offsets = None
    try:
        rep.tflm_greedy_head = arena.greedy_head(online)
        the_plan = arena.plan_arena(use, time_limit / 10, *levers) if plan else None
        if the_plan is not None:
            offsets = arena.offsets_for_model(graph, the_plan)
            if unallocated := unallocated_variables(m, offsets):
                raise _VariableClash(unallocated[0], offsets)
    except (arena.TooManyConflicts, _VariableClash) as exc:
        rep.warnings.append(f"no offline plan written: {exc} (TFLM plans it online)")
        plan, the_plan = False, None
        if rep.inplace:  # in-place sharing needs the offline plan: it will not happen
            rep.optimal = rep.optimal and rep.peak_after == rep.peak_after_no_inplace
            rep.peak_after, rep.inplace = rep.peak_after_no_inplace, False
            rep.lower_bound = min(rep.lower_bound, rep.peak_after)
    if not plan:
        if get_offline_plan(m) is not None:
            remove_offline_plan(m)  # an old plan does not fit the new order
            rep.warnings.append(
                "removed the input's offline plan (it does not fit the new order)")
        return None
    # A tenth of the search's budget: the whole run stays within 1.1 x --time-limit.
    set_offline_plan(m, offsets)
    rep.arena_planned = the_plan.head
    rep.plan_method, rep.plan_optimal = the_plan.method, the_plan.optimal
    rep.plan_clock_cut = the_plan.clock_cut
    return the_plan


class _VariableClash(Exception):
    """The plan places the tensor whose entry TFLM reads for a called subgraph's variable."""

    def __init__(self, where: tuple[int, int], offsets: list[int]) -> None:
        s, t = where
        super().__init__(
            f"TFLM looks up subgraph {s}'s variable tensor {t} at plan entry {t} (its index "
            f"within its subgraph), another tensor's, planned at offset {offsets[t]}; it "
            f"would leave the variable without memory")


def _row_levers(m, graph: ModelGraph) -> tuple:
    """The graph and row facts (of ``m`` in its stored order) that let the planner try
    row-granular layouts (``arena.layout``): single-subgraph models only (the byte
    replay's scope)."""
    if len(graph.subgraphs) != 1:
        return None, None
    nbytes = {(0, t): info.nbytes for t, info in enumerate(graph.subgraphs[0].tensors)}
    return graph, row_facts(m, graph.stored_orders(), nbytes)


def _tile_order(graph: ModelGraph, orders, use: ArenaUse, rep: Report, inplace: bool,
                reqs, levers: tuple, time_limit: float):
    """The scheduler's order or the tiles' stored one (tile by tile), whichever the plan
    with row levers places lower: the scheduler sees whole-tensor lifetimes only, and an
    order it finds as good may interleave tiles and keep more rows alive."""
    stored = graph.stored_orders()
    if stored == orders:
        return orders, use
    heads = []
    for o in (orders, stored):
        u = use if o is orders else simulate(graph, o, inplace=inplace)
        heads.append((arena.plan_arena(pipeline.plan_use(u, reqs, o), time_limit / 10,
                                       *levers).head, u))
    if heads[1][0] >= heads[0][0]:
        return orders, use
    u = heads[1][1]
    rep.peak_after = pipeline.plan_use(u, reqs or {}, stored).lower_bound
    rep.peak_after_no_inplace = pipeline.plan_use(simulate(graph, stored, inplace=False),
                                                  reqs or {}, stored).lower_bound
    rep.optimal = rep.optimal and rep.peak_after <= rep.lower_bound
    rep.kept_stored_order = True
    return stored, u


def _tables(loaded: LoadedModel):
    """The input's object tree, re-read when ``optimize`` has edited the one it read."""
    return loaded.model if loaded.model is not None else parse_model(loaded.raw,
                                                                      loaded.source).model


def _safe_reference(model_t) -> bytes:
    """TFLM's reference for an unsafe input: the input made safe, planned by TFLM itself."""
    ref_model = copy.deepcopy(model_t)
    repair_model(ref_model)
    shapes.fix_shapes(ref_model, shapes.true_shapes(ref_model))
    remove_offline_plan(ref_model)
    return serialize_model(ref_model)


# --- what the other commands show ------------------------------------------------------------


def inspect_order(
    model: Model, *, optimal: bool = False, inplace: bool = False, time_limit: float = 10.0,
    tile: bool = False,
) -> Inspection:
    """Every operator in execution order with the bytes live at its scope, the peak marked.

    The stored order, or with ``optimal`` the best order (in-place sharing counted when
    ``inplace``); with ``tile`` of the model as ``optimize(tile=True)`` tiles it.
    Raises ``ModelError`` for input it cannot read or understand.
    """
    loaded = load_model(model)
    if tile:
        tiled = serialize_model(tile_model(loaded.model).model)
        loaded = parse_model(tiled, loaded.source)
    graph = shapes.true_graph(loaded.model)
    orders = graph.stored_orders()
    if optimal:
        orders, _ = schedule_model(graph, inplace, time_limit)
    use = simulate(graph, orders, inplace=inplace and optimal)
    return Inspection(loaded.source, "optimal" if optimal else "stored", use.lower_bound,
                      op_rows(graph, orders, use))


def op_rows(graph: ModelGraph, orders: list[list[int]], use: ArenaUse) -> list[OpRow]:
    """One row per operator in execution order with the bytes live at its scope."""
    ops = sorted(use.op_scope.items(), key=lambda kv: kv[1])
    live = use.live_at([scope for _, scope in ops])
    position = [{v: i for i, v in enumerate(order)} for order in orders]
    rows = []
    for ((s, v), _), bytes_live in zip(ops, live, strict=True):
        sg = graph.subgraphs[s]
        op = sg.ops[v]
        out_shapes = ", ".join("x".join(map(str, sg.tensors[t].shape)) or "scalar"
                               for t in op.outputs)
        rows.append(OpRow(position[s][v], v, op.opcode, out_shapes, bytes_live, s))
    return rows


def arena_figures(model: Model, result: Optimized, *, measure: bool = True,
                  verify_timeout: float | None = None) -> dict:
    """Arena figures of ``result`` (optimised from ``model``), each saying what it is.

    ``head`` is the planned head (the offline plan's, or TFLM's own planner's without a
    plan); ``peak`` the written order's peak and ``lower_bound`` the proven bound (equal
    when ``optimal_order``). With ``measure`` and a TFLM that runs the model, TFLM's own
    figures and the bisected smallest arena are added and the tail is measured; otherwise
    the tail is an estimate and ``tail_source`` says why. Each TFLM run may take
    ``verify_timeout`` seconds (as ``optimize``): one cut short leaves TFLM's figures out,
    ``tflm_timed_out`` says so and nothing is claimed as measured. Raises ``TflmError``
    when TFLM runs the input but not ``result`` (our bug).
    """
    with run_budget(verify_timeout):
        return _arena_figures(model, result, measure)


def _arena_figures(model: Model, result: Optimized, measure: bool) -> dict:
    loaded = load_model(model)
    r = result.report
    figures: dict = {
        "input": loaded.source, "head": r.arena_planned or r.tflm_greedy_head,
        "head_source": "offline plan" if r.arena_planned else "TFLM's planner (no plan)",
        "peak": r.peak_after, "lower_bound": r.lower_bound, "optimal_order": r.optimal,
        "plan_optimal": r.plan_optimal, "stored_order_peak": r.peak_before,
        "tflm_greedy_head_same_order": r.tflm_greedy_head,
    }
    why_not = ("--no-measure" if not measure else
               "tflite-micro not installed" if not tflm.available() else None)
    before = None
    if why_not is None:
        try:
            before = tflm.measure_arena(loaded.raw)
        except tflm.TflmError as exc:  # float16 DEQUANTIZE, custom ops, ...: not our output's
            figures["tflm_cannot_run"] = " ".join(str(exc).split())[:400]
            why_not = "TFLM cannot run this model"
            if isinstance(exc, RuntimeTimeout):
                figures["tflm_timed_out"], why_not = True, f"TFLM {exc}"
    measured = None
    if before is not None:
        try:
            after = tflm.measure_arena(result.data)
            measured = {
                "tflm_head": after.head, "tflm_tail": after.tail, "tflm_total": after.total,
                "tflm_head_input": before.head, "tflm_total_input": before.total,
                "min_arena": tflm.min_arena_size(result.data), "tail": after.tail,
                "tail_source": "measured by TFLM",
            }
        except tflm.TflmTimeout as exc:  # the input was measured: only a timeout is excused
            figures["tflm_timed_out"], why_not = True, f"TFLM {exc}"
    if measured is None:
        figures["tail"] = tflm.estimate_tail(result.data)
        figures["tail_source"] = f"estimate ({why_not})"
    else:
        figures.update(measured)
    if r.target is not None:  # the target's own figures are what firmware must size for
        t = r.target
        figures["target"] = t
        figures["tail"], figures["tail_source"] = t["tail"], t["tail_source"]
        if t["head"] is not None:
            figures["head"] = t["head"]
        figures.pop("min_arena", None)  # the host's bisection does not hold on the target
    return figures


def target_figures(model: Model, target: Target) -> dict:
    """The model as it is, measured on a target build: head, tail, total, breakdown.

    Raises ``ModelError`` when the build cannot be made or run here (toolchain, QEMU or
    tree missing) or TFLM on the target refuses the model.
    """
    from dataclasses import asdict

    from .target import TargetError, measure

    loaded = load_model(model)
    try:
        return asdict(measure(loaded.raw, target.arch, target.kernels, target.tflm_src))
    except TargetError as exc:
        raise ModelError(f"{loaded.source}: on {target.arch} ({target.kernels}): {exc}") from None


def plot_memory(path: str | os.PathLike, model: Model, result: Optimized) -> None:
    """Write a plot (.png or .svg) of live bytes before and after, and of the plan.

    Raises ``ModelError`` when matplotlib is not installed (the ``plot`` extra).
    """
    loaded = load_model(model)
    graph = shapes.true_graph(loaded.model)
    before = simulate(graph, graph.stored_orders(), inplace=False)
    offsets = result.plan.offsets if result.plan else None
    title = f"{os.path.basename(loaded.source)}: arena over time"
    try:
        report.plot_memory(path, before, result.use, offsets, title)
    except ImportError:
        raise ModelError(f"{path}: plotting needs matplotlib (pip install "
                         f"'tflite-reorder[plot]')") from None


def find_hazards(model: Model) -> list[hazards.Hazard]:
    """Every static TFLM memory hazard of the model, grouped by kind.

    Raises ``ModelError`` for input it cannot read or understand.
    """
    return hazards.find_hazards(load_model(model).model)


def check_model(model: Model, verify_timeout: float | None = None) -> list:
    """``find_hazards`` plus whether this TFLM build runs the model (by running it once).

    Only a model with no entry is clean: every operator's shapes checked and TFLM able
    to run it. Without tflite-micro that cannot be known, which is an entry too; so is a
    run past ``verify_timeout`` seconds (as ``optimize``: not known to run).
    """
    loaded = load_model(model)
    found = hazards.find_hazards(loaded.model)
    with run_budget(verify_timeout):
        runs = runtimes.runnability(loaded.raw)
    tflm_run = next(r for r in runs if r.runtime == "tflm")
    if not tflm_run.runs:
        found.append(hazards.runtime_hazard(tflm_run.why, tflm.available(), tflm_run.timed_out))
    return found
