"""The writer's self-check: re-read the bytes about to be written before anyone sees them.

A bug anywhere upstream (order, tensors, plan) would otherwise ship a model that TFLM runs
wrongly; here it becomes an internal error and nothing is written.
"""

from __future__ import annotations

from .arena import Plan
from .arena.blocks import Blocks, overlapping_pairs
from .dtypes import ARENA_ALIGNMENT
from .fastread import read_lite
from .flatbuffer_io import ModelError, get_offline_plan
from .graph import ModelGraph, build_graph
from .memory import ArenaUse


def check_written(
    graph: ModelGraph, data: bytes, orders: list[list[int]], plan: Plan | None,
    use: ArenaUse,
) -> None:
    """Re-read the bytes about to be written and check them against what we meant to write.

    Same operators (by opcode and tensors) in each subgraph, in a topological order, same
    tensors, and an offline plan inside bounds whose live buffers never overlap. Raises
    ``ModelError`` (message starting "internal check:") on the first difference.
    """
    out = read_lite(data, "<output>")  # the graph fields, without unpacking every table
    g2 = build_graph(out)
    if len(g2.subgraphs) != len(graph.subgraphs):
        raise ModelError("internal check: subgraph count changed")
    for s, (a, b) in enumerate(zip(graph.subgraphs, g2.subgraphs, strict=True)):
        if len(a.tensors) != len(b.tensors):
            raise ModelError(f"internal check: subgraph {s} tensor count changed")
        want = [(a.ops[v].opcode, a.ops[v].inputs, a.ops[v].outputs) for v in orders[s]]
        got = [(op.opcode, op.inputs, op.outputs) for op in b.ops]
        if want != got:
            raise ModelError(f"internal check: subgraph {s} operators differ from the plan")
        if not b.is_topological(list(range(len(b.ops)))):
            raise ModelError(f"internal check: subgraph {s} order is not topological")
    offsets = get_offline_plan(out)
    if plan is None:
        if offsets is not None:
            raise ModelError("internal check: unexpected offline plan in output")
        return
    if offsets is None or len(offsets) != graph.n_tensors:
        raise ModelError("internal check: offline plan missing or of the wrong length")
    _check_plan(graph, offsets, plan, use)


def _check_plan(graph: ModelGraph, offsets: list[int], plan: Plan, use: ArenaUse) -> None:
    base = [0]
    for sg in graph.subgraphs:
        base.append(base[-1] + len(sg.tensors))
    place = {}
    for b in use.buffers:
        s, t = b.tensors[0]
        off = offsets[base[s] + t]
        if off < 0 or off % ARENA_ALIGNMENT or off + b.size > plan.head:
            raise ModelError(f"internal check: tensor {t} of subgraph {s} placed out of bounds")
        for s2, t2 in b.tensors:
            if offsets[base[s2] + t2] != off:
                raise ModelError("internal check: in-place tensors do not share their buffer")
        place[b] = off
    # Buffers TFLM's marking never reaches (lifetime -1) are touched by no kernel.
    live = [b for b in use.buffers if b.first >= 0]
    if overlapping_pairs(Blocks.of(live), [place[b] for b in live]):
        raise ModelError("internal check: offline plan overlaps two live tensors")
