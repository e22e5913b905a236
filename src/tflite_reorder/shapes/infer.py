"""Shape inference over the stored order, and writing the true shapes back (``fix_shapes``).

Inference runs per subgraph in stored order from the subgraph inputs' stored shapes.
Operators without a rule keep their stored output shapes, but known operators after them
are still re-derived from whatever their inputs are.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from ..dtypes import TYPE_NAMES
from ..graph import ModelGraph, build_graph, opcode_namer
from ..tensors import stored_shape, stored_shapes
from .rules import SHAPE_RULES, Env, Key, Shape, Unknown, option
from .values import MAX_VALUE_ELEMENTS, VALUE_DTYPES, VALUE_RULES, int_value


def _valid(shape: Shape | None) -> bool:
    return shape is not None and min(shape, default=0) >= 0


def _apply(env: Env, op: schema.OperatorT, opcode: str) -> None:
    """Infer one operator's output shapes (and values), keeping stored ones it cannot."""
    outs = op.outputs if op.outputs is not None else ()
    rule = _if_outputs if opcode == "IF" else SHAPE_RULES.get(opcode)
    if rule is not None:
        try:
            inferred = rule(env, op)  # a list: one shape (or None) per output
        except (Unknown, ValueError, IndexError, ZeroDivisionError):
            inferred = ()
        if len(inferred) == len(outs):
            shapes = env.shapes
            for t, shape in zip(outs, inferred, strict=True):
                if t >= 0 and shape is not None and min(shape, default=0) >= 0:  # _valid
                    shapes[t] = tuple(map(int, shape))
    if opcode in VALUE_RULES:
        _apply_values(env, op, opcode, outs)


def _apply_values(env: Env, op: schema.OperatorT, opcode: str, outs: list[int]) -> None:
    rule = VALUE_RULES.get(opcode)
    if rule is None or not all(env.dtype(t) in VALUE_DTYPES for t in outs if t >= 0):
        return
    try:
        values = rule(env, op, [env.shapes[t] for t in outs])
    except (Unknown, ValueError, IndexError, ZeroDivisionError):
        return
    if len(values) != len(outs):
        return
    for t, value in zip(outs, values, strict=True):
        value = np.asarray(value, dtype=np.int64)
        if t >= 0 and value.size <= MAX_VALUE_ELEMENTS and value.shape == env.shapes[t]:
            env.values[t] = value


def _if_outputs(env: Env, op: schema.OperatorT) -> list[Shape | None]:
    """IF's outputs have the inferred shapes of its then-branch subgraph's outputs."""
    then = int(option(op, "thenSubgraphIndex"))
    if then not in env.branches:  # out of range, or a branch that (indirectly) calls back
        raise Unknown("IF branch")
    shapes = env.branches[then]
    return [shapes[int(t)] for t in env.model.subgraphs[then].outputs]


def _then_branches(model: schema.ModelT, s: int, name: Callable[[int], str]) -> list[int]:
    """The in-range then-branch subgraphs of ``s``'s IF operators (what inference needs)."""
    out = []
    for op in model.subgraphs[s].operators or []:
        if name(op.opcodeIndex) == "IF":
            try:
                then = int(option(op, "thenSubgraphIndex"))
            except (Unknown, TypeError, ValueError):  # no IF options: the IF keeps its shapes
                continue
            if 0 <= then < len(model.subgraphs):
                out.append(then)
    return out


# Type codes of VALUE_DTYPES (constants whose values rules may read).
_VALUE_TYPES = frozenset(code for code, n in TYPE_NAMES.items() if n in VALUE_DTYPES)

# Operators whose output shapes inference re-derives (the others keep their stored shapes,
# unchecked: ``hazards`` reports them).
CHECKED_OPS = frozenset(SHAPE_RULES) | {"IF"}


def infer_subgraph(model: schema.ModelT, s: int,
                   known: dict[int, list[Shape]] | None = None,
                   name: Callable[[int], str] | None = None) -> list[Shape]:
    """Every tensor's shape in subgraph ``s`` (true where a rule knows, else stored).

    The then-branches of IFs (and theirs) are inferred first, each once, callees before
    callers and without recursion (1,500 nested IFs): a branch's shapes do not depend on
    its caller, since inference starts from the subgraph inputs' stored shapes. ``known``
    (kept by the caller across calls on one model) holds the subgraphs already inferred.
    An IF whose branch calls back into a subgraph still being inferred keeps its stored
    shapes. ``name`` (``graph.opcode_namer(model)``, kept by a caller walking every
    subgraph) saves naming the operator codes again.
    """
    known = {} if known is None else known
    if s in known:
        return known[s]
    name = name or opcode_namer(model)
    on_path = {s}
    # one subgraph: an IF's branches are the subgraph itself, on the path (stored shapes)
    several = len(model.subgraphs) > 1
    stack = [(s, iter(_then_branches(model, s, name) if several else ()))]
    while stack:
        top, callees = stack[-1]
        nxt = next(callees, None)
        if nxt is None:
            stack.pop()
            on_path.discard(top)
            known[top] = _infer_one(model, top, known, name)
        elif nxt not in known and nxt not in on_path:
            on_path.add(nxt)
            stack.append((nxt, iter(_then_branches(model, nxt, name))))
    return known[s]


def _infer_one(model: schema.ModelT, s: int, branches: dict[int, list[Shape]],
               name: Callable[[int], str]) -> list[Shape]:
    sg = model.subgraphs[s]
    tensors = sg.tensors or []
    env = Env(model, sg, stored_shapes(tensors), branches=branches)
    for i, t in enumerate(tensors):
        if t.buffer and t.type in _VALUE_TYPES:  # else int_value is None
            env.constants[i] = functools.partial(int_value, model, t)
    for op in sg.operators or []:
        _apply(env, op, name(op.opcodeIndex))
    return env.shapes


def infer_shapes(model_t: schema.ModelT) -> dict[Key, Shape]:
    """The shape of every tensor whose inferred (true) shape differs from the stored one.

    Keys are (subgraph, tensor); pass the result to ``graph.build_graph(true_shapes=…)`` to
    plan with the sizes the kernels really use, or to ``fix_shapes`` to repair the model.
    """
    result: dict[Key, Shape] = {}
    known: dict[int, list[Shape]] = {}
    name = opcode_namer(model_t)
    for s, sg in enumerate(model_t.subgraphs):
        inferred = infer_subgraph(model_t, s, known, name)
        for t, (shape, stored) in enumerate(zip(inferred, stored_shapes(sg.tensors or []),
                                                strict=True)):
            if shape != stored:
                result[(s, t)] = shape
    return result


def true_shapes(model_t: schema.ModelT) -> dict[Key, Shape]:
    """``infer_shapes``, best effort: a model inference cannot walk keeps its stored shapes.

    Never raises; unknown ops already keep their stored shapes inside ``infer_shapes``, and
    a model it cannot walk at all (a malformed operator) gets ``{}``.
    """
    try:
        return infer_shapes(model_t)
    except Exception:  # inference is best effort: unknown ops keep their stored shapes
        return {}


def true_graph(model_t: schema.ModelT) -> ModelGraph:
    """The operator DAG with the sizes the kernels really use (``build_graph``'s errors)."""
    return build_graph(model_t, true_shapes(model_t))


def fix_shapes(model_t: schema.ModelT, shapes: dict[Key, Shape]) -> int:
    """Write true static shapes into ``TensorT.shape``; returns how many tensors changed.

    ``shape_signature`` is only touched where it would contradict the new shape (another
    rank, or a fixed dimension that differs); its -1 (dynamic) dimensions are kept.
    """
    changed = 0
    for (s, t), shape in shapes.items():
        tensor = model_t.subgraphs[s].tensors[t]
        if stored_shape(tensor) == tuple(shape):
            continue
        tensor.shape = np.array(shape, dtype=np.int32)
        _fit_signature(tensor, tuple(shape))
        changed += 1
    return changed


def _fit_signature(tensor: schema.TensorT, shape: Shape) -> None:
    sig = tensor.shapeSignature
    if sig is None or len(sig) == 0:
        return
    sig_t = tuple(int(d) for d in sig)
    if len(sig_t) != len(shape):
        tensor.shapeSignature = np.array(shape, dtype=np.int32)
    elif any(d not in (-1, n) for d, n in zip(sig_t, shape, strict=True)):
        new = [-1 if d == -1 else n for d, n in zip(sig_t, shape, strict=True)]
        tensor.shapeSignature = np.array(new, dtype=np.int32)
