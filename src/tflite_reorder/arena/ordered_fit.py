"""Greedy placement in several priority orders, first fit and best fit (TVM USMP style).

No single order wins everywhere: by size suits chains, by conflict weight (USMP's
``greedy_by_conflicts``) suits wide branchy cells, by lifetime suits long skip connections.
Trying a handful costs milliseconds and gives the search below a good start.
"""

from __future__ import annotations

from collections.abc import Callable

from .blocks import Attempt, Blocks, attempt, best_fit, head, lowest_fit, place

NAME = "ordered_fit"

Order = Callable[[Blocks], list[int]]


def by_size(b: Blocks) -> list[int]:
    return sorted(range(len(b)), key=lambda i: (-b.size[i], -i))


def by_conflicts(b: Blocks) -> list[int]:
    """Largest size plus size of everything it conflicts with, first."""
    weight = [b.size[i] + sum(b.size[j] for j in b.conflicts[i]) for i in range(len(b))]
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


def candidates(blocks: Blocks) -> list[tuple[str, list[int], list[int]]]:
    """``(name, order, offsets)`` for every order × fit, best head first."""
    out = []
    for oname, make in ORDERS.items():
        order = make(blocks)
        for fname, fit in FITS.items():
            out.append((f"{oname}/{fname}", order, place(blocks, order, fit)))
    out.sort(key=lambda c: head(blocks, c[2]))
    return out


def improve(blocks: Blocks, best: Attempt | None, deadline: float) -> Attempt:
    name, _, offsets = candidates(blocks)[0]
    return attempt(blocks, offsets, f"{NAME}:{name}")
