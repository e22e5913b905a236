"""Model-level scheduling: every subgraph's best order, and what the model's peak proves.

The scheduler (``scheduler.schedule``) solves one subgraph's ``memory.Problem``. A model
has several when it has control flow: callees are scheduled before their callers, so a
control-flow operator's problem carries its callees' peaks under their chosen orders
(``memory.nested_extra``). The model's own figures always come from the exact TFLM replay
(``memory.simulate``); ``certificate`` says when the per-subgraph search proves them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from ai_edge_litert import schema_py_generated as schema

from .graph import ModelGraph, callees_first
from .memory import build_problem, nested_extra, peak, simulate, subgraph_problems
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
        extra = nested_extra(graph, orders, s, inplace, cache)
        if scratch:
            extra = [e + scratch.get((s, v), 0) for v, e in enumerate(extra)]
        p = build_problem(sg, extra, inplace)
        res = schedule(p, time_limit=max(0.0, deadline - time.monotonic()), progress=progress)
        if not sg.is_topological(res.order):  # never expected; keep the model valid
            raise AssertionError(f"subgraph {s}: scheduler returned a non-topological order")
        orders[s] = res.order
        results[s] = res
    return orders, results


def certificate(results: dict[int, Schedule], model_peak: int) -> tuple[int, bool]:
    """The model-level lower bound and whether the model peak is proven optimal.

    Subgraph 0's search includes its callees' peaks; when that matches the exact TFLM
    replay (it does unless a subgraph is called twice) its certificate is the model's.

    Raises ``KeyError`` when ``results`` has no subgraph 0.
    """
    root = results[0]
    agree = root.peak == model_peak
    optimal = agree and all(r.optimal for r in results.values())
    lb = min(root.lower_bound, model_peak)
    return (model_peak if optimal else lb), optimal


def stored_peak(graph: ModelGraph) -> int:
    """Arena bytes the stored order needs, without in-place sharing (TFLM's own planning)."""
    return simulate(graph, graph.stored_orders(), inplace=False).lower_bound


def peak_of_graph(graph: ModelGraph, inplace: bool = False, time_limit: float = 10.0
                  ) -> PeakMemory:
    """``peak_memory``'s answer for a graph: the stored order's arena and the best order's,
    with the search's certificate."""
    t0 = time.monotonic()
    stored = stored_peak(graph)
    orders, results = schedule_model(graph, inplace, time_limit)
    best = simulate(graph, orders, inplace=inplace).lower_bound
    lb, optimal = certificate(results, best)
    return PeakMemory(stored, best, lb, optimal, time.monotonic() - t0)


def subgraph_reports(graph: ModelGraph, results: dict[int, Schedule]) -> list[SubgraphReport]:
    """Per subgraph: the stored order's peak next to the search's result and certificate."""
    stored_problems = subgraph_problems(graph, graph.stored_orders(), False)
    out = []
    for s, r in sorted(results.items()):
        sg = graph.subgraphs[s]
        out.append(SubgraphReport(
            s, sg.name, len(sg.ops), peak(stored_problems[s], range(len(sg.ops))), r.peak,
            r.lower_bound, r.optimal, r.states, round(r.seconds, 4), r.stopped,
        ))
    return out


def apply_orders(model: schema.ModelT, orders: list[list[int]]) -> None:
    """Permute each subgraph's stored operators; TFLM runs them in this order.

    Raises ``ValueError`` when ``orders`` does not have one order per subgraph.
    """
    for sg, order in zip(model.subgraphs, orders, strict=True):
        ops = sg.operators or []
        sg.operators = [ops[v] for v in order]
