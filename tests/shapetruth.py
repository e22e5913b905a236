"""Shape truth for the tests: LiteRT's resolved shapes, stored shapes, and simple plans.

LiteRT re-runs shape inference in ``allocate_tensors()``, so its tensor shapes are the truth
the kernels use; TFLM allocates from the stored shapes.
"""

from __future__ import annotations

import functools

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from conftest import model_path

from tflite_reorder import flatbuffer_io as fio
from tflite_reorder.graph import build_graph
from tflite_reorder.memory import simulate
from tflite_reorder.runtimes import litert


def load(name: str) -> schema.ModelT:
    """``models/<name>.tflite`` as an object tree (a fresh copy each call)."""
    return fio.load_model(model_path(name)).model


@functools.cache
def litert_shapes(name: str) -> dict[int, tuple[int, ...]]:
    """LiteRT's resolved shape of every subgraph-0 tensor of a model in models/."""
    it = litert(model_path(name).read_bytes())
    return {d["index"]: tuple(int(x) for x in d["shape"]) for d in it.get_tensor_details()}


def stored(tensor: schema.TensorT) -> tuple[int, ...]:
    """A tensor's stored shape."""
    return tuple(int(d) for d in (tensor.shape if tensor.shape is not None else ()))


def mismatches(model: schema.ModelT, inferred, truth) -> list:
    out = []
    for t, tensor in enumerate(model.subgraphs[0].tensors):
        mine = inferred.get((0, t), stored(tensor))
        if mine != truth[t]:
            out.append((t, mine, truth[t]))
    return out


def wrong_stored(name: str) -> dict[int, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Tensors whose stored shape LiteRT disagrees with: {tensor: (stored, true)}."""
    model, truth = load(name), litert_shapes(name)
    return {
        t: (stored(x), truth[t])
        for t, x in enumerate(model.subgraphs[0].tensors) if stored(x) != truth[t]
    }



def packed_plan(model: schema.ModelT, true_shapes=None, inplace: bool = False) -> list[int]:
    """First fit by descending size over TFLM's lifetimes (``memory.simulate``).

    With ``inplace`` every member of an in-place group gets its group's offset.
    """
    graph = build_graph(model, true_shapes)
    use = simulate(graph, graph.stored_orders(), inplace=inplace)
    base = np.cumsum([0] + [len(sg.tensors) for sg in graph.subgraphs]).tolist()
    plan = [-1] * graph.n_tensors
    placed: list[tuple[int, object]] = []
    for b in sorted(use.buffers, key=lambda b: (-b.size, b.tensors)):
        clash = [(o, p) for o, p in placed if p.overlaps(b)]
        for off in sorted({0} | {o + p.size for o, p in clash}):
            if all(off + b.size <= o or o + p.size <= off for o, p in clash):
                break
        placed.append((off, b))
        for s, t in b.tensors:
            plan[base[s] + t] = off
    return plan


def sequential_plan(model: schema.ModelT, true_shapes=None) -> list[int]:
    """No reuse: every arena tensor its own region, in lifetime order."""
    graph = build_graph(model, true_shapes)
    use = simulate(graph, graph.stored_orders(), inplace=False)
    base = np.cumsum([0] + [len(sg.tensors) for sg in graph.subgraphs]).tolist()
    plan, pos = [-1] * graph.n_tensors, 0
    for b in use.buffers:
        (s, t), = b.tensors
        plan[base[s] + t] = pos
        pos += b.size
    return plan

