"""Greedy placement in several priority orders, first fit and best fit (TVM USMP style).

No single order wins everywhere: by size suits chains, by conflict weight (USMP's
``greedy_by_conflicts``) suits wide branchy cells, by lifetime suits long skip connections.
Trying a handful costs milliseconds and gives the search below a good start.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from .blocks import Attempt, Blocks, Budget, attempt, best_fit, head, lowest_fit, place

NAME = "ordered_fit"

Order = Callable[[Blocks], list[int]]


def by_size(b: Blocks) -> list[int]:
    return sorted(range(len(b)), key=lambda i: (-b.size[i], -i))


def by_conflicts(b: Blocks) -> list[int]:
    """Largest size plus size of everything it conflicts with, first."""
    weight = (np.asarray(b.size, dtype=np.int64) + b.conflict_weight()).tolist()
    return sorted(range(len(b)), key=lambda i: (-weight[i], -b.size[i], i))


def by_lifetime(b: Blocks) -> list[int]:
    return sorted(range(len(b)), key=lambda i: (b.first[i] - b.last[i], -b.size[i], i))


def by_area(b: Blocks) -> list[int]:
    return sorted(
        range(len(b)), key=lambda i: (-(b.last[i] - b.first[i] + 1) * b.size[i], i)
    )


def by_start(b: Blocks) -> list[int]:
    """Left-edge order: what a runtime allocator would see."""
    return sorted(range(len(b)), key=lambda i: (b.first[i], -b.size[i], i))


ORDERS: dict[str, Order] = {
    "size": by_size, "conflicts": by_conflicts, "lifetime": by_lifetime, "area": by_area,
    "start": by_start,
}
FITS = {"first_fit": lowest_fit, "best_fit": best_fit}


def candidates(
    blocks: Blocks, budget: Budget | None = None
) -> list[tuple[str, list[int], list[int]]]:
    """``(name, order, offsets)`` for every order × fit, best head first.

    With a ``budget`` only as many as its work pays for are tried (in a fixed order, the
    first always), fewer if its wall-clock guard passes.
    """
    out: list[tuple[str, list[int], list[int]]] = []
    allowed = budget.placements(blocks) if budget is not None else len(ORDERS) * len(FITS)
    for oname, make in ORDERS.items():
        order = make(blocks)
        for fname, fit in FITS.items():
            if out and (len(out) >= allowed or (
                    budget is not None and time.monotonic() >= budget.deadline)):
                break
            out.append((f"{oname}/{fname}", order, place(blocks, order, fit)))
    out.sort(key=lambda c: head(blocks, c[2]))
    return out


def improve(blocks: Blocks, best: Attempt | None, budget: Budget) -> Attempt:
    name, _, offsets = candidates(blocks, budget)[0]
    return attempt(blocks, offsets, f"{NAME}:{name}")
