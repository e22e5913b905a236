"""The byte replay: does a plan keep every byte until the last op that reads it?

Independent of lifetimes and blocks: it replays subgraph 0's op order over an arena of
bytes, each byte remembering which tensor's data it holds. An op reads its inputs (only
the rows a row slice takes, ``rows.RowFacts``) and every byte it reads must still hold
that tensor's data; then it writes its outputs, which take over their bytes. An op may
write over bytes it reads itself only where the kernel is known to be safe for that: an
in-place op (``memory.INPLACE_OPS``) whose output is exactly its input's bytes, and a
CONCATENATION along H whose input sits exactly where it copies it (self-copy). At the end
every subgraph output must still hold its data. A plan that passes computes what the
model computes whatever values the tensors hold (checked by running in the tests).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..graph import ModelGraph
from ..memory import INPLACE_OPS
from ..rows import RowFacts

Key = tuple[int, int]


class ReplayError(ValueError):
    """The plan lets a byte be overwritten while a later op still reads it."""


def check(graph: ModelGraph, orders: Sequence[Sequence[int]], offsets: dict[Key, int],
          facts: RowFacts) -> None:
    """Raise ``ReplayError`` naming the first op that would read overwritten bytes.

    Only single-subgraph models: nested subgraphs interleave their scopes with the
    calling op's, which this replay does not model (ValueError).
    """
    if len(graph.subgraphs) != 1:
        raise ValueError("the byte replay handles single-subgraph models only")
    sg = graph.subgraphs[0]

    def span(t: int) -> tuple[int, int] | None:
        if not sg.tensors[t].in_arena or (0, t) not in offsets:
            return None
        a = offsets[(0, t)]
        return a, a + sg.tensors[t].nbytes

    top = max((s[1] for t in range(len(sg.tensors)) if (s := span(t))), default=0)
    owner = np.full(top, -1, dtype=np.int64)
    for t in sg.inputs:
        if (s := span(t)) is not None:
            owner[s[0]:s[1]] = t
    for v in orders[0]:
        op = sg.ops[v]
        reads = _reads(sg, v, op, span, facts)
        for t, a, b in reads:
            held = owner[a:b]
            if (held != t).any():
                other = int(held[np.flatnonzero(held != t)[0]])
                raise ReplayError(
                    f"op {v} ({op.opcode}) reads bytes {a}..{b} of tensor {t}, but tensor "
                    f"{other} was written over them first")
        dests = _dests(sg, v, op, span, facts)
        for o in op.outputs:
            if (s := span(o)) is None:
                continue
            for t, a, b in reads:
                if a < s[1] and s[0] < b and not _safe(op.opcode, (a, b), s, dests.get(t)):
                    raise ReplayError(
                        f"op {v} ({op.opcode}) writes tensor {o} over bytes {a}..{b} of its "
                        f"own input {t}, which its kernel is not known to survive")
            owner[s[0]:s[1]] = o
    for t in sg.outputs:
        if (s := span(t)) is not None and (owner[s[0]:s[1]] != t).any():
            raise ReplayError(f"subgraph output {t} was overwritten before the end")


def _reads(sg, v, op, span, facts: RowFacts) -> list[tuple[int, int, int]]:
    out = []
    sl = facts.slices.get((0, v))
    for t in op.inputs:
        s = span(t)
        if s is None:
            continue
        if sl is not None and sl[0] == t:
            rb = facts.row_bytes[(0, t)]
            s = (s[0] + sl[1] * rb, s[0] + sl[2] * rb)
        out.append((t, *s))
    return out


def _dests(sg, v, op, span, facts: RowFacts) -> dict[int, tuple[int, int]]:
    """Where a CONCATENATION along H copies each input (absolute bytes)."""
    if (0, v) not in facts.concats or span(op.outputs[0]) is None:
        return {}
    at = span(op.outputs[0])[0]
    out = {}
    for t in op.inputs:
        out[t] = (at, at + sg.tensors[t].nbytes)
        at += sg.tensors[t].nbytes
    return out


def _safe(opcode: str, read: tuple[int, int], written: tuple[int, int],
          dest: tuple[int, int] | None) -> bool:
    if opcode in INPLACE_OPS and read == written:
        return True
    return dest is not None and read == dest
