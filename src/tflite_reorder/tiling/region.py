"""Where tiling can go: runs of tileable ops between single-tensor cuts of the stored order.

A *cut* is a point of subgraph 0's operator list where exactly one activation tensor is
live (produced before, read after): every op after it sees the ops before only through
that tensor. A *region* runs from one cut to a later one, every op in between tileable
(``spatial.describe``): its input is the first cut's tensor, its output the second's, and
nothing outside reads what it computes in between, so replacing it by tiles changes
nothing else. The memory profile (``memory.simulate``) says which regions hold the peak.
"""

from __future__ import annotations

from dataclasses import dataclass

from ai_edge_litert import schema_py_generated as schema

from ..graph import SubgraphGraph, build_graph
from ..memory import simulate
from ..rewrites.edit import Editor
from .spatial import NotTileable, SpatialOp, describe


@dataclass(frozen=True)
class Region:
    """Ops ``[start, end)`` of subgraph 0's stored order, from tensor ``input`` to ``output``."""

    start: int
    end: int
    input: int
    output: int

    @property
    def ops(self) -> range:
        return range(self.start, self.end)


@dataclass
class Profile:
    """Subgraph 0's stored order: live bytes at each op, its cuts, and which ops tile."""

    live: list[int]  # bytes live while op i runs (TFLM's scopes)
    cuts: dict[int, int]  # position (before op i; n = the end) -> the one live tensor
    spatial: list[SpatialOp | None]  # None: the op ends any region
    why: list[str]  # for ops that do not tile, the reason

    @property
    def peak(self) -> int:
        return max(self.live, default=0)


def profile(model: schema.ModelT) -> Profile:
    """The memory profile, cuts and tileable ops of subgraph 0 in its stored order."""
    graph = build_graph(model)
    sg = graph.subgraphs[0]
    use = simulate(graph, graph.stored_orders(), inplace=False)
    prof = use.profile()
    live = [prof[use.op_scope[(0, v)]] for v in range(len(sg.ops))]
    ed = Editor(model, 0)
    spatial: list[SpatialOp | None] = []
    why: list[str] = []
    for op in ed.sg.operators:
        try:
            spatial.append(describe(ed, op))
            why.append("")
        except NotTileable as exc:
            spatial.append(None)
            why.append(str(exc))
    return Profile(live, _cuts(sg), spatial, why)


def _cuts(sg: SubgraphGraph) -> dict[int, int]:
    """Positions in the stored order where exactly one 4-D activation tensor is live."""
    n = len(sg.ops)
    arena = [t.in_arena for t in sg.tensors]
    last = {}  # tensor -> last position that reads it (n for subgraph outputs)
    for v, op in enumerate(sg.ops):
        for t in op.inputs:
            last[t] = v
    for t in sg.outputs:
        last[t] = n
    made = {t: -1 for t in sg.inputs}
    for v, op in enumerate(sg.ops):
        for t in op.outputs:
            made[t] = v
    # live across the boundary before position b: made < b <= last
    events: dict[int, list[tuple[int, int]]] = {}
    for t, m in made.items():
        if arena[t] and t in last and last[t] > m:
            events.setdefault(m + 1, []).append((t, 1))
            events.setdefault(last[t] + 1, []).append((t, -1))
    cuts: dict[int, int] = {}
    live: set[int] = set()
    for b in range(n + 1):
        for t, d in events.get(b, ()):
            if d > 0:
                live.add(t)
            else:
                live.discard(t)
        if len(live) == 1:
            (t,) = live
            if len(sg.tensors[t].shape) == 4:
                cuts[b] = t
    return cuts


def regions(prof: Profile, max_ops: int | None = None) -> list[Region]:
    """Every region between two cuts with only tileable ops in between."""
    out = []
    positions = sorted(prof.cuts)
    for i, a in enumerate(positions):
        for b in positions[i + 1:]:
            if any(prof.spatial[v] is None for v in range(a, b)):
                break
            if max_ops is not None and b - a > max_ops:
                break
            out.append(Region(a, b, prof.cuts[a], prof.cuts[b]))
    return out
