"""Row-granular lifetimes: which bytes of a tensor an op order still needs, row by row.

TFLM keeps a tensor from its producer to its last reader, whole. A tiled region touches
less than that, in two ways an offline plan can use (TFLM never checks overlaps):

* *consumed rows*: a STRIDED_SLICE of whole rows of a batch-1 NHWC tensor (all columns,
  all channels, unit strides, no masks) reads one contiguous byte range only; once the
  last slice that reads a row has run, no op needs that row's bytes again;
* *self-copy*: a CONCATENATION along H of batch-1 tensors copies input ``k`` to one
  contiguous byte range of its output, so input ``k`` can be written there in the first
  place and the copy goes onto itself (TFLM's kernel is safe for that:
  ``tests/test_tiling_selfcopy.py``).

``RowFacts`` are those facts about a model's ops; ``pieces`` turns the byte ranges and
scopes that touch a buffer into contiguous pieces of equal lifetime. The arena planner
(``arena.layout``) and the tiling search's pricing (``tiling.cost``) both use these two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from .dtypes import ARENA_ALIGNMENT, tensor_bytes
from .rewrites.edit import Editor

OpKey = tuple[int, int]  # (subgraph, op index in the graph's stored order)


@dataclass(frozen=True)
class Piece:
    """Bytes ``[offset, offset + size)`` of a buffer, needed over scopes ``[first, last]``."""

    offset: int
    size: int
    first: int
    last: int


def pieces(size: int, touches: Sequence[tuple[int, int, int]]) -> list[Piece]:
    """``size`` bytes (a 16-byte multiple) cut into runs of 16-byte chunks of one lifetime.

    ``touches`` are ``(lo, hi, scope)``: the op at ``scope`` reads or writes bytes
    ``[lo, hi)``. A chunk's lifetime is the hull of the scopes that touch any of its bytes
    (a straddled chunk belongs to both rows), so every byte's data is inside its piece's
    lifetime. Raises ValueError if a chunk is touched by nothing (it would have no
    lifetime: the caller must say when the buffer is created).
    """
    n = size // ARENA_ALIGNMENT
    first = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    last = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    for lo, hi, scope in touches:
        if hi <= lo:
            continue
        a, b = lo // ARENA_ALIGNMENT, -(-hi // ARENA_ALIGNMENT)
        np.minimum(first[a:b], scope, out=first[a:b])
        np.maximum(last[a:b], scope, out=last[a:b])
    if n and (first > last).any():
        raise ValueError("a chunk of the buffer is touched by no scope")
    out: list[Piece] = []
    start = 0
    for c in range(1, n + 1):
        if c == n or first[c] != first[start] or last[c] != last[start]:
            out.append(Piece(start * ARENA_ALIGNMENT, (c - start) * ARENA_ALIGNMENT,
                             int(first[start]), int(last[start])))
            start = c
    return out


@dataclass(frozen=True)
class OpView:
    """An op order as the cutting needs it: per op its inputs, outputs and scope; per
    tensor that may be cut its aligned size, true bytes and TFLM lifetime."""

    inputs: Sequence[Sequence[int]]
    outputs: Sequence[Sequence[int]]
    scope: Sequence[int]
    size: dict[int, int]  # aligned bytes, for the tensors that are a buffer of their own
    nbytes: dict[int, int]
    first: dict[int, int]
    last: dict[int, int]
    slices: dict[int, tuple[int, int, int]]  # op position -> (tensor, lo row, hi row)
    concats: frozenset[int]  # op positions: CONCATENATIONs along H
    row_bytes: dict[int, int]
    pinned: frozenset[int]  # tensors that may not be placed inside another (subgraph I/O)


@dataclass(frozen=True)
class Cut:
    """Tensors cut into pieces, and tensors placed inside a concatenation's output."""

    pieces: dict[int, list[Piece]]
    inside: dict[int, tuple[int, int]]  # tensor -> (root container, byte offset in it)


def cut(view: OpView, self_copy: bool) -> Cut:
    """The pieces of every tensor a row slice reads (and, with ``self_copy``, of every
    concatenation output, its inputs inside it, trees of them flattened into the root).

    A piece's lifetime is the hull of its creation (the tensor's first scope, or the
    scope its band is written), the ops that read its bytes, and its TFLM last scope when
    TFLM keeps it longer than its last reader (a subgraph output).
    """
    members = _self_copies(view) if self_copy else {}
    readers: dict[int, list[tuple[int, int, int]]] = {}
    for k, (ins, sc) in enumerate(zip(view.inputs, view.scope, strict=True)):
        sl = view.slices.get(k)
        for t in ins:
            if t not in view.size:
                continue
            if sl is not None and sl[0] == t:
                rb = view.row_bytes[t]
                readers.setdefault(t, []).append((sl[1] * rb, sl[2] * rb, sc))
            else:
                readers.setdefault(t, []).append((0, view.size[t], sc))
    sliced = {sl[0] for sl in view.slices.values() if sl[0] in view.size}
    out: dict[int, list[Piece]] = {}
    for t in sliced | set(members):
        size = view.size[t]
        touch = [*readers.get(t, []), (0, size, view.first[t])]
        for m, d in members.get(t, []):
            touch += [(d, d + view.size[m], view.first[m]), (d, d + view.size[m], view.last[m])]
        if max(sc for _, _, sc in touch) < view.last[t]:
            touch.append((0, size, view.last[t]))
        ps = pieces(size, touch)
        if len(ps) > 1 or t in members:
            out[t] = ps
    inside = {m: (o, d) for o, ms in members.items() if o in out for m, d in ms}
    return Cut(out, inside)


def _self_copies(view: OpView) -> dict[int, list[tuple[int, int]]]:
    """Root concatenation output -> every tensor inside it and its byte offset, for the
    concatenations along H whose inputs are theirs alone and start at 16-byte multiples."""
    readers: dict[int, int] = {}
    for ins in view.inputs:
        for t in ins:
            readers[t] = readers.get(t, 0) + 1
    direct: dict[int, list[tuple[int, int]]] = {}
    for k in sorted(view.concats):
        ins, (o,) = list(view.inputs[k]), view.outputs[k]
        if o not in view.size or len(set(ins)) != len(ins) or o in ins:
            continue
        if any(t not in view.size or t in view.pinned or readers.get(t) != 1 for t in ins):
            continue
        starts, at = [], 0
        for t in ins:
            starts.append(at)
            at += view.nbytes[t]
        if at != view.nbytes[o] or any(d % ARENA_ALIGNMENT for d in starts):
            continue
        direct[o] = list(zip(ins, starts, strict=True))
    nested = {t for ms in direct.values() for t, _ in ms}

    def flat(o: int, at: int) -> list[tuple[int, int]]:
        got = []
        for t, d in direct.get(o, []):
            got += [(t, at + d), *flat(t, at + d)]
        return got

    return {o: flat(o, 0) for o in direct if o not in nested}


def peak(view: OpView, found: Cut, n_scopes: int) -> int:
    """Peak live bytes over scopes ``0 .. n_scopes-1`` with the cut tensors' pieces (the
    lower bound of any plan of these lifetimes): every tensor of ``view.size``."""
    diff = [0] * (n_scopes + 1)
    for t, size in view.size.items():
        if t in found.inside:
            continue
        spans = found.pieces.get(t) or [Piece(0, size, view.first[t], view.last[t])]
        for p in spans:
            diff[p.first] += p.size
            diff[p.last + 1] -= p.size
    best = run = 0
    for v in range(n_scopes):
        run += diff[v]
        best = max(best, run)
    return best


def row_slice(ed: Editor, op: schema.OperatorT) -> tuple[int, int] | None:
    """Rows ``[lo, hi)`` a STRIDED_SLICE reads of its batch-1 NHWC input when it takes
    whole rows (every column and channel, unit strides, no masks); else None."""
    if ed.opcode(op) != "STRIDED_SLICE":
        return None
    ins = ed.inputs(op)
    if len(ins) != 4:
        return None
    sh = ed.shape(ins[0])
    begin, end, strides = (ed.constant(t) for t in ins[1:])
    o = op.builtinOptions
    if len(sh) != 4 or sh[0] != 1 or begin is None or end is None or strides is None:
        return None
    # no options: the runtimes' zeroed masks
    if o is not None and (o.beginMask or o.endMask or o.ellipsisMask or o.newAxisMask
                          or o.shrinkAxisMask or getattr(o, "offset", False)):
        return None
    b, e, s = (np.asarray(x).reshape(-1).tolist() for x in (begin, end, strides))
    if len(b) != 4 or s != [1, 1, 1, 1]:
        return None
    if b[0] != 0 or e[0] != 1 or b[2] != 0 or e[2] != sh[2] or b[3] != 0 or e[3] != sh[3]:
        return None
    lo, hi = int(b[1]), int(e[1])
    return (lo, hi) if 0 <= lo < hi <= sh[1] else None


def concat_along_h(ed: Editor, op: schema.OperatorT) -> bool:
    """A CONCATENATION along H of batch-1 NHWC tensors, without a fused activation: its
    inputs are contiguous byte ranges of its output, in order."""
    if ed.opcode(op) != "CONCATENATION":
        return False
    o = op.builtinOptions
    shapes = [ed.shape(t) for t in (*ed.inputs(op), *ed.outputs(op))]
    if any(len(sh) != 4 or sh[0] != 1 for sh in shapes):
        return False
    return o is not None and o.axis in (1, -3) and not o.fusedActivationFunction


@dataclass(frozen=True)
class RowFacts:
    """The row-granular facts of a model's ops, keyed by (subgraph, graph op index).

    ``slices``: op -> (tensor, lo, hi), the op reads only rows ``[lo, hi)`` of ``tensor``.
    ``concats``: CONCATENATIONs along H whose inputs may be placed inside their output.
    ``row_bytes``: bytes of one row of each sliced tensor and each concatenation's tensors.
    """

    slices: dict[OpKey, tuple[int, int, int]]
    concats: frozenset[OpKey]
    row_bytes: dict[tuple[int, int], int]


def row_facts(model: schema.ModelT, orders: Sequence[Sequence[int]],
              nbytes: dict[tuple[int, int], int]) -> RowFacts:
    """The facts of ``model``, whose subgraph ``s`` stores op ``orders[s][k]`` at ``k``.

    ``nbytes``: true bytes per (subgraph, tensor) (the graph's ``TensorInfo.nbytes``), so a
    row is the true size over the true height.
    """
    slices: dict[OpKey, tuple[int, int, int]] = {}
    concats: set[OpKey] = set()
    row_bytes: dict[tuple[int, int], int] = {}

    def note(s: int, t: int, ed: Editor) -> bool:
        # rows come from the stored shape: only where it is the true one (shapes can lie)
        h = ed.shape(t)[1]
        n = nbytes.get((s, t), 0)
        if h <= 0 or n <= 0 or n % h or n != tensor_bytes(ed.shape(t), ed.dtype(t)):
            return False
        row_bytes[(s, t)] = n // h
        return True

    for s, order in enumerate(orders):
        ed = Editor(model, s)
        for k, v in enumerate(order):
            op = ed.sg.operators[k]
            rows = row_slice(ed, op)
            if rows is not None and note(s, ed.inputs(op)[0], ed):
                slices[(s, v)] = (ed.inputs(op)[0], *rows)
            elif concat_along_h(ed, op) and all(
                    note(s, t, ed) for t in (*ed.inputs(op), *ed.outputs(op))):
                concats.add((s, v))
    return RowFacts(slices, frozenset(concats), row_bytes)
