"""Anytime improvement of an order: re-solve windows around its peak exactly.

Large-neighbourhood search on an order between two downsets: take a window of consecutive
ops around a step that reaches the order's peak; the states before and after the window are
downsets, so ``scheduler.search`` between them finds a window order of least maximum step
(or a better one, if its budget runs out). Steps outside the window do not change (they
depend only on the state), so splicing a window whose maximum step fell never raises the
order's peak, and each success removes a peak step. Only the anytime answer improves; the
lower bound is the search's.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def improve_order(ctx, start: int, goal: int, mem: int, order: list[int], worst: int,
                  floor: int, deadline: float, search: Callable, step: Callable,
                  window: int = 24) -> tuple[list[int], int]:
    """Better order between ``start`` and ``goal`` (never worse), by windows at the peak."""
    tried: set[tuple[int, int, int]] = set()
    while worst > floor and time.monotonic() < deadline:
        states, costs = _trace(ctx, start, mem, order, step)
        peaks = [i for i, c in enumerate(costs) if c == worst]
        done = False
        for w in (window, 2 * window, 4 * window):
            for i in peaks:
                a = max(0, min(i - w // 2, len(order) - w))
                b = min(len(order), a + w)
                if (a, b, worst) in tried:
                    continue
                tried.add((a, b, worst))
                S_a, M_a = states[a]
                S_b = states[b][0]
                part = order[a:b]
                part_worst = max(costs[a:b])
                budget = min(deadline, time.monotonic() + max(0.05, 0.2 * (
                    deadline - time.monotonic())))
                r = search(ctx, S_a, S_b, M_a, floor, (part, part_worst), budget, 200_000)
                if r.worst < part_worst and sorted(r.order) == sorted(part):
                    order = order[:a] + r.order + order[b:]
                    worst = max(max(costs[:a], default=0), r.worst,
                                max(costs[b:], default=0))
                    done = True
                    break
                if time.monotonic() >= deadline:
                    return order, worst
            if done:
                break
        if not done:
            break
    return order, worst


def _trace(ctx, start: int, mem: int, order: list[int], step: Callable):
    """(state, resident bytes) before each position (and after the last), and each step."""
    S, M = start, mem
    states, costs = [], []
    for v in order:
        states.append((S, M))
        up, delta, S, _ = step(ctx, S, v)
        costs.append(M + up)
        M += delta
    states.append((S, M))
    return states, costs
