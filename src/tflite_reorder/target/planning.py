"""Arena plans that hold on the target: kernel scratch buffers planned with the tensors.

TFLM plans scratch buffers online, after placing every offline-planned tensor at its
offset: largest first (ties: the one requested last first), each at the lowest gap among
the buffers alive at its operator (``GreedyMemoryPlanner`` with offline offsets). So a plan
that reserves, at every operator's scope, a gap for that operator's scratch is never
exceeded: the greedy finds that gap or a lower one. We therefore plan tensors and scratch
buffers together (a scratch buffer is a block alive at its operator's scope only), write
the tensors' offsets, and replay TFLM's online placement of the scratch buffers to predict
the head the target will report (``target_head``). The lower bound includes the scratch
bytes, so a plan at the lower bound is optimal for the target and its head is exact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..arena import Plan, plan_arena, write_plan
from ..arena.blocks import lowest_fit
from ..flatbuffer_io import load_model
from ..memory import ArenaUse, Buffer, simulate
from ..shapes import true_graph
from .scratch import requests

SCRATCH = 1 << 30  # pseudo subgraph index of scratch buffers: sorts after every tensor
Requests = Mapping[tuple[int, int], tuple[int, ...]]


def scratch_buffers(use: ArenaUse, reqs: Requests,
                    orders: Sequence[Sequence[int]]) -> list[Buffer]:
    """One buffer per scratch request, in TFLM's request order (subgraph, stored position)."""
    position = {(s, v): i for s, order in enumerate(orders) for i, v in enumerate(order)}
    out = []
    for s, v in sorted(reqs, key=lambda k: (k[0], position.get(k, k[1]))):
        if (s, v) not in use.op_scope:
            continue  # an op TFLM never reaches plans no scratch
        scope = use.op_scope[(s, v)]
        for size in reqs[(s, v)]:
            out.append(Buffer(((SCRATCH, len(out)),), size, scope, scope))
    return out


def with_scratch(use: ArenaUse, reqs: Requests, orders: Sequence[Sequence[int]]) -> ArenaUse:
    """The same arena use plus the scratch buffers (hook for the planner and lower bound)."""
    return ArenaUse(use.buffers + tuple(scratch_buffers(use, reqs, orders)), use.n_scopes,
                    use.op_scope)


def target_head(use: ArenaUse, offsets: Mapping[tuple[int, int], int]) -> int:
    """The head TFLM reports for ``offsets`` (tensors) with the scratch buffers online.

    ``use`` must come from ``with_scratch``; tensor buffers without an offset are treated
    as online too (TFLM plans them with the scratch buffers).
    """
    fixed, online = [], []
    for add, b in enumerate(sorted(use.buffers, key=lambda b: min(b.tensors))):
        key = b.tensors[0]
        if key[0] != SCRATCH and key in offsets:
            fixed.append((b, offsets[key]))
        else:
            online.append((add, b))
    placed = list(fixed)
    # ReverseSortInPlace over online buffers copied in reverse add order: by size
    # descending, equal sizes last-added first.
    for _, b in sorted(online, key=lambda ab: (-ab[1].size, -ab[0])):
        spans = [(o, o + p.size) for p, o in placed if p.overlaps(b)]
        placed.append((b, lowest_fit(b.size, spans)))
    return max((o + b.size for b, o in placed), default=0)


@dataclass(frozen=True)
class TargetPlan:
    """A plan for the target: its head, the predicted target head and the lower bound."""

    plan: Plan
    predicted_head: int  # TFLM's head on the target for this plan (scratch online)
    scratch_bytes: int  # sum of all scratch requests (each rounded to 16)
    model: bytes  # the model carrying the plan
    use: ArenaUse  # the buffers planned (tensors, in-place groups merged, then scratch)


def plan_for_target(model_bytes: bytes, arch: str, kernels: str, time_limit: float = 1.0,
                    inplace: bool | frozenset[str] = True) -> TargetPlan:
    """Re-plan a model's arena (its stored order, in-place sharing) for a target build.

    Raises ``scratch.UnknownScratch`` when an operator's scratch is not modelled.
    """
    loaded = load_model(bytes(model_bytes))
    graph = true_graph(loaded.model)
    orders = graph.stored_orders()
    reqs = requests(loaded.model, graph, arch, kernels)
    use = with_scratch(simulate(graph, orders, inplace), reqs, orders)
    plan = plan_arena(use, time_limit)
    data = write_plan(loaded.model, graph, plan)
    return TargetPlan(plan, target_head(use, plan.offsets),
                      sum(sum(v) for v in reqs.values()), data, use)
