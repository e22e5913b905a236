"""Add accumulation: a tree of ADDs over branches becomes a left-deep chain.

``ADD(ADD(a, b), ADD(c, d))`` needs ``a+b``, ``c`` and ``d`` live together; the chain
``ADD(ADD(ADD(a, b), c), d)`` only ever holds the running sum and one new branch, and every
ADD can write its output over the dying running sum in place (``memory.INPLACE_OPS``).
Re-association is exact for integers but not for int8 (each ADD requantises) nor float
(rounding): the caller measures the error. New running sums get the quantisation of an
original node with the same operands when there is one, else the sum of the ranges of the
largest original nodes that cover them.
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from . import quant as qa
from .edit import Editor, NotApplicable, Quant


def _act(op: schema.OperatorT) -> int:
    return int(getattr(op.builtinOptions, "fusedActivationFunction", 0) or 0)


def _internal(ed: Editor, t: int, shape, dtype: str) -> schema.OperatorT | None:
    """The ADD producing ``t`` if it can be re-associated into its single consumer."""
    op = ed.producer(t)
    if op is None or ed.opcode(op) != "ADD" or _act(op) or ed.is_io(t):
        return None
    if len(ed.consumers(t)) != 1 or ed.shape(t) != shape or ed.dtype(t) != dtype:
        return None
    ins = ed.inputs(op)
    if len(ins) != 2 or any(ed.shape(i) != shape for i in ins):
        return None
    return op


def _tree(ed: Editor, root: schema.OperatorT):
    """Leaves (in operand order) and internal nodes (op -> leaf set) under ``root``."""
    out = ed.outputs(root)[0]
    shape, dtype = ed.shape(out), ed.dtype(out)
    if dtype not in ("INT8", "FLOAT32"):
        raise NotApplicable(f"{dtype} ADD")
    leaves: list[int] = []
    nodes: dict[int, tuple[schema.OperatorT, frozenset[int]]] = {}

    def walk(op: schema.OperatorT) -> frozenset[int]:
        mine: set[int] = set()
        for t in ed.inputs(op):
            child = _internal(ed, t, shape, dtype)
            if child is None:
                if t in leaves:
                    raise NotApplicable("a branch is added twice")
                leaves.append(t)
                mine.add(t)
            else:
                mine |= walk(child)
        nodes[id(op)] = (op, frozenset(mine))
        return frozenset(mine)

    ins = ed.inputs(root)
    if len(ins) != 2 or any(ed.shape(i) != shape for i in ins):
        raise NotApplicable("ADD broadcasts")
    walk(root)
    return leaves, nodes


def is_root(ed: Editor, op: schema.OperatorT) -> bool:
    """An ADD that is not itself re-associable into a consumer ADD."""
    if ed.opcode(op) != "ADD":
        return False
    out = ed.outputs(op)[0]
    return _internal(ed, out, ed.shape(out), ed.dtype(out)) is None or not any(
        ed.opcode(c) == "ADD" for c in ed.consumers(out))


def candidates(ed: Editor) -> list[int]:
    """Roots of ADD trees that are not left-deep chains already."""
    out = []
    for i, op in enumerate(ed.sg.operators):
        if not is_root(ed, op):
            continue
        try:
            leaves, nodes = _tree(ed, op)
        except NotApplicable:
            continue
        # left-deep: every ADD has at most one internal child
        if len(leaves) >= 3 and any(
            sum(1 for t in ed.inputs(o) if ed.producer(t) is not None
                and id(ed.producer(t)) in nodes) > 1
            for o, _ in nodes.values()
        ):
            out.append(i)
    return out


def rebalance(ed: Editor, root: schema.OperatorT) -> None:
    """Replace the tree under ``root`` by a left-deep chain (leaves in production order)."""
    leaves, nodes = _tree(ed, root)
    if len(leaves) < 3:
        raise NotApplicable("fewer than three branches")
    pos = {id(op): i for i, op in enumerate(ed.sg.operators)}
    made = {t: pos.get(id(ed.producer(t)), -1) if ed.producer(t) is not None else -1
            for t in leaves}
    order = sorted(leaves, key=lambda t: (made[t], leaves.index(t)))
    out = ed.outputs(root)[0]
    int8 = ed.dtype(out) == "INT8"
    ops, acc = [], order[0]
    for j, leaf in enumerate(order[1:], start=1):
        last = j == len(order) - 1
        dst = out if last else ed.new_tensor(
            out, ed.shape(out), f"{ed.name(out)}/acc{j}",
            _sum_quant(ed, frozenset(order[: j + 1]), nodes) if int8 else None)
        ops.append(ed.add_op("ADD", [acc, leaf], dst, _act(root) if last else 0))
        acc = dst
    ed.replace([op for op, _ in nodes.values()], ops)
    ed.toposort()


def _sum_quant(ed: Editor, wanted: frozenset[int], nodes) -> Quant:
    """Quantisation for the sum of ``wanted`` leaves, from the original nodes' ranges."""
    by_set = {leafs: ed.outputs(op)[0] for op, leafs in nodes.values()}
    if wanted in by_set:
        return ed.quant(by_set[wanted])
    lo = hi = 0.0
    left = set(wanted)
    for leafs, t in sorted(by_set.items(), key=lambda kv: -len(kv[0])):
        if leafs <= left:
            a, b = qa.real_range(ed, t)
            lo, hi, left = lo + a, hi + b, left - leafs
    for t in left:
        a, b = qa.real_range(ed, t)
        lo, hi = lo + a, hi + b
    return qa.covering_quant(float(np.float64(lo)), float(np.float64(hi)))
