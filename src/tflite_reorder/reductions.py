"""Optimality-preserving reductions of the scheduling problem.

**Sources run late.** Call an op *v* a *source* when

(a) running *v* can never free a tensor: each arena input of *v* is a subgraph output
    (never freed) or is also read by a descendant of *v* (so it is still needed after *v*
    in every order); constants have no arena bytes and do not count;
(b) every output of *v* is kept (read later or a subgraph output) and *v* nests no subgraph,
    so its step costs exactly the resident bytes plus its kept outputs; and
(c) *v* has a successor.

DEQUANTIZE of a constant (float16 weights), a constant-only SHAPE or FILL are sources.

*Lemma.* In any order, moving a source *v* from its place to just before its first successor
*w* raises no step. The ops passed over lose *v*'s outputs from their resident bytes and free
exactly what they freed before (an input of *v* still has a reader at or after *w*, by (a)),
with the same in-place sharing (no passed-over op reads *v*'s outputs). *v* itself then costs
``R + kept(v)`` where ``R`` is what is resident before *w* less *v*'s outputs, and *w* costs
``R + kept(v) + out(w) + extra(w) - saved(w) >= R + kept(v)`` (an op saves at most its own
outputs). Every other step is unchanged.

*Canonical orders.* Let ``block(x)`` of a non-source *x* be the sources from which *x* is
reached through sources only. Moving, repeatedly, the latest-placed source that has a
non-source between it and its first successor terminates (the last such position strictly
falls) and gives an order of no higher peak in which every maximal run of sources is
followed by a non-source *x* and consists exactly of the not-yet-run sources of
``block(x)``. Within such a run nothing is freed and every step costs at most *x*'s step
(by (b) and the cost of *x* above), so its internal order is irrelevant. Hence an optimum
is found among orders of the non-sources alone, each non-source *x* being run as the macro
"unrun sources of ``block(x)`` in topological order, then *x*"; ``canonical`` maps any
order to the canonical order with the same non-source order (peak never higher).

**Interchangeable ops** (``interchangeable``): ops that an automorphism of the problem
swaps can run in op order, so each such class becomes a chain of extra precedences.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from .memory import Problem


@dataclass(frozen=True)
class SourceMacros:
    """The sources of a problem and, per non-source op, the macro that runs it."""

    source: int  # bitmask of source ops
    block: list[int]  # per op: bitmask of block(x) (0 for sources)
    block_ops: list[tuple[int, ...]]  # per op: block(x) in topological order
    mpred: list[int]  # per op: ops that must have run before x's macro (non-sources only)


def find_sources(ctx, general: bool = False) -> int:
    """Bitmask of the ops satisfying (a)-(c) of the module docstring.

    By default only ops that read no freeable arena tensor at all (constants and subgraph
    outputs only: DEQUANTIZE of a weight) are taken; any subset of the sources keeps the
    lemma true. ``general`` also takes ops whose arena inputs are all read again by a
    descendant: valid too, but on RandWire-like graphs those macros defeat free moves and
    the search expands more states (measured: 12,615 against 9,456 on
    ``randwire_ws_int8``).
    """
    p = ctx.p
    mask = 0
    for v in range(p.n_ops):
        if not ctx.succs[v] or ctx.out_total[v] + ctx.extra[v] != ctx.out_kept[v]:
            continue
        if not ctx.inputs[v] or (
                general and all(ctx.cons_mask[t] & ctx.desc[v] for t in ctx.inputs[v])):
            mask |= 1 << v
    return mask


def source_macros(ctx, topo: Sequence[int], source: int) -> SourceMacros:
    """Blocks and macro predecessors (see the module docstring), in one topological pass."""
    p = ctx.p
    n = p.n_ops
    block = [0] * n
    for v in topo:  # block(v): source preds and their blocks, through sources only
        m = 0
        for u in p.preds[v]:
            if (source >> u) & 1:
                m |= block[u] | (1 << u)
        block[v] = m
    rank = [0] * n
    for i, v in enumerate(topo):
        rank[v] = i
    block_ops: list[tuple[int, ...]] = []
    mpred = [0] * n
    for v in range(n):
        ops = bits(block[v])
        block_ops.append(tuple(sorted(ops, key=rank.__getitem__)))
        need = ctx.pred_mask[v]
        for u in ops:
            need |= ctx.pred_mask[u]
        mpred[v] = need & ~block[v]
    for v in bits(source):  # sources are never run on their own
        block[v] = 0
        block_ops[v] = ()
    return SourceMacros(source, block, block_ops, mpred)


def canonical(macros: SourceMacros, order: Sequence[int], done: int = 0) -> list[int]:
    """The canonical order with ``order``'s non-source order: peak never higher (lemma).
    ``done``: the ops already run before ``order`` starts."""
    out: list[int] = []
    for x in order:
        if not (macros.source >> x) & 1:
            done = run_macro(macros.block, macros.block_ops, x, done, out)
    return out


def run_macro(block: Sequence[int], block_ops: Sequence[Sequence[int]], x: int, done: int,
              out: list[int]) -> int:
    """Append to ``out`` the macro of op ``x`` from downset ``done``: the unrun sources of
    ``block(x)`` in topological order, then ``x``; returns the downset after it."""
    if block[x] & ~done:
        for u in block_ops[x]:
            if not (done >> u) & 1:
                out.append(u)
                done |= 1 << u
    out.append(x)
    return done | 1 << x


def bits(mask: int) -> list[int]:
    """The set bits of ``mask``, lowest first (the op ids of a bitmask state).

    Linear in the mask's length: peeling bits one by one costs a whole-integer operation
    per bit, quadratic on masks of thousands of set bits (a 5,000-wide fan-out).
    """
    if mask.bit_count() > 64:
        raw = np.frombuffer(mask.to_bytes((mask.bit_length() + 7) // 8, "little"), np.uint8)
        return np.flatnonzero(np.unpackbits(raw, bitorder="little")).tolist()
    out = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return out


# ---------------------------------------------------------------------------------------------
# Interchangeable ops


def interchangeable(p: Problem) -> list[list[int]]:
    """Classes (two or more ops each, ascending) of ops that are interchangeable.

    Ops a and b are *interchangeable* when they read the same input tuple, have the same
    predecessors and successors and the same transient bytes, and their i-th outputs agree
    in size, in being a subgraph output and in their set of readers, with the same in-place
    candidates (their own, and each reader's for them). Then the map swapping a with b and
    each output of a with the same output of b is an automorphism of the problem: sizes,
    producers, readers (a reader of an input of a reads it for b too; a's outputs and b's
    are read by the same ops, neither of them), pinned flags and in-place candidates are
    all preserved, so it maps every topological
    order to one with the very same step costs. The relation is an equivalence, every
    permutation of a class is such an automorphism, and hence some optimal order runs each
    class in ascending op order: ``ordered`` adds those precedences, which keeps the optimum
    and removes up to k! - 1 of every k! orderings of a class from the search.
    """
    groups: dict[tuple, list[int]] = {}
    for v in range(p.n_ops):
        groups.setdefault((p.op_in[v], p.preds[v]), []).append(v)
    classes: list[list[int]] = []
    succs = None
    for ops in groups.values():
        if len(ops) < 2:
            continue
        succs = succs or p.succs
        fine: dict[tuple, list[int]] = {}
        for v in ops:
            outs = p.op_out[v]
            where = {t: i for i, t in enumerate(outs)}
            readers = sorted({c for t in outs for c in p.consumers[t]})
            sig = (tuple(sorted(succs[v])), p.extra[v],
                   tuple((p.size[t], p.pinned[t], tuple(sorted(p.consumers[t])))
                         for t in outs),
                   tuple(sorted((where[o], cands) for o, cands in p.alias[v])),
                   # which of v's outputs each reader may overwrite in place
                   tuple(tuple(tuple(t in cands for t in outs) for _, cands in p.alias[c])
                         for c in readers))
            fine.setdefault(sig, []).append(v)
        classes += [c for c in fine.values() if len(c) > 1]
    return classes


def ordered(p: Problem, classes: Sequence[Sequence[int]]) -> Problem:
    """``p`` with each class of ``interchangeable`` ops chained in ascending order (extra
    precedences only: same step costs for every order that is still allowed)."""
    preds = [list(ps) for ps in p.preds]
    for c in classes:
        for a, b in zip(c, c[1:], strict=False):
            preds[b].append(a)
    return replace(p, preds=tuple(tuple(sorted(set(ps))) for ps in preds))


def in_class_order(classes: Sequence[Sequence[int]], order: Sequence[int]) -> list[int]:
    """``order`` with every class's members renamed to run in ascending order: the same
    step costs (an automorphism of the problem), and an order of ``ordered(p, classes)``."""
    which = {v: k for k, c in enumerate(classes) for v in c}  # classes are disjoint
    seen: list[list[int]] = [[] for _ in classes]
    for v in order:  # one pass: each class's members in the order they run
        k = which.get(v)
        if k is not None:
            seen[k].append(v)
    rename: dict[int, int] = {}
    for members, c in zip(seen, classes, strict=True):
        rename.update(zip(members, sorted(c), strict=True))
    return [rename.get(v, v) for v in order]
