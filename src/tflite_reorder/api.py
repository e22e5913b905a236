"""The Python API: read → graph → schedule (→ rewrite) → plan → write, one direction.

``peak_memory`` answers "how much arena does this model need, and how little could it
need?" without writing anything (the NAS-loop call). ``optimize`` produces the new model
bytes and a :class:`Report`; the CLI is a thin layer over both.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from . import arena, shapes
from .flatbuffer_io import (
    LoadedModel,
    ModelError,
    get_offline_plan,
    load_model,
    parse_model,
    remove_offline_plan,
    serialize_model,
    set_offline_plan,
)
from .graph import ModelGraph, build_graph, callees_first
from .memory import ArenaUse, build_problem, nested_extra, peak, simulate
from .scheduler import Progress, Schedule, schedule


@dataclass
class SubgraphReport:
    index: int
    name: str
    ops: int
    peak_before: int
    peak_after: int
    lower_bound: int
    optimal: bool
    states: int
    seconds: float
    stopped: str = ""


@dataclass
class Report:
    """What one run did and measured; ``to_dict`` is the CLI's ``--json``."""

    input: str
    output: str | None = None
    ops: int = 0
    subgraphs: int = 0
    peak_input: int = 0  # the input as it is: stored order, true sizes, no sharing
    peak_before: int = 0  # stored order after repairs (the safe input), no sharing
    peak_after: int = 0  # our order (and in-place sharing when enabled)
    peak_after_no_inplace: int = 0
    lower_bound: int = 0
    optimal: bool = False
    arena_planned: int | None = None  # head of the offline plan written into the model
    plan_method: str | None = None
    plan_optimal: bool | None = None
    tflm_greedy_head: int | None = None  # TFLM's own planner on our order, for comparison
    inplace: bool = True
    shape_fixes: list[dict] = field(default_factory=list)  # hazards found in the input
    repairs: list[dict] = field(default_factory=list)  # ops inserted to make TFLM safe
    rewrites: list[dict] = field(default_factory=list)  # applied (numerics may change)
    rewrites_rejected: list[dict] = field(default_factory=list)
    rewrite_error: dict | None = None  # rewritten model vs input, measured on random inputs
    peak_without_rewrites: int | None = None  # optimal-order peak before rewriting
    verification: dict | None = None
    seconds: float = 0.0
    schedule_seconds: float = 0.0
    per_subgraph: list[SubgraphReport] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.peak_before / self.peak_after if self.peak_after else 1.0

    @property
    def gap(self) -> int:
        return self.peak_after - self.lower_bound

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ratio"] = round(self.ratio, 4)
        d["gap"] = self.gap
        return d


@dataclass
class Optimized:
    data: bytes
    report: Report
    orders: list[list[int]]
    plan: arena.Plan | None = None
    use: ArenaUse | None = None


@dataclass
class PeakMemory:
    """``peak_memory``'s answer, in bytes of TFLM arena (activations only)."""

    stored: int  # the model's own operator order
    optimal: int  # the best order (proven minimal when ``is_optimal``)
    lower_bound: int
    is_optimal: bool
    seconds: float


# ---------------------------------------------------------------------------------------------


def schedule_model(
    graph: ModelGraph,
    inplace: bool = True,
    time_limit: float = 10.0,
    progress: Progress | None = None,
) -> tuple[list[list[int]], dict[int, Schedule]]:
    """Best order of every subgraph; control-flow ops carry their callees' peaks."""
    deadline = time.monotonic() + time_limit
    orders = graph.stored_orders()
    results: dict[int, Schedule] = {}
    cache: dict = {}
    for s in callees_first(graph):
        sg = graph.subgraphs[s]
        p = build_problem(sg, nested_extra(graph, orders, s, inplace, cache), inplace)
        res = schedule(p, time_limit=max(0.0, deadline - time.monotonic()), progress=progress)
        if not sg.is_topological(res.order):  # never expected; keep the model valid
            raise AssertionError(f"subgraph {s}: scheduler returned a non-topological order")
        orders[s] = res.order
        results[s] = res
    return orders, results


def _problems(graph: ModelGraph, orders: list[list[int]], inplace: bool) -> list:
    cache: dict = {}
    return [
        build_problem(sg, nested_extra(graph, orders, s, inplace, cache), inplace)
        for s, sg in enumerate(graph.subgraphs)
    ]


def _true_shapes(model) -> dict:
    try:
        return shapes.infer_shapes(model)
    except Exception:  # inference is best effort: unknown ops keep their stored shapes
        return {}


def peak_memory(
    model: str | bytes | LoadedModel,
    *,
    inplace: bool = False,
    time_limit: float = 10.0,
) -> PeakMemory:
    """Arena bytes of the stored order and of the optimal order; nothing is written.

    ``inplace=True`` counts the sharing an offline plan from ``optimize`` would add.
    """
    t0 = time.monotonic()
    loaded = load_model(model)
    graph = build_graph(loaded.model, _true_shapes(loaded.model))
    stored = simulate(graph, graph.stored_orders(), inplace=False).lower_bound
    orders, results = schedule_model(graph, inplace, time_limit)
    best = simulate(graph, orders, inplace=inplace).lower_bound
    lb, optimal = _certificate(results, best)
    return PeakMemory(stored, best, lb, optimal, time.monotonic() - t0)


def _certificate(results: dict[int, Schedule], model_peak: int) -> tuple[int, bool]:
    """The model-level lower bound and whether the model peak is proven optimal.

    Subgraph 0's search includes its callees' peaks; when that matches the exact TFLM
    replay (it does unless a subgraph is called twice) its certificate is the model's.
    """
    root = results[0]
    agree = root.peak == model_peak
    optimal = agree and all(r.optimal for r in results.values())
    lb = min(root.lower_bound, model_peak)
    return (model_peak if optimal else lb), optimal


def _stored_peaks(model, repaired: bool) -> tuple[int, int]:
    """Peak of the stored order as the input is, and as it is once made safe in TFLM.

    "Before" figures compare with the safe input: the repairs add memory that the unsafe
    input only appears to save.
    """
    as_is = build_graph(model, _true_shapes(model))
    peak_as_is = simulate(as_is, as_is.stored_orders(), inplace=False).lower_bound
    if not repaired:
        return peak_as_is, peak_as_is
    safe = copy.deepcopy(model)
    repair_model(safe)
    g = build_graph(safe, _true_shapes(safe))
    return peak_as_is, simulate(g, g.stored_orders(), inplace=False).lower_bound


def repair_model(model) -> list[dict]:
    """Make the model safe in TFLM before planning: explicit padding for SPACE_TO_BATCH_ND.

    TFLM's SPACE_TO_BATCH_ND pads with a value it never initialises; a PAD in front of it
    pads with the zero point, as LiteRT does. Shapes are repaired later, from inference.
    """
    return [{"kind": "explicit_pad", **r} for r in shapes.repair_padding(model)]


def _hazard_dict(h) -> dict:
    return {"kind": h.kind, "subgraph": h.subgraph, "tensor": h.tensor, "name": h.name,
            "op": h.op_index, "opcode": h.opcode, "stored": list(h.stored),
            "true": list(h.true), "bytes_missing": h.bytes_missing}


def apply_orders(model, orders: list[list[int]]) -> None:
    """Permute each subgraph's stored operators; TFLM runs them in this order."""
    for sg, order in zip(model.subgraphs, orders, strict=True):
        ops = sg.operators or []
        sg.operators = [ops[v] for v in order]


def optimize(
    model: str | bytes | LoadedModel,
    *,
    inplace: bool = True,
    plan: bool = True,
    fix_shapes: bool = True,
    rewrite: bool = False,
    max_error: float | None = None,
    time_limit: float = 10.0,
    verify: bool = True,
    use_tflm: bool = True,
    progress: Progress | None = None,
    output_name: str | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> Optimized:
    """Reorder (and plan) a model for minimum TFLM arena; returns the new bytes and a report.

    Raises ``ModelError`` for input it cannot handle and ``VerificationError`` when the
    written model does not compute what the input computes. With ``rewrite`` the graph is
    rewritten first where that lowers the optimal peak (numerics may change within
    ``max_error`` output LSBs for int8 models, 1e-5 relative for float); verification then
    compares bit for bit with the rewritten model and the rewrite error is reported.
    """
    t0 = time.monotonic()
    stage = on_stage or (lambda _s: None)
    loaded = load_model(model)
    m = copy.deepcopy(loaded.model)
    report = Report(input=loaded.source, output=output_name)

    stage("shapes")
    hazards = [h for h in shapes.find_hazards(m) if h.kind in ("shape", "uninitialized_padding")]
    report.shape_fixes = [_hazard_dict(h) for h in hazards]
    report.peak_input, report.peak_before = _stored_peaks(m, fix_shapes and bool(hazards))

    reference = loaded  # what the written model must compute (the rewritten model, if any)
    if rewrite:
        stage("rewrite")
        from .rewrites import rewrite_model

        rw = rewrite_model(m, inplace=inplace, time_limit=max(0.5, time_limit / 4),
                           max_error_lsb=2.0 if max_error is None else max_error)
        if rw.applied:
            m = rw.model
            reference = parse_model(serialize_model(copy.deepcopy(m)), loaded.source)
        report.rewrites = rw.applied
        report.rewrites_rejected = rw.rejected
        report.rewrite_error = rw.error
        report.peak_without_rewrites = rw.peak_before

    if fix_shapes:
        report.repairs = repair_model(m)
    true = _true_shapes(m)
    graph = build_graph(m, true)
    report.ops, report.subgraphs = graph.n_ops, len(graph.subgraphs)
    if hazards and not fix_shapes and plan:
        report.warnings.append(
            "stored shapes or padding are unsafe in TFLM; without --fix-shapes no arena plan "
            "is written (TFLM plans online)"
        )
        plan = False
    if not plan:
        inplace = False

    stage("schedule")
    ts = time.monotonic()
    orders, results = schedule_model(graph, inplace, time_limit, progress)
    report.schedule_seconds = time.monotonic() - ts
    use = simulate(graph, orders, inplace=inplace)
    report.peak_after = use.lower_bound
    report.peak_after_no_inplace = simulate(graph, orders, inplace=False).lower_bound
    report.lower_bound, report.optimal = _certificate(results, report.peak_after)
    report.inplace = inplace
    stored_problems = _problems(graph, graph.stored_orders(), False)
    for s, r in sorted(results.items()):
        sg = graph.subgraphs[s]
        report.per_subgraph.append(SubgraphReport(
            s, sg.name, len(sg.ops), peak(stored_problems[s], range(len(sg.ops))), r.peak,
            r.lower_bound, r.optimal, r.states, round(r.seconds, 4), r.stopped,
        ))
    apply_orders(m, orders)

    if fix_shapes and true:
        shapes.fix_shapes(m, true)

    stage("plan")
    the_plan = None
    report.tflm_greedy_head = arena.greedy_head(simulate(graph, orders, inplace=False))
    if plan:
        # A tenth of the search's budget: the whole run stays within 1.1 x --time-limit.
        the_plan = arena.plan_arena(use, time_limit=time_limit / 10)
        set_offline_plan(m, arena.offsets_for_model(graph, the_plan))
        report.arena_planned = the_plan.head
        report.plan_method, report.plan_optimal = the_plan.method, the_plan.optimal
    elif get_offline_plan(m) is not None:
        remove_offline_plan(m)  # an old plan does not fit the new order
        report.warnings.append("removed the input's offline plan (it does not fit the new order)")

    stage("write")
    data = serialize_model(m)
    check_written(graph, data, orders, the_plan, use)

    if verify:
        stage("verify")

        safe = None
        if hazards:  # TFLM's reference: the input made safe, planned by TFLM itself
            ref_model = copy.deepcopy(reference.model)
            repair_model(ref_model)
            shapes.fix_shapes(ref_model, _true_shapes(ref_model))
            remove_offline_plan(ref_model)
            safe = serialize_model(ref_model)
        ver = _run_verify(reference, data, safe, use_tflm)
        report.verification = ver.to_dict()
        if not ver.ok:
            report.seconds = time.monotonic() - t0
            raise VerificationError(report)
    report.seconds = time.monotonic() - t0
    return Optimized(data, report, orders, the_plan, use)


def _run_verify(loaded: LoadedModel, data: bytes, reference: bytes | None, use_tflm: bool):
    """``verify.verify``, where a runtime that cannot run the *input* is a bad input.

    LiteRT or TFLM refuse some models (custom or unknown ops, dynamic tensors); those
    cannot be checked by running, and the user chooses to skip that (``verify=False``).
    A runtime that runs the input but fails on our output is our bug: re-raised as is.
    """
    from . import tflm
    from .verify import random_inputs, run_litert
    from .verify import verify as run_verify

    try:
        return run_verify(loaded.raw, data, tflm_reference=reference, use_tflm=use_tflm)
    except Exception as exc:
        failure = exc
    try:
        x = random_inputs(loaded.raw, 1)[0]
        run_litert(loaded.raw, x)
        if use_tflm and tflm.available():
            tflm.run_tflm(reference or loaded.raw, x)
    except Exception as exc:
        why = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        raise ModelError(f"{loaded.source}: cannot verify, the input model does not run "
                         f"({why}); use --no-verify to skip verification") from None
    raise failure


class VerificationError(Exception):
    """The written model's outputs differ from the input's; nothing should be written."""

    def __init__(self, report: Report) -> None:
        bad = [c for c in report.verification["comparisons"] if not c["within_tolerance"]]
        what = ", ".join(f"{c['runtime']} max diff {c['max_abs_diff']:g}" for c in bad)
        super().__init__(f"{report.input}: verification failed ({what})")
        self.report = report


def check_written(
    graph: ModelGraph, data: bytes, orders: list[list[int]], plan: arena.Plan | None,
    use: ArenaUse,
) -> None:
    """Re-read the bytes about to be written and check them against what we meant to write.

    Same operators (by opcode and tensors) in each subgraph, in a topological order, same
    tensors, and an offline plan inside bounds whose live buffers never overlap.
    """
    out = parse_model(data, "<output>")
    g2 = build_graph(out.model)
    if len(g2.subgraphs) != len(graph.subgraphs):
        raise ModelError("internal check: subgraph count changed")
    for s, (a, b) in enumerate(zip(graph.subgraphs, g2.subgraphs, strict=True)):
        if len(a.tensors) != len(b.tensors):
            raise ModelError(f"internal check: subgraph {s} tensor count changed")
        want = [(a.ops[v].opcode, a.ops[v].inputs, a.ops[v].outputs) for v in orders[s]]
        got = [(op.opcode, op.inputs, op.outputs) for op in b.ops]
        if want != got:
            raise ModelError(f"internal check: subgraph {s} operators differ from the plan")
        if not b.is_topological(list(range(len(b.ops)))):
            raise ModelError(f"internal check: subgraph {s} order is not topological")
    offsets = get_offline_plan(out.model)
    if plan is None:
        if offsets is not None:
            raise ModelError("internal check: unexpected offline plan in output")
        return
    if offsets is None or len(offsets) != graph.n_tensors:
        raise ModelError("internal check: offline plan missing or of the wrong length")
    base = [0]
    for sg in graph.subgraphs:
        base.append(base[-1] + len(sg.tensors))
    place = {}
    for b in use.buffers:
        s, t = b.tensors[0]
        off = offsets[base[s] + t]
        if off < 0 or off % 16 or off + b.size > plan.head:
            raise ModelError(f"internal check: tensor {t} of subgraph {s} placed out of bounds")
        for s2, t2 in b.tensors:
            if offsets[base[s2] + t2] != off:
                raise ModelError("internal check: in-place tensors do not share their buffer")
        place[b] = off
    # Buffers TFLM's marking never reaches (lifetime -1) are touched by no kernel.
    bufs = sorted((b for b in use.buffers if b.first >= 0), key=lambda b: b.first)
    for i, x in enumerate(bufs):
        for y in bufs[i + 1:]:
            if y.first > x.last:
                break
            if x.overlaps(y) and place[x] < place[y] + y.size and place[y] < place[x] + x.size:
                raise ModelError("internal check: offline plan overlaps two live tensors")
