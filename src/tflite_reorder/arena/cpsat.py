"""Exact arena planning with OR-Tools CP-SAT (optional dependency).

Each buffer is a rectangle: fixed along time (its inclusive scope interval), free along the
address axis; ``NoOverlap2D`` keeps rectangles apart and the objective is the highest top.
Everything is in 16-byte units (sizes are multiples of 16), which keeps the domains small.
The solver starts from the best heuristic plan as a hint, is told the load lower bound,
and stops at ``time_limit``; its answer is exact only when it reports OPTIMAL.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .blocks import Attempt, Blocks, Budget, attempt

NAME = "cp-sat"
UNIT = 16
# Beyond this many buffers building the model alone takes longer than any plan budget.
MAX_BLOCKS = 3_000
# CP-SAT deterministic time per second of planning work: it runs about as fast as the wall
# clock on one idle core of the reference machine; half leaves room for a loaded one.
DET_PER_SECOND = 0.5



class _LazyCpModel:
    """``ortools.sat.python.cp_model``, imported at first use: the import (it pulls in
    pandas) costs about half a second, which every run would pay even when no plan is small
    enough for CP-SAT (``MAX_BLOCKS``) or no plan is asked for."""

    def __getattr__(self, name: str):
        from ortools.sat.python import cp_model as module

        return getattr(module, name)


def _installed() -> bool:
    try:
        return importlib.util.find_spec("ortools.sat.python.cp_model") is not None
    except ImportError:  # pragma: no cover - exercised only where ortools is absent
        return False


# optional: without ortools the exact stage is skipped
cp_model = _LazyCpModel() if _installed() else None


@dataclass(frozen=True)
class Solved:
    offsets: list[int]
    head: int
    optimal: bool  # CP-SAT proved that no plan has a lower head


def available() -> bool:
    return cp_model is not None


def solve(
    blocks: Blocks, hint: Sequence[int], upper: int, work: float, workers: int = 1,
    deadline: float = float("inf"),
) -> Solved | None:
    """Best plan found with ``work`` seconds of CP-SAT's deterministic time (never worse
    than ``hint``), or None.

    One worker bounded by deterministic time searches the same way on any machine under
    any load (parallel workers race each other, and finish differently); ``deadline``
    (``time.monotonic()``) only guards the wall clock. First a pure feasibility question,
    "does everything fit under the lower bound?", which CP-SAT answers far faster than the
    optimisation (0.07 s against 1 s on a DenseNet block); only if the answer is no or
    unknown does it minimise the head from ``hint``.
    """
    if cp_model is None or len(blocks) == 0:
        return None
    if any(s % UNIT for s in blocks.size) or any(o % UNIT for o in hint):
        raise ValueError("cp-sat planning needs sizes and hint offsets in multiples of 16")
    lb, ub = -(-blocks.load // UNIT), upper // UNIT
    if lb < ub:
        status, offsets, used = _run(blocks, lb, lb, None, work / 2, workers, deadline)
        work -= used
        if offsets is not None:
            return Solved(offsets, lb * UNIT, True)
        if status == cp_model.INFEASIBLE:
            lb += 1
    if lb >= ub:  # the hint is as good as it gets
        return Solved(list(hint), upper, lb == ub)
    status, offsets, _ = _run(blocks, lb, ub, hint, work, workers, deadline)
    if offsets is None:
        return None
    top = max(o + s for o, s in zip(offsets, blocks.size, strict=True))
    return Solved(offsets, top, status == cp_model.OPTIMAL)


def _run(
    blocks: Blocks,
    lb: int,
    ub: int,
    hint: Sequence[int] | None,
    work: float,
    workers: int,
    deadline: float,
) -> tuple[int, list[int] | None, float]:
    """One CP-SAT call with the head in ``[lb, ub]`` units; minimises it unless lb == ub.
    Returns the status, the offsets found (or None) and the deterministic time used."""
    size = [s // UNIT for s in blocks.size]
    m = cp_model.CpModel()
    top = m.new_int_var(lb, ub, "head")
    xs, ys, offs = [], [], []
    late: list[tuple[int, int]] = []  # members listed before their leader
    for i, s in enumerate(size):
        y = m.new_int_var(0, ub - s, f"y{i}")
        offs.append(y)
        ys.append(m.new_fixed_size_interval_var(y, s, f"yi{i}"))
        dur = blocks.last[i] - blocks.first[i] + 1
        xs.append(m.new_fixed_size_interval_var(blocks.first[i], dur, f"xi{i}"))
        m.add(y + s <= top)
        if blocks.leader and blocks.leader[i] != i:  # a rigid group's member
            lead = blocks.leader[i]
            if lead < i:
                m.add(y == offs[lead] + (blocks.rel[i] - blocks.rel[lead]) // UNIT)
            else:
                late.append((i, lead))
        if hint is not None:
            m.add_hint(y, hint[i] // UNIT)
    for i, lead in late:
        m.add(offs[i] == offs[lead] + (blocks.rel[i] - blocks.rel[lead]) // UNIT)
    m.add_no_overlap_2d(xs, ys)
    if lb < ub:
        m.minimize(top)
    solver = cp_model.CpSolver()
    solver.parameters.max_deterministic_time = max(work, 0.01)
    solver.parameters.max_time_in_seconds = max(min(deadline - time.monotonic(), 1e6), 0.01)
    solver.parameters.num_workers = workers
    status = solver.solve(m)
    used = solver.deterministic_time
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return status, None, used
    return status, [solver.value(y) * UNIT for y in offs], used


def improve(blocks: Blocks, best: Attempt | None, budget: Budget) -> Attempt | None:
    """Planner stage: only ever returns something better than ``best`` or proven optimal."""
    if best is None or len(blocks) > MAX_BLOCKS:
        return None
    solved = solve(blocks, best.offsets, best.head, budget.work * DET_PER_SECOND,
                   deadline=budget.deadline)
    if solved is None or (solved.head >= best.head and not solved.optimal):
        return None
    return attempt(blocks, solved.offsets, NAME, proven=solved.optimal)
