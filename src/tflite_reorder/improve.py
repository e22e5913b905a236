"""Anytime orders: a beam-search start and large-neighbourhood improvement of an order.

Both only ever produce valid orders between two downsets and report their true maximum
step; neither claims anything about the optimum (the lower bound is the exact search's and
``bounds``').

**Beam start** (``beam_order``): breadth-wise over the lattice of downsets, one macro per
layer (``reductions``), keeping per layer the ``width`` states of least (peak so far,
resident bytes); equal downsets are merged (their resident bytes are equal, the lower peak
is kept). With width 1 it is the step-greedy order; wider beams see past a step that is
cheap now but strands big tensors. Widths grow (16, 64, 256, ...) while time is left.

**Window re-solves** (``improve_order``): take a window of consecutive ops around a step
that reaches the order's peak; the states before and after the window are downsets, so
``scheduler.search`` between them finds a window order of least maximum step (or a better
one, if its budget runs out). Steps outside the window do not change (they depend only on
the state), so splicing a window whose maximum step fell never raises the order's peak, and
each success removes a peak step. Windows are adaptive: a size that fails at every peak is
doubled, overlapping windows (centred, and shifted a quarter either way) are tried at each
peak, and a window whose search was cut short is retried once larger ones failed.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable

from . import searchcore
from .reductions import run_macro

BEAM_WIDTHS = (16, 64, 256, 1024, 4096, 16384)
COMPILED_BEAM = True  # run beam_order's layers in C where built (searchcore; tests compare)


def beam_order(ctx, start: int, goal: int, mem: int, width: int, deadline: float,
               step: Callable) -> tuple[list[int], int] | None:
    """An order of the macros from downset ``start`` to ``goal`` (trailing sources already
    removed from ``goal``) and its maximum step; None if ``deadline`` passes first."""
    mpred, msuccs, source = ctx.mpred, ctx.msuccs, ctx.source
    ready0 = 0
    rest = goal & ~start & ~source
    while rest:
        low = rest & -rest
        rest ^= low
        if mpred[low.bit_length() - 1] & ~start == 0:
            ready0 |= low
    if COMPILED_BEAM and not searchcore.unavailable():
        got = searchcore.beam(ctx, start, goal, ready0, mem, width, deadline)
        if got is None:
            return None
        return _run_heads(ctx, start, got[0]), got[1]
    # (peak so far, resident bytes, state, ready macros, history as a linked list)
    layer: list[tuple] = [(0, mem, start, ready0, None)]
    while layer[0][2] != goal:
        if time.monotonic() > deadline:
            return None
        nxt: dict[int, tuple] = {}
        for g, M, S, ready, hist in layer:
            r = ready
            while r:
                low = r & -r
                r ^= low
                v = low.bit_length() - 1
                up, delta, S2, _ = step(ctx, S, v)
                g2 = M + up if M + up > g else g
                old = nxt.get(S2)
                if old is not None and old[0] <= g2:
                    continue
                new = 0
                for w in msuccs[v]:
                    if (goal >> w) & 1 and mpred[w] & ~S2 == 0 and not (S2 >> w) & 1:
                        new |= 1 << w
                nxt[S2] = (g2, M + delta, S2, (ready ^ low) | new, (v, hist))
        if not nxt:
            return None  # goal not reachable: not a pair of downsets
        layer = heapq.nsmallest(width, nxt.values(), key=lambda s: (s[0], s[1]))
    worst, _, _, _, hist = layer[0]
    heads: list[int] = []
    while hist is not None:
        heads.append(hist[0])
        hist = hist[1]
    return _run_heads(ctx, start, heads[::-1]), worst


def _run_heads(ctx, start: int, heads: list[int]) -> list[int]:
    """The ops that running the macros ``heads`` in turn from ``start`` runs."""
    order: list[int] = []
    S = start
    for h in heads:
        S = run_macro(ctx.block, ctx.block_ops, h, S, order)
    return order


def beam_improve(ctx, start: int, goal: int, mem: int, order: list[int], worst: int,
                 floor: int, deadline: float, step: Callable) -> tuple[list[int], int]:
    """The best of ``order`` and beams of growing width, until one reaches ``floor`` or
    ``deadline`` passes (a width that cannot end by then is not started)."""
    last = 0.0
    for width in BEAM_WIDTHS:
        t = time.monotonic()
        if worst <= floor or t + 4 * last > deadline:
            break
        got = beam_order(ctx, start, goal, mem, width, deadline, step)
        last = time.monotonic() - t
        if got is not None and got[1] < worst:
            order, worst = got
    return order, worst


def improve_order(ctx, start: int, goal: int, mem: int, order: list[int], worst: int,
                  floor: int, deadline: float, search: Callable, step: Callable,
                  window: int = 24) -> tuple[list[int], int]:
    """Better order between ``start`` and ``goal`` (never worse), by windows at the peak."""
    tried: set[tuple[int, int, int]] = set()
    cut_short: list[tuple[int, int]] = []  # windows whose search stopped on its budget
    w = window
    while worst > floor and time.monotonic() < deadline:
        states, costs = trace(ctx, start, mem, order, step)
        n = len(order)
        peaks = [i for i, c in enumerate(costs) if c == worst]
        done = False
        for i in peaks:
            for shift in (w // 2, w // 4, 3 * w // 4):
                a = max(0, min(i - shift, n - w))
                b = min(n, a + w)
                if (a, b, worst) in tried:
                    continue
                tried.add((a, b, worst))
                got = _resolve(ctx, order, states, costs, a, b, floor, deadline, search)
                if got is None:
                    if time.monotonic() >= deadline:
                        return order, worst
                    continue
                part, part_worst, exact = got
                if not exact:
                    cut_short.append((a, b))
                if part is not None:
                    order = order[:a] + part + order[b:]
                    worst = max(max(costs[:a], default=0), part_worst,
                                max(costs[b:], default=0))
                    done = True
                    break
            if done:
                break
        if done:
            continue
        if w < n:
            w = min(n, 2 * w)  # every window of this size failed at every peak: go larger
            continue
        if cut_short:  # all sizes failed; retry a cut-short window with the time left
            tried = {t for t in tried if (t[0], t[1]) not in cut_short}
            cut_short.clear()
            w = window
            continue
        break
    return order, worst


def _resolve(ctx, order, states, costs, a: int, b: int, floor: int, deadline: float,
             search: Callable):
    """Exact re-solve of ``order[a:b]``: (better window order or None, its maximum step,
    whether the search finished), or None when the deadline passed first."""
    S_a, M_a = states[a]
    S_b = states[b][0]
    part = order[a:b]
    part_worst = max(costs[a:b])
    budget = min(deadline, time.monotonic() + max(0.05, 0.2 * (deadline - time.monotonic())))
    r = search(ctx, S_a, S_b, M_a, floor, (part, part_worst), budget, 200_000)
    if r.worst < part_worst and sorted(r.order) == sorted(part):
        return r.order, r.worst, r.exact
    if not r.exact and time.monotonic() >= deadline:
        return None
    return None, part_worst, r.exact


def trace(ctx, start: int, mem: int, order: list[int], step: Callable):
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
