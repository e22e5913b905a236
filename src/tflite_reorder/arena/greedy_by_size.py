"""TFLM's ``GreedyMemoryPlanner``, reproduced exactly: the baseline and the floor.

``greedy_memory_planner.cc`` sorts buffers by size, largest first, and puts each at the
lowest gap left by the already placed buffers whose inclusive lifetimes intersect its own;
its ``GetMaximumMemorySize`` is the arena head TFLM reports. Ties matter and are easy to get
wrong: ``CalculateOffsetsIfNeeded`` copies online-planned buffers into the sort array from
its tail, i.e. in *reverse* ``AddBuffer`` order (tensors of subgraph 0, 1, … by index, then
scratch buffers), and ``ReverseSortInPlace`` is a stable bubble sort, so among equal sizes
the buffer added last is placed first. With add order instead, our head came out lower than
TFLM's on five of the test models.
"""

from __future__ import annotations

from .blocks import Attempt, Blocks, Budget, attempt, lowest_fit, place

NAME = "greedy_by_size"


def order(blocks: Blocks) -> list[int]:
    """Descending size, ties by descending add index (``blocks`` is in add order)."""
    return sorted(range(len(blocks)), key=lambda i: (-blocks.size[i], -i))


def plan(blocks: Blocks) -> list[int]:
    return place(blocks, order(blocks), lowest_fit)


def improve(blocks: Blocks, best: Attempt | None, budget: Budget) -> Attempt:
    """Planner stage: always runs, so every plan is at least as good as TFLM's own."""
    return attempt(blocks, plan(blocks), NAME)
