"""What the planners place: whole buffers, or a tensor's row pieces as one rigid group.

TFLM's lifetimes are per tensor (``memory.ArenaUse``). With the row facts of the ops
(``rows.RowFacts``) two finer layouts are sound, and the planner tries them as variants:

* *row lifetimes*: a tensor read by STRIDED_SLICEs of whole rows is cut into contiguous
  pieces whose lifetimes end at the last op that reads them (``rows.pieces``);
* *self-copy*: the inputs of a CONCATENATION along H are placed inside its output where
  the copy puts them; the output's pieces then start when their band is written.

A cut tensor is a rigid group of blocks with fixed relative offsets
(``Blocks.leader``/``rel``): every planner places the group as one, and the overlap
check (``blocks.overlapping_pairs``) sees each piece with its own lifetime, so it knows
exactly which overlaps the row schedule allows. ``arena.replay`` checks the result again
by replaying the op order at byte granularity.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import rows
from ..graph import ModelGraph
from ..memory import ArenaUse, Buffer
from ..rows import RowFacts
from .blocks import Blocks

Key = tuple[int, int]  # (subgraph, tensor)

WHOLE, ROWS, SELF_COPY = "whole tensors", "row lifetimes", "row lifetimes + self-copy"


@dataclass(frozen=True)
class Layout:
    """Blocks to place and where each tensor sits relative to them."""

    name: str
    blocks: Blocks
    anchor: dict[Key, tuple[int, int]]  # tensor -> (block, bytes above that block's offset)
    cut: int = 0  # tensors cut into pieces (0 for WHOLE)
    inside: int = 0  # tensors placed inside a concatenation's output

    def offsets(self, block_offsets) -> dict[Key, int]:
        return {k: block_offsets[b] + d for k, (b, d) in self.anchor.items()}


def whole(buffers: list[Buffer], blocks: Blocks) -> Layout:
    """Every buffer one block (TFLM's view)."""
    return Layout(WHOLE, blocks, {k: (i, 0) for i, b in enumerate(buffers) for k in b.tensors})


def refined(use: ArenaUse, buffers: list[Buffer], graph: ModelGraph, facts: RowFacts,
            self_copy: bool) -> Layout | None:
    """The row-lifetime layout of subgraph 0 (``self_copy``: and bands inside their
    concatenation's output); None when no tensor gets anything finer than TFLM's lifetime.
    """
    found = rows.cut(view(use, buffers, graph, facts), self_copy)
    if not found.pieces:
        return None
    size, first, last, leader, rel = [], [], [], [], []
    anchor: dict[Key, tuple[int, int]] = {}
    for b in buffers:
        s, t = b.tensors[0]
        if s == 0 and t in found.inside:
            continue  # placed with its container
        at = len(size)
        parts = found.pieces.get(t, []) if s == 0 and len(b.tensors) == 1 else []
        for p in parts or [rows.Piece(0, b.size, b.first, b.last)]:
            size.append(p.size)
            first.append(p.first)
            last.append(p.last)
            leader.append(at)
            rel.append(p.offset)
        for k in b.tensors:
            anchor[k] = (at, 0)
    for m, (o, d) in found.inside.items():
        anchor[(0, m)] = (anchor[(0, o)][0], d)
    blocks = Blocks(tuple(size), tuple(first), tuple(last), tuple(leader), tuple(rel))
    return Layout(SELF_COPY if found.inside else ROWS, blocks, anchor, len(found.pieces),
                  len(found.inside))


def view(use: ArenaUse, buffers: list[Buffer], graph: ModelGraph,
         facts: RowFacts, order: list[int] | None = None) -> rows.OpView:
    """Subgraph 0 in ``order`` (the order of ``use``'s scopes) as ``rows.cut`` sees it;
    only tensors that are a buffer of their own may be cut or placed inside another."""
    sg = graph.subgraphs[0]
    order = order if order is not None else sorted(
        (v for (s, v) in use.op_scope if s == 0), key=lambda v: use.op_scope[(0, v)])
    own = {b.tensors[0][1]: b for b in buffers
           if len(b.tensors) == 1 and b.tensors[0][0] == 0 and b.first >= 0}
    return rows.OpView(
        inputs=[sg.ops[v].inputs for v in order],
        outputs=[sg.ops[v].outputs for v in order],
        scope=[use.op_scope[(0, v)] for v in order],
        size={t: b.size for t, b in own.items()},
        nbytes={t: sg.tensors[t].nbytes for t in own},
        first={t: b.first for t, b in own.items()},
        last={t: b.last for t, b in own.items()},
        slices={k: facts.slices[(0, v)] for k, v in enumerate(order) if (0, v) in facts.slices},
        concats=frozenset(k for k, v in enumerate(order) if (0, v) in facts.concats),
        row_bytes={t: rb for (s, t), rb in facts.row_bytes.items() if s == 0},
        pinned=frozenset(sg.inputs) | frozenset(sg.outputs),
    )
