"""Random operator DAGs with TFLM-like structure, for property tests against brute force."""

from __future__ import annotations

import itertools
import random

from tflite_reorder.graph import ModelGraph, OpNode, SubgraphGraph, TensorInfo
from tflite_reorder.memory import Problem, build_problem


def random_subgraph(rng: random.Random, n_ops: int, inplace_share: float = 0.3,
                    source_share: float = 0.0, twin_share: float = 0.0) -> SubgraphGraph:
    """Multi-output ops, shared inputs, mid-graph outputs, dead outputs, random sizes.

    ``source_share``: the share of ops that read a constant (DEQUANTIZE-like), half of them
    also reading an arena tensor, so that many are "sources" (``reductions``).
    ``twin_share``: the share of ops followed by a twin (same inputs, outputs of the same
    sizes, read by the same later ops), so that many are interchangeable.
    """
    partner: dict[int, int] = {}  # output of a twin -> the same output of the other twin
    tensors: list[TensorInfo] = []

    def new_tensor(nbytes: int | None = None) -> int:
        nb = nbytes if nbytes is not None else rng.choice([8, 16, 24, 40, 64, 100, 128, 200])
        idx = len(tensors)
        tensors.append(TensorInfo(idx, f"t{idx}", (nb,), "INT8", nb, True, (nb,)))
        return idx

    inputs = tuple(new_tensor() for _ in range(rng.randint(1, 2)))
    avail = list(inputs)
    ops: list[OpNode] = []
    while len(ops) < n_ops:
        i = len(ops)
        if rng.random() < source_share:
            const = len(tensors)
            tensors.append(TensorInfo(const, f"c{const}", (8,), "INT8", 8, False, (8,)))
            ins = (const,) if rng.random() < 0.5 else (const, rng.choice(avail))
            outs = (new_tensor(),)
            ops.append(OpNode(i, "DEQUANTIZE", ins, outs))
            avail.extend(outs)
            continue
        k = rng.randint(1, min(3, len(avail)))
        # prefer recent tensors so the DAG has depth, but allow long skips
        pool = avail[-4:] if rng.random() < 0.7 else avail
        ins = tuple(dict.fromkeys(rng.sample(pool, min(k, len(pool)))))
        ins = tuple(dict.fromkeys(ins + tuple(partner[t] for t in ins if t in partner)))
        if rng.random() < inplace_share:
            opcode = "ADD"
            outs = (new_tensor(tensors[ins[0]].nbytes),)
        else:
            opcode = "CONV_2D"
            outs = tuple(new_tensor() for _ in range(rng.choice([1, 1, 1, 2, 3])))
        ops.append(OpNode(i, opcode, ins, outs))
        avail.extend(outs)
        if twin_share and len(ops) < n_ops and rng.random() < twin_share:
            twin = tuple(new_tensor(tensors[t].nbytes) for t in outs)
            for a, b in zip(outs, twin, strict=True):
                partner[a], partner[b] = b, a
            ops.append(OpNode(len(ops), opcode, ins, twin))
            avail.extend(twin)
    producer = {t: op.index for op in ops for t in op.outputs}
    consumers: dict[int, list[int]] = {}
    for op in ops:
        for t in op.inputs:
            consumers.setdefault(t, []).append(op.index)
    sinks = [t for t in producer if t not in consumers]
    outputs = set(rng.sample(sinks, max(1, len(sinks) // 2))) if sinks else set()
    mid = [t for t in producer if t in consumers]
    if mid and rng.random() < 0.3:
        outputs.add(rng.choice(mid))  # an output that is also consumed inside the graph
    if not outputs:
        outputs.add(ops[-1].outputs[0])
    preds = [
        tuple(sorted({producer[t] for t in op.inputs if t in producer})) for op in ops
    ]
    return SubgraphGraph(
        index=0, name="random", tensors=tensors, ops=ops, inputs=inputs,
        outputs=tuple(sorted(outputs)), producer=producer, consumers=consumers, preds=preds,
    )


def all_topological_orders(sg: SubgraphGraph):
    n = len(sg.ops)
    preds = [set(p) for p in sg.preds]

    def rec(done: list[int], placed: set[int]):
        if len(done) == n:
            yield list(done)
            return
        for v in range(n):
            if v not in placed and preds[v] <= placed:
                done.append(v)
                placed.add(v)
                yield from rec(done, placed)
                done.pop()
                placed.discard(v)

    yield from rec([], set())


def model_of(sg: SubgraphGraph) -> ModelGraph:
    return ModelGraph([sg])


def random_problems(rng: random.Random, count: int, n_ops: tuple[int, int],
                    inplace: bool | None = None, source_share: float = 0.0):
    """The property tests' random-problem loop: ``count`` (graph, problem) pairs with
    ``n_ops`` (inclusive range) ops each; ``inplace`` None = drawn per problem."""
    for _ in range(count):
        sg = random_subgraph(rng, rng.randint(*n_ops), source_share=source_share)
        ip = rng.random() < 0.5 if inplace is None else inplace
        yield sg, build_problem(sg, inplace=ip)


def random_order(rng: random.Random, p: Problem | SubgraphGraph) -> list[int]:
    """A uniformly shuffled Kahn order: a random valid stored order (of a problem or a
    graph: anything with ``preds`` and ``succs`` per op)."""
    indeg = [len(ps) for ps in p.preds]
    ready = [v for v in range(len(indeg)) if not indeg[v]]
    order = []
    while ready:
        v = ready.pop(rng.randrange(len(ready)))
        order.append(v)
        for w in p.succs[v]:
            indeg[w] -= 1
            if not indeg[w]:
                ready.append(w)
    return order


def downsets(pred_mask: list[int]):
    """Every downset (as a bitmask) of the DAG with these predecessor bitmasks."""
    n = len(pred_mask)
    for mask in range(1 << n):
        if all(not (mask >> u) & 1 or pred_mask[u] & ~mask == 0 for u in range(n)):
            yield mask


__all__ = ["random_subgraph", "all_topological_orders", "model_of", "itertools",
           "random_problems", "random_order", "downsets"]
