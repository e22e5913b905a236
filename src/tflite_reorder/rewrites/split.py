"""Split a convolution by output channels when everything after it works channel by channel.

Keras' DenseNet (and ResNet-style) stems run a large convolution, then ``ZeroPadding2D`` and
a 3×3 max pool: the convolution's output and its padded copy are live together, and in
those models that is the peak (DenseNet121 at 64×64: 139,520 B, above every dense block
once the blocks are partitioned). A ``CONV_2D`` whose weights are quantised per output
channel (or per tensor) computes each output channel on its own, so it can run as ``k``
convolutions over slices of its filters and bias, joined by a concatenation; that
concatenation is then dissolved forward (``partition.dissolve``, exact steps only) through
the PAD, the pool and the per-channel ops after them, and each slice goes through the
chain on its own. Only whole output channels move and every slice keeps the output's
quantisation, so the result is bit-exact; the rewrite is kept only when the dissolve gets
past every consumer (else the concatenation would just be a copy).

*Bottleneck split* (``contract``): DenseNet's 1×1 bottleneck feeds a 3×3 convolution, which
needs all of its channels. Split in two halves, the 3×3 convolution is partitioned over
them (``partition``'s channel-wise partitioning: inexact in int8), so the bottleneck's
running sum and partial products are half as wide when its own input is partitioned too.
The per-channel chain that feeds it (the batch-norm MUL/ADD and ReLU) is recomputed per
half rather than kept: kept, every normalised piece would live from the first half to the
second, which costs more than it saves.
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from .edit import Editor, NotApplicable
from .partition import (
    BINARY,
    CONTRACTIONS,
    PADS,
    POOLS,
    REDUCERS,
    SUPPORTED_TYPES,
    UNARY,
    Ranges,
    Step,
    dissolve,
)

# Consumers an output split can move into its slices exactly (``dissolve`` decides the rest).
CHANNEL_LOCAL = UNARY | BINARY | POOLS | PADS | REDUCERS | {"DEPTHWISE_CONV_2D",
                                                              "CONCATENATION"}

MIN_SLICE = 4  # channels per slice, at least
MAX_SLICES = 4


def candidates(ed: Editor) -> list[int]:
    """Indices of CONV_2D ops that could be split (the dissolve decides the rest)."""
    return ed.applicable(lambda e, op: _check(e, op, contract=True))


def _contracted(ed: Editor, op: schema.OperatorT) -> bool:
    """Whether a consumer of ``op``'s output needs all its channels (a contraction)."""
    return any(ed.opcode(e) in CONTRACTIONS for e in ed.consumers(ed.outputs(op)[0]))


def _check(ed: Editor, op: schema.OperatorT, contract: bool = False) -> int:
    """The number of output channels, or NotApplicable with the reason."""
    if ed.opcode(op) != "CONV_2D":
        raise NotApplicable("not a CONV_2D")
    ins, outs = ed.inputs(op), ed.outputs(op)
    if len(outs) != 1 or ed.is_io(outs[0]):
        raise NotApplicable("output is a subgraph output")
    if ed.dtype(outs[0]) not in SUPPORTED_TYPES:
        raise NotApplicable(f"{ed.dtype(outs[0])} output")
    w = ed.constant(ins[1])
    if w is None or (len(ins) > 2 and ins[2] >= 0 and ed.constant(ins[2]) is None):
        raise NotApplicable("weights or bias are not constant")
    wq, oq = ed.quant(ins[1]), ed.quant(outs[0])
    if wq is not None and not (wq.per_tensor or wq.dim == 0):
        raise NotApplicable("weights are not quantised per output channel")
    if oq is not None and not oq.per_tensor:
        raise NotApplicable("output is quantised per channel")
    consumers = ed.consumers(outs[0])
    if not consumers:
        raise NotApplicable("output is unused")
    for e in consumers:
        code = ed.opcode(e)
        if contract and code in CONTRACTIONS:
            continue
        if code not in CHANNEL_LOCAL:
            raise NotApplicable(f"consumer {code} does not work channel by channel")
        if code in BINARY and any(j != outs[0] and j >= 0 and ed.constant(j) is None
                                  for j in ed.inputs(e)):
            raise NotApplicable(f"{code} has a non-constant operand")
    n = w.shape[0]
    if n < 2 * MIN_SLICE:
        raise NotApplicable(f"only {n} output channels")
    return n


def _slice_first(ed: Editor, c: int, a: int, b: int, tag: str) -> int:
    """A constant sliced to [a, b) of its first axis (per-channel quantisation sliced)."""
    value = ed.constant(c)
    q = ed.quant(c)
    sq = q.sliced(a, b, 0) if q is not None else None
    return ed.new_constant(value[a:b], c, f"{ed.name(c)}/{tag}", sq)


def input_chain(ed: Editor, op: schema.OperatorT) -> list[schema.OperatorT]:
    """The per-channel ops (one data input, other operands constant) that compute ``op``'s
    input and feed nothing else, earliest first."""
    chain: list[schema.OperatorT] = []
    t, user = ed.inputs(op)[0], op
    while not ed.is_io(t) and [id(e) for e in ed.consumers(t)] == [id(user)]:
        prod = ed.producer(t)
        if prod is None or ed.opcode(prod) not in UNARY | BINARY or len(ed.outputs(prod)) != 1:
            break
        data = [j for j in ed.inputs(prod) if j >= 0 and ed.constant(j) is None]
        if len(data) != 1:
            break
        chain.insert(0, prod)
        t, user = data[0], prod
    return chain


def _copy_chain(ed: Editor, chain: list[schema.OperatorT], tag: str) -> tuple[list, int]:
    """The chain again on new tensors: its ops and the tensor the copy ends in."""
    remap: dict[int, int] = {}
    ops = []
    for c in chain:
        out = ed.outputs(c)[0]
        new_out = ed.new_tensor(out, ed.shape(out), f"{ed.name(out)}/{tag}", keep_quant=True)
        ops.append(ed.clone_op(c, [remap.get(j, j) for j in ed.inputs(c)], [new_out]))
        remap[out] = new_out
    return ops, remap[ed.outputs(chain[-1])[0]]


def split(
    ed: Editor, op: schema.OperatorT, slices: int = MAX_SLICES, contract: bool = False,
    ranges: Ranges | None = None,
) -> list[Step]:
    """Split ``op`` into ``slices`` convolutions and dissolve their concatenation forward.

    With ``contract``, a consumer that needs all channels (a convolution) is partitioned
    over two halves, and the per-channel chain computing ``op``'s input is recomputed per
    half (``ranges``: calibrated int8 ranges of the partial products, by name). Raises
    NotApplicable (subgraph unchanged) when ``op`` cannot be split or the concat cannot be
    moved past every consumer.
    """
    n = _check(ed, op, contract)
    halves = contract and _contracted(ed, op)
    k = 2 if halves else max(2, min(slices, n // MIN_SLICE))
    bounds = np.linspace(0, n, k + 1).round().astype(int)
    ins, out = ed.inputs(op), ed.outputs(op)[0]
    shape, q = ed.shape(out), ed.quant(out)
    saved_ops, saved_tensors = list(ed.sg.operators), len(ed.sg.tensors)
    saved_buffers = len(ed.model.buffers)
    pieces, new_ops = [], []
    chain = input_chain(ed, op) if halves else []
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        w_i = _slice_first(ed, ins[1], int(a), int(b), f"out{i}")
        x = ins[0]
        if chain and i > 0:
            copied, x = _copy_chain(ed, chain, f"half{i}")
            new_ops += copied
        new_in = [x, w_i]
        if len(ins) > 2:
            new_in.append(_slice_first(ed, ins[2], int(a), int(b), f"out{i}")
                          if ins[2] >= 0 else -1)
        t = ed.new_tensor(out, shape[:-1] + (int(b - a),), f"{ed.name(out)}/out{i}", q)
        new_ops.append(ed.clone_op(op, new_in, [t]))
        pieces.append(t)
    concat = ed.concat_op(pieces, out, len(shape) - 1)
    ed.replace([op], [*new_ops, concat])
    ed.toposort()
    try:
        steps = dissolve(ed, concat, contract=halves, ranges=ranges)
    except NotApplicable as exc:  # undo: nothing else refers to what was added
        ed.sg.operators = saved_ops
        del ed.sg.tensors[saved_tensors:]
        del ed.model.buffers[saved_buffers:]
        raise NotApplicable(f"output split: {exc}") from None
    return [Step("output_split", "CONV_2D", True, op), *steps]
