"""The writer's self-check: re-read the bytes about to be written before anyone sees them.

A bug anywhere upstream (order, tensors, plan) would otherwise ship a model that TFLM runs
wrongly; here it becomes an internal error and nothing is written.
"""

from __future__ import annotations

from .arena import Plan, replay
from .arena.blocks import Blocks, overlapping_pairs
from .dtypes import ARENA_ALIGNMENT
from .fastread import read_lite
from .flatbuffer_io import BUFFER_ALIGNMENT, buffer_data_offsets, get_offline_plan
from .graph import ModelGraph, op_nodes, opcode_namer, producers
from .memory import ArenaUse


class SelfCheckError(RuntimeError):
    """The bytes about to be written are not what the pipeline meant: a bug of ours (exit 3)."""


def check_written(
    graph: ModelGraph, data: bytes, orders: list[list[int]], plan: Plan | None,
    use: ArenaUse,
) -> None:
    """Re-read the bytes about to be written and check them against what we meant to write.

    Same operators (by opcode and tensors) in each subgraph, in a topological order, same
    tensors, every constant buffer's data at a 16-byte aligned file offset (TFLM reads
    weights in place), and an offline plan of 16-byte aligned offsets inside bounds whose
    live buffers never overlap. Raises ``SelfCheckError`` (message starting "internal
    check:") on the first difference.
    """
    out = read_lite(data, "<output>")  # the graph fields, without unpacking every table
    misaligned = [o for o in buffer_data_offsets(data) if o % BUFFER_ALIGNMENT]
    if misaligned:
        raise SelfCheckError(f"internal check: {len(misaligned)} constant buffer(s) not "
                             f"{BUFFER_ALIGNMENT}-byte aligned (first at file offset "
                             f"{misaligned[0]})")
    if len(out.subgraphs) != len(graph.subgraphs):
        raise SelfCheckError("internal check: subgraph count changed")
    name = opcode_namer(out)
    for s, (a, b) in enumerate(zip(graph.subgraphs, out.subgraphs, strict=True)):
        if len(a.tensors) != len(b.tensors or []):
            raise SelfCheckError(f"internal check: subgraph {s} tensor count changed")
        ops = op_nodes(out, s, name)  # ModelError as the graph builder raises it
        want = [(a.ops[v].opcode, a.ops[v].inputs, a.ops[v].outputs) for v in orders[s]]
        got = [(op.opcode, op.inputs, op.outputs) for op in ops]
        if want != got:
            raise SelfCheckError(f"internal check: subgraph {s} operators differ from the plan")
        if not _data_order(ops, f"subgraph {s}"):
            raise SelfCheckError(f"internal check: subgraph {s} order is not topological")
    offsets = get_offline_plan(out)
    if plan is None:
        if offsets is not None:
            raise SelfCheckError("internal check: unexpected offline plan in output")
        return
    if offsets is None or len(offsets) != graph.n_tensors:
        raise SelfCheckError("internal check: offline plan missing or of the wrong length")
    _check_plan(graph, offsets, plan, use, orders)


def _data_order(ops, where: str) -> bool:
    """Whether every operator of the written order runs after the writers of its inputs
    (the only edges that can point backwards in a stored order: the graph builder orders
    stateful operators as stored)."""
    producer = producers(ops, where)
    return all(producer.get(t, p) <= p for p, op in enumerate(ops) for t in op.inputs)


def _check_plan(graph: ModelGraph, offsets: list[int], plan: Plan, use: ArenaUse,
                orders: list[list[int]]) -> None:
    base = [0]
    for sg in graph.subgraphs:
        base.append(base[-1] + len(sg.tensors))
    place = {}
    for b in use.buffers:
        s, t = b.tensors[0]
        off = offsets[base[s] + t]
        if off < 0 or off % ARENA_ALIGNMENT or off + b.size > plan.head:
            raise SelfCheckError(f"internal check: tensor {t} of subgraph {s} placed out of bounds")
        for s2, t2 in b.tensors:
            if offsets[base[s2] + t2] != off:
                raise SelfCheckError("internal check: in-place tensors do not share their buffer")
        place[b] = off
    if plan.refined is not None:
        _check_rows(graph, offsets, base, plan, orders)
        return
    # Buffers TFLM's marking never reaches (lifetime -1) are touched by no kernel.
    live = [b for b in use.buffers if b.first >= 0]
    if overlapping_pairs(Blocks.of(live), [place[b] for b in live]):
        raise SelfCheckError("internal check: offline plan overlaps two live tensors")


def _check_rows(graph: ModelGraph, offsets: list[int], base: list[int], plan: Plan,
                orders: list[list[int]]) -> None:
    """A row-granular plan: the pieces' overlaps are the ones their lifetimes allow, the
    file holds the layout's offsets, and the byte replay finds no byte overwritten while
    a later op still reads it (``arena.replay``)."""
    lay = plan.refined
    if overlapping_pairs(lay.blocks, plan.block_offsets):
        raise SelfCheckError("internal check: offline plan overlaps two live row pieces")
    for (s, t), off in lay.offsets(plan.block_offsets).items():
        if 0 <= s < len(graph.subgraphs) and offsets[base[s] + t] != off:
            raise SelfCheckError(f"internal check: tensor {t} is not where its row layout "
                                 f"puts it")
    try:
        replay.check(graph, orders, plan.offsets, plan.facts)
    except replay.ReplayError as exc:
        raise SelfCheckError(f"internal check: {exc}") from exc
