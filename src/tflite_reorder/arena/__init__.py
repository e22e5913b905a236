"""Offline arena plans: offsets for every arena buffer, as low as the lower bound allows.

The layout mirrors TFLM's ``memory_planner/`` folder: one module per planner, all behind
one interface (:class:`Planner`). ``plan_arena`` runs them as a pipeline, cheapest first,
each seeing the best plan so far, and stops as soon as the head reaches the lower bound
(the peak of live bytes, which no plan can beat):

1. ``greedy_by_size`` — TFLM's own planner, exactly; the floor we must never lose to.
2. ``ordered_fit`` — first/best fit in several priority orders.
3. ``hill_climb`` — local search over placement orders.
4. ``cpsat`` — exact (OR-Tools CP-SAT, optional), warm-started from the best plan.

Planners work on :class:`~.blocks.Blocks`: sizes and inclusive scope intervals only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ai_edge_litert import schema_py_generated as schema

from ..flatbuffer_io import serialize_model, set_offline_plan
from ..graph import ModelGraph
from ..memory import ArenaUse, Buffer
from ..rows import RowFacts
from . import cpsat, greedy_by_size, hill_climb, layout, ordered_fit
from .blocks import Attempt, Blocks, Budget, TooManyConflicts, attempt, overlapping_pairs

__all__ = [
    "Attempt", "Blocks", "Budget", "Plan", "Planner", "TooManyConflicts", "greedy_head", "heights",
    "offsets_for_model", "plan_arena", "tflm_blocks", "write_plan",
]

Key = tuple[int, int]  # (subgraph, tensor)

# The one planner interface: given the buffers, the best plan so far (None for the first
# stage) and what it may spend (``Budget``), return a plan or None for "nothing better".
Planner = Callable[[Blocks, Attempt | None, Budget], Attempt | None]

# Share of ``time_limit`` the local search may use before the exact solver takes over.
CLIMB_SHARE = 0.1
# The stages' work is counted (the same plan on any machine); the wall clock stops them
# only past this many times ``time_limit`` (a machine far slower than the reference).
WALL_SLACK = 2.0


@dataclass(frozen=True)
class Plan:
    """An arena plan: every arena tensor's offset; aliased tensors share their buffer's."""

    offsets: dict[Key, int]
    head: int  # max(offset + size): the arena head TFLM will report for this plan
    lower_bound: int  # ArenaUse.lower_bound: no plan of these lifetimes can be lower
    method: str  # the planner that produced it
    optimal: bool  # head == lower_bound, or the exact solver proved nothing lower exists
    # the wall-clock guard stopped a stage: the plan may be above the one an idle machine
    # finds (the counted work alone makes the plan the same on any machine)
    clock_cut: bool = False
    baseline: int = 0  # TFLM's greedy head for the same buffers (what we are beating)
    seconds: float = 0.0
    # the row-granular layout the offsets come from (None: whole tensors, TFLM's lifetimes),
    # its blocks' offsets and the row facts it used (for the byte replay ``replay.check``)
    refined: layout.Layout | None = None
    block_offsets: tuple[int, ...] = ()
    facts: RowFacts | None = None


def tflm_blocks(use: ArenaUse) -> tuple[list[Buffer], Blocks]:
    """Buffers in TFLM's ``AddBuffer`` order (subgraph, then tensor index) and their Blocks.

    Lifetimes are TFLM's, including ``[-1, -1]`` for buffers the marking never reaches.
    """
    buffers = sorted(use.buffers, key=lambda b: min(b.tensors))
    return buffers, Blocks.of(buffers)


def greedy_head(use: ArenaUse) -> int:
    """The head TFLM's own planner gives these buffers (scratch buffers not included)."""
    _, blocks = tflm_blocks(use)
    return max(
        (o + s for o, s in zip(greedy_by_size.plan(blocks), blocks.size, strict=True)),
        default=0,
    )


def _planning_blocks(blocks: Blocks) -> Blocks:
    """The same buffers with never-used ones (lifetime -1) freed of all conflicts.

    TFLM gives them all the interval [-1, -1], so its planner stacks them, but no kernel
    ever touches them; each gets its own empty scope so every planner puts it at 0.
    """
    dead = [i for i, f in enumerate(blocks.first) if f < 0]
    if not dead:
        return blocks
    first, last = list(blocks.first), list(blocks.last)
    for k, i in enumerate(dead):
        first[i] = last[i] = -2 - k
    return Blocks(blocks.size, tuple(first), tuple(last), blocks.leader, blocks.rel)


def _stages(time_limit: float) -> list[tuple[Planner, float]]:
    """Each planner with its work, in seconds of the reference core."""
    climb = CLIMB_SHARE if cpsat.available() else 1.0
    return [
        (greedy_by_size.improve, 0.0),
        (ordered_fit.improve, 0.0),
        (hill_climb.improve, climb * time_limit),
        (cpsat.improve, (1.0 - climb) * time_limit),
    ]


def plan_arena(use: ArenaUse, time_limit: float = 1.0, graph: ModelGraph | None = None,
               facts: RowFacts | None = None) -> Plan:
    """The lowest plan found with ``time_limit`` seconds of work; never above TFLM's greedy.

    The work is counted, not timed, so a model gets the same plan on any machine and under
    any load (``Budget``); only a machine far slower than the reference is cut short by
    the wall clock, at ``WALL_SLACK`` x ``time_limit``.

    With the ops' row facts (``graph`` and ``facts``, ``rows.row_facts``) the planner also
    tries the finer layouts of ``layout.refined`` (row lifetimes, then self-copy too), each
    with the same work, and keeps the lowest head (ties: the simpler layout).

    Raises TooManyConflicts when more buffer pairs are alive together than
    ``blocks.MAX_CONFLICT_PAIRS`` (then TFLM had better plan the model online).
    """
    start = time.monotonic()
    buffers, tflm = tflm_blocks(use)
    baseline = attempt(tflm, greedy_by_size.plan(tflm), greedy_by_size.NAME)
    variants = [layout.whole(buffers, _planning_blocks(tflm))]
    if graph is not None and facts is not None:
        for self_copy in (False, True):
            lay = layout.refined(use, buffers, graph, facts, self_copy)
            if lay is not None and all(lay.name != v.name for v in variants):
                variants.append(lay)
    best_plan, clock_cut = None, False
    for k, lay in enumerate(variants):
        lower = use.lower_bound if k == 0 else lay.blocks.load
        found, cut = _staged(_planning_blocks(lay.blocks), baseline if k == 0 else None,
                             lower, time_limit, start + WALL_SLACK * time_limit * (k + 1))
        clock_cut = clock_cut or cut
        if best_plan is None or found.head < best_plan[1].head:
            best_plan = (lay, found, lower)
    lay, best, lower = best_plan
    return Plan(
        offsets=lay.offsets(best.offsets),
        head=best.head,
        lower_bound=lower,
        method=best.method if lay.name == layout.WHOLE else f"{best.method} ({lay.name})",
        optimal=best.head <= lower or best.proven,
        clock_cut=clock_cut and not (best.head <= lower or best.proven),
        baseline=baseline.head,
        seconds=time.monotonic() - start,
        refined=None if lay.name == layout.WHOLE else lay,
        block_offsets=best.offsets,
        facts=facts,
    )


def _staged(blocks: Blocks, best: Attempt | None, lower: int, time_limit: float,
            deadline: float) -> tuple[Attempt, bool]:
    """The planner stages on ``blocks`` from ``best`` (None: the first stage starts), and
    whether the wall clock reached ``deadline`` before a stage had spent its work."""
    cut = False
    for planner, work in _stages(time_limit):
        if best is not None and (best.head <= lower or best.proven):
            break
        found = planner(blocks, best, Budget(work, deadline))
        cut = cut or (work > 0 and time.monotonic() >= deadline)
        if found is not None and not overlapping_pairs(blocks, found.offsets) and (
            best is None or found.head < best.head
            or (found.proven and found.head == best.head)
        ):
            best = found
    assert best is not None  # the first stage (TFLM's greedy) always answers
    return best, cut


def heights(use: ArenaUse, plan: Plan, scopes: list[int]) -> list[int]:
    """At each of ``scopes``, the top of the planned bytes live there (``plan.head`` at most)."""
    if plan.refined is not None:
        b, off = plan.refined.blocks, plan.block_offsets
        spans = [(f, la, o + s) for f, la, o, s in zip(b.first, b.last, off, b.size, strict=True)]
    else:
        spans = [(x.first, x.last, plan.offsets[x.tensors[0]] + x.size) for x in use.buffers
                 if x.tensors[0] in plan.offsets]
    return [max((top for f, la, top in spans if f <= s <= la), default=0) for s in scopes]


def offsets_for_model(graph: ModelGraph, plan: Plan) -> list[int]:
    """The flat list ``set_offline_plan`` wants: all tensors of all subgraphs, -1 = online."""
    return [
        plan.offsets.get((s, t), -1)
        for s, sg in enumerate(graph.subgraphs)
        for t in range(len(sg.tensors))
    ]


def write_plan(model_t: schema.ModelT, graph: ModelGraph, plan: Plan) -> bytes:
    """Serialised model carrying ``plan`` as TFLM's offline plan (``model_t`` is updated)."""
    set_offline_plan(model_t, offsets_for_model(graph, plan))
    return serialize_model(model_t)
