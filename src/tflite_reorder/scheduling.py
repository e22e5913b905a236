"""Model-level scheduling: every subgraph's best order, and what the model's peak proves.

The scheduler (``scheduler.schedule``) solves one subgraph's ``memory.Problem``. A model
has several when it has control flow: callees are scheduled before their callers, so a
control-flow operator's problem carries its callees' peaks under their chosen orders
(``memory.nested_extra``). The model's own figures always come from the exact TFLM replay
(``memory.simulate``); ``certificate`` says when the per-subgraph search proves them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from ai_edge_litert import schema_py_generated as schema

from .graph import ModelGraph, callees_first
from .memory import Problem, build_problem, nested_extra, peak, simulate
from .results import PeakMemory, SubgraphReport
from .scheduler import Progress, Schedule, schedule


def call_order(graph: ModelGraph) -> list[int]:
    """Subgraphs with callees before callers, so nested peaks are known when needed."""
    return callees_first(graph)


def schedule_model(
    graph: ModelGraph,
    inplace: bool = True,
    time_limit: float = 10.0,
    progress: Progress | None = None,
    scratch: Mapping[tuple[int, int], int] | None = None,
) -> tuple[list[list[int]], dict[int, Schedule]]:
    """Best order of every subgraph; control-flow ops carry their callees' peaks.

    ``scratch`` adds bytes live only at an operator, (subgraph, op) -> bytes: the kernels'
    scratch buffers on a target build. All subgraphs share one ``time_limit`` (seconds).
    Raises ``AssertionError`` if the scheduler ever returned a non-topological order (a
    bug; never written to a model).
    """
    deadline = time.monotonic() + time_limit
    orders = graph.stored_orders()
    results: dict[int, Schedule] = {}
    cache: dict = {}  # the callees' marking patterns, shared by all subgraphs
    for s in call_order(graph):
        sg = graph.subgraphs[s]
        p = _problem(graph, orders, s, inplace, cache, scratch)
        res = schedule(p, time_limit=max(0.0, deadline - time.monotonic()), progress=progress)
        if not sg.is_topological(res.order):  # never expected; keep the model valid
            raise AssertionError(f"subgraph {s}: scheduler returned a non-topological order")
        orders[s] = res.order
        results[s] = res
    return orders, results


def _problem(graph: ModelGraph, orders: list[list[int]], s: int, inplace,
             cache: dict, scratch: Mapping[tuple[int, int], int] | None) -> Problem:
    """Subgraph ``s``'s scheduling problem: its callees' peaks under ``orders`` and the
    kernels' scratch bytes (``scratch``, (subgraph, op) -> bytes) live at their operator."""
    extra = nested_extra(graph, orders, s, inplace, cache)
    if scratch:
        extra = [e + scratch.get((s, v), 0) for v, e in enumerate(extra)]
    return build_problem(graph.subgraphs[s], extra, inplace)


def certificate(
    graph: ModelGraph, results: dict[int, Schedule], model_peak: int
) -> tuple[int, bool]:
    """The model-level lower bound and whether the model peak is proven optimal.

    A subgraph's search bound holds for the model only when every subgraph it calls
    (transitively) was solved optimally: its problem carries the callees' *found* peaks,
    which are minima only when proven. The model bound is the largest such valid bound
    (a callee's peak happens inside its caller's scope, so each is a bound for the model),
    capped at the model's peak. Subgraph 0's search includes its callees' peaks; when that
    matches the exact TFLM replay (it does unless a subgraph is called twice) and every
    subgraph is optimal, the model peak is proven.

    Raises ``KeyError`` when ``results`` has no subgraph 0.
    """
    proven = _callees_proven(graph, results)
    valid = [r.lower_bound for s, r in results.items() if proven[s]]
    lb = min(max(valid, default=0), model_peak)
    optimal = results[0].peak == model_peak and all(r.optimal for r in results.values())
    return (model_peak if optimal else lb), optimal


def _callees_proven(graph: ModelGraph, results: dict[int, Schedule]) -> list[bool]:
    """Per subgraph: whether every subgraph it calls, directly or through others, that has
    a result was solved optimally (callees first, one pass: control flow may nest
    thousands deep)."""
    proven = [True] * len(graph.subgraphs)
    for s in call_order(graph):
        proven[s] = all(proven[c] and (c not in results or results[c].optimal)
                        for op in graph.subgraphs[s].ops for c in op.calls)
    return proven


def never_worse(
    graph: ModelGraph, orders: list[list[int]], inplace: bool, replays: dict | None = None,
    scratch: Mapping[tuple[int, int], int] | None = None,
    measure: Callable[[list[list[int]]], int] | None = None,
) -> tuple[list[list[int]], bool]:
    """``orders``, with the stored order put back wherever that needs less arena.

    The stored order is a valid schedule (when topological: a shuffled input is not), so
    whatever stopped the search the answer is never worse than it: per subgraph (callees
    first, each in its callers' context under the orders chosen so far) and then for the
    whole model by exact TFLM replay. ``replays`` (a dict kept by the caller for this
    graph, see ``replayed_peak``) saves replaying an order twice. With the kernels'
    scratch (``scratch`` per operator, as ``schedule_model`` takes it, and ``measure``, the
    model's arena for some orders with the scratch buffers planned) the comparisons count
    it, as TFLM does: an order can need less without scratch and more with it. Returns the
    orders and whether any stored order was put back.
    """
    replays = {} if replays is None else replays
    if measure is None:
        def measure(o: list[list[int]]) -> int:
            return replayed_peak(graph, o, inplace, replays)
    best = [list(o) for o in orders]
    stored = graph.stored_orders()
    valid = [sg.is_topological(o) for sg, o in zip(graph.subgraphs, stored, strict=True)]
    kept = False
    cache: dict = {}  # best[s] changes only before s's callers are looked at
    for s in call_order(graph):
        if best[s] == stored[s] or not valid[s]:
            continue
        p = _problem(graph, best, s, inplace, cache, scratch)
        if peak(p, stored[s]) < peak(p, best[s]):
            best[s], kept = list(stored[s]), True
    if all(valid) and best != stored and measure(stored) < measure(best):
        best, kept = stored, True
    return best, kept


def replayed_peak(graph: ModelGraph, orders: list[list[int]], inplace,
                  replays: dict) -> int:
    """``simulate(graph, orders, inplace).lower_bound``, remembered in ``replays`` (one
    dict per graph: the key is the orders and the in-place setting)."""
    key = (tuple(map(tuple, orders)), inplace)
    found = replays.get(key)
    if found is None:
        found = replays[key] = simulate(graph, orders, inplace=inplace).lower_bound
    return found


def stored_peak(graph: ModelGraph) -> int:
    """Arena bytes the stored order needs, without in-place sharing (TFLM's own planning)."""
    return replayed_peak(graph, graph.stored_orders(), False, {})


def peak_of_graph(graph: ModelGraph, inplace: bool = False, time_limit: float = 10.0
                  ) -> PeakMemory:
    """``peak_memory``'s answer for a graph: the stored order's arena and the best order's,
    with the search's certificate; ``optimal <= stored`` whatever stops the search."""
    t0 = time.monotonic()
    replays: dict = {}  # each order is replayed once (the stored order and the answer)
    stored = replayed_peak(graph, graph.stored_orders(), False, replays)
    orders, results = schedule_model(graph, inplace, time_limit)
    orders, _ = never_worse(graph, orders, inplace, replays)
    best = replayed_peak(graph, orders, inplace, replays)
    lb, optimal = certificate(graph, results, best)
    return PeakMemory(stored, best, lb, optimal, time.monotonic() - t0)


def subgraph_reports(
    graph: ModelGraph, results: dict[int, Schedule], orders: list[list[int]], inplace: bool,
    scratch: Mapping[tuple[int, int], int] | None = None,
) -> list[SubgraphReport]:
    """Per subgraph: the stored order's peak next to the written order's and the certificate.

    ``peak_after`` is the peak of ``orders`` (what is written, after ``never_worse``), not
    the search's own answer; the bound and ``optimal`` are the search's, and ``optimal``
    holds only when the written order reaches the search's proven peak. ``scratch`` (as
    ``schedule_model`` takes it) counts the kernels' scratch on both sides.
    """
    stored_orders = graph.stored_orders()
    cache_after: dict = {}  # one per set of orders: the callees' marking patterns
    cache_before: dict = {}
    out = []
    for s, r in sorted(results.items()):
        sg = graph.subgraphs[s]
        after = peak(_problem(graph, orders, s, inplace, cache_after, scratch), orders[s])
        before = peak(_problem(graph, stored_orders, s, False, cache_before, scratch),
                      stored_orders[s])
        out.append(SubgraphReport(
            s, sg.name, len(sg.ops), before, after,
            min(r.lower_bound, after), r.optimal and after <= r.peak, r.states,
            round(r.seconds, 4), r.stopped,
        ))
    return out


def apply_orders(model: schema.ModelT, orders: list[list[int]]) -> None:
    """Permute each subgraph's stored operators; TFLM runs them in this order.

    Raises ``ValueError`` when ``orders`` does not have one order per subgraph.
    """
    for sg, order in zip(model.subgraphs, orders, strict=True):
        ops = sg.operators or []
        sg.operators = [ops[v] for v in order]
