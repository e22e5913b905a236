"""Split a scheduling problem at its cut ops into independent pieces, in linear time.

A *cut op* is comparable to every other op (an ancestor or a descendant of each). Every
topological order runs exactly its ancestors before it, so the state at a cut op is forced:
the problem splits into the pieces between consecutive cut ops, each scheduled on its own,
and the optimum is the maximum of the pieces' optima (SERENITY's divide and conquer).

Cut ops are found without ancestor sets: fix one topological order; the op at position i is
comparable to all others iff every op before it has a successor at position <= i (then the
op is the only sink of the prefix, which every op of the prefix therefore reaches) and every
op after it has a predecessor at position >= i (symmetrically). Prefix maxima and suffix
minima make that O(n + edges), so a 50,000-op chain splits in a fraction of a second.

Each piece with two or more ops becomes a ``Problem`` of its own, with the same step costs:
tensors made before the piece that it reads are its inputs; tensors still needed after it
(or subgraph outputs) are pinned; the bytes resident throughout the piece that it does not
touch become one pinned input of that size. A piece's inputs are what is resident when it
starts, which is at most the step of the cut op before it, so no piece's scope-0 bytes
exceed the whole problem's peak.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .graph import topological_order
from .memory import Problem, initial_live, resident_after_inputs, step_costs


def topological(p: Problem) -> list[int]:
    """The smallest-index-first topological order of ``p`` (``graph.topological_order``)."""
    return topological_order(p.preds)


def is_order(p: Problem, order: Sequence[int]) -> bool:
    """Whether ``order`` runs every op of ``p`` once, after its predecessors."""
    n = p.n_ops
    if len(order) != n:
        return False
    pos = [-1] * n
    for i, v in enumerate(order):
        if not 0 <= v < n or pos[v] >= 0:
            return False
        pos[v] = i
    return all(pos[u] < pos[v] for v in range(n) for u in p.preds[v])


def cut_positions(p: Problem, topo: Sequence[int]) -> list[int]:
    """Positions in ``topo`` of the ops comparable to every other op."""
    n = len(topo)
    pos = [0] * n
    for i, v in enumerate(topo):
        pos[v] = i
    first = [n] * n  # per position: the earliest successor's position (n: none)
    last = [-1] * n  # per position: the latest predecessor's position (-1: none)
    for v, ps in enumerate(p.preds):
        pv = pos[v]
        for u in ps:
            pu = pos[u]
            if pv < first[pu]:
                first[pu] = pv
            if pu > last[pv]:
                last[pv] = pu
    suffix_min = [n] * (n + 1)
    for i in range(n - 1, -1, -1):
        suffix_min[i] = min(suffix_min[i + 1], last[i])
    cuts = []
    prefix_max = -1
    for i in range(n):
        if prefix_max <= i and suffix_min[i + 1] >= i:
            cuts.append(i)
        prefix_max = max(prefix_max, first[i])
    return cuts


@dataclass
class Piece:
    """Ops ``ops`` (ids of the whole problem, in topological order) and, for pieces of two
    or more ops, the piece as a ``Problem`` whose op i is ``ops[i]``; ``problem`` is None for
    a run of consecutive cut ops, whose order is forced."""

    ops: list[int]
    problem: Problem | None
    forced_peak: int  # runs of cut ops: their largest step (their only order)


def split(p: Problem) -> tuple[list[Piece], list[int]]:
    """The pieces between cut ops, in order, and the topological order used."""
    topo = topological(p)
    n = len(topo)
    cuts = cut_positions(p, topo)
    if not cuts or cuts == [n - 1]:  # one piece: the problem itself
        return [Piece(list(range(n)), p, 0)], topo
    bounds, prev = [], 0
    for c in cuts:
        bounds.append((prev, c + 1))  # the cut op closes its piece
        prev = c + 1
    if prev < n:
        bounds.append((prev, n))
    costs = step_costs(p, topo)
    pos = [0] * n
    for i, v in enumerate(topo):
        pos[v] = i
    resident = _residents(p, topo)  # before each position, and after the last
    pieces: list[Piece] = []
    for a, b in bounds:
        if b - a == 1:  # one op: its step is forced; runs of such ops make one piece
            pk = costs[a] if a else max(costs[a], initial_live(p))
            if pieces and pieces[-1].problem is None:
                pieces[-1].ops.append(topo[a])
                pieces[-1].forced_peak = max(pieces[-1].forced_peak, pk)
            else:
                pieces.append(Piece([topo[a]], None, pk))
        else:
            ops = topo[a:b]
            sub = _subproblem(p, ops, b, pos, resident[a], a == 0)
            pieces.append(Piece(ops, sub, 0))
    return pieces, topo


def _residents(p: Problem, topo: Sequence[int]) -> list[int]:
    """Resident bytes before each position of ``topo`` (the same rule as step_costs)."""
    remaining = [len(c) for c in p.consumers]
    mem = resident_after_inputs(p)
    out = []
    for v in topo:
        out.append(mem)
        for t in p.op_in[v]:
            remaining[t] -= 1
        mem += sum(p.size[t] for t in p.op_out[v] if p.consumers[t] or p.pinned[t])
        mem -= sum(p.size[t] for t in p.op_in[v] if remaining[t] == 0 and not p.pinned[t])
    out.append(mem)
    return out


def _subproblem(p: Problem, ops: list[int], b: int, pos: Sequence[int],
                resident: int, first: bool) -> Problem:
    """Piece [a, b) of ``topo`` as a Problem with the same step costs (module docstring)."""
    local = {v: i for i, v in enumerate(ops)}
    tmap: dict[int, int] = {}
    size: list[int] = []
    producer: list[int] = []
    consumers: list[tuple[int, ...]] = []
    pinned: list[bool] = []
    inputs: list[int] = []
    real_inputs = set(p.inputs)

    def tensor(t: int) -> int:
        if t in tmap:
            return tmap[t]
        tmap[t] = len(size)
        prod = p.producer[t]
        inside = prod in local
        size.append(p.size[t])
        producer.append(local[prod] if inside else -1)
        cons = p.consumers[t]
        consumers.append(tuple(local[c] for c in cons if c in local))
        pinned.append(p.pinned[t] or any(pos[c] >= b for c in cons))
        if not inside and p.size[t] and (prod >= 0 or t in real_inputs):
            inputs.append(tmap[t])
        return tmap[t]

    op_in = tuple(tuple(tensor(t) for t in p.op_in[v]) for v in ops)
    op_out = tuple(tuple(tensor(t) for t in p.op_out[v]) for v in ops)
    if first:  # unread subgraph inputs count at scope 0 only, like the whole problem's
        for t in p.inputs:
            tensor(t)
            if tmap[t] not in inputs:
                inputs.append(tmap[t])
    touched = sum(size[i] for i in inputs if consumers[i] or pinned[i])
    offset = resident - touched
    if offset:
        tmap[-1] = len(size)
        size.append(offset)
        producer.append(-1)
        consumers.append(())
        pinned.append(True)
        inputs.append(len(size) - 1)
    return Problem(
        n_ops=len(ops),
        size=tuple(size),
        producer=tuple(producer),
        consumers=tuple(consumers),
        pinned=tuple(pinned),
        inputs=tuple(inputs),
        op_in=op_in,
        op_out=op_out,
        preds=tuple(tuple(local[u] for u in p.preds[v] if u in local) for v in ops),
        extra=tuple(p.extra[v] for v in ops),
        alias=tuple(tuple((tmap[o], tuple(tmap[i] for i in cands if i in tmap))
                          for o, cands in p.alias[v]) for v in ops),
    )
