"""SERENITY's partitioning rewrites: make a channel CONCATENATION disappear.

``CONCAT(x1..xk)`` along the channel (last) axis costs its inputs plus a copy of them.
Every consumer that works channel by channel can instead run once per branch:

* element-wise ops (RELU, MUL/ADD by per-channel constants, QUANTIZE, …), pooling, PAD,
  reductions over other axes and DEPTHWISE_CONV_2D (*kernel-wise partitioning*: the filter,
  bias and per-channel quantisation sliced) move into the branches, and a new, smaller or
  later concat of their outputs replaces the old one. Exact, bit for bit, when the branches
  have the concat's own quantisation (the converter gives concat inputs the output's);
* a concat feeding another concat along the same axis is merged into it;
* CONV_2D and FULLY_CONNECTED (*channel-wise partitioning*) become one partial product per
  branch with the matching input-channel slice of the weights, the bias in the first, summed
  by a left-deep chain of ADDs whose output can take a dying input's buffer in place. Float:
  exact up to rounding. int8: each partial and running sum is requantised to a worst-case
  range (see ``quant``), so the error is measured by the caller, never assumed.

``dissolve`` applies all of this from one concat, recursively through the new concats.
*Partial dissolution*: when some consumers cannot run per branch (a MEAN over the
channels, a subgraph output, an op with a non-constant per-channel operand), the others
still do and the concat stays for those only (a ``keep_whole`` step says which and why);
whether that pays is the search's pricing.

A concat along H or W (``spatial_concat``) dissolves through consumers that compute each
output pixel from input pixels of one piece only: element-wise ops whose constants do not
vary along that axis, 1×1 stride-1 convolutions, and VALID pools whose window equals their
stride and divides every piece. Those run per piece, bit-exact; anything else (a 3×3
convolution reads across the seam, a MEAN over the axis) keeps the concat, and the reason
is reported. A concat along the rows of a ``[1, rows, values]`` tensor (a detection head's
boxes or class scores, each level reshaped from ``[1, H, W, anchors * values]``) dissolves
the same way through element-wise ops and ops over the last axis (LOGISTIC, SOFTMAX).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from . import quant as qa
from .edit import Editor, NotApplicable, Quant

UNARY = frozenset({
    "RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1", "LOGISTIC", "TANH", "HARD_SWISH",
    "LEAKY_RELU", "ABS", "NEG", "QUANTIZE", "DEQUANTIZE", "ELU", "GELU", "EXP", "LOG", "SQRT",
    "RSQRT", "SQUARE", "FLOOR", "CEIL", "ROUND", "SIGN", "CAST",
})
BINARY = frozenset({
    "ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "PRELU", "POW",
})
POOLS = frozenset({
    "MAX_POOL_2D", "AVERAGE_POOL_2D", "L2_POOL_2D", "RESIZE_BILINEAR",
    "RESIZE_NEAREST_NEIGHBOR",
})
PADS = frozenset({"PAD", "PADV2", "MIRROR_PAD"})
REDUCERS = frozenset({"MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD"})
CONTRACTIONS = frozenset({"CONV_2D", "FULLY_CONNECTED"})
SUPPORTED_TYPES = frozenset({"FLOAT32", "INT8"})
MAX_CONCAT_INPUTS = 10  # TFLM's CONCATENATION kernel (kMaxInputNum)
NEEDS_CONTRACT = "needs channel-wise partitioning (inexact)"


@dataclass(frozen=True)
class Step:
    """One thing ``dissolve`` did: the rewrite kind, the op it moved, whether exact."""

    kind: str  # "distribute" | "kernel_partition" | "flatten" | "channel_partition"
    opcode: str
    exact: bool
    op: schema.OperatorT | None = field(default=None, compare=False, repr=False)
    quantized: bool = False  # int8 partial products (their scales are a choice)
    ranged: bool = False  # … quantised to given (calibrated) ranges
    reason: str = ""  # "keep_whole": why this consumer needs the concatenation whole


@dataclass(frozen=True)
class Branches:
    """The inputs of a channel concat and the channel range each one covers."""

    tensors: tuple[int, ...]
    widths: tuple[int, ...]
    axis: int = -1  # the concatenation axis: -1 channels, else 1 (H) or 2 (W) of NHWC

    @property
    def starts(self) -> tuple[int, ...]:
        return tuple(int(x) for x in np.cumsum((0,) + self.widths[:-1]))

    @property
    def channels(self) -> int:
        return sum(self.widths)

    def slices(self) -> list[tuple[int, int]]:
        return [(a, a + w) for a, w in zip(self.starts, self.widths, strict=True)]


Ranges = Mapping[str, tuple[float, float]]  # tensor name -> real range it needs to hold
Apply = Callable[[], tuple[list[schema.OperatorT], schema.OperatorT | None, Step]]


# ---------------------------------------------------------------------------------------------
# Entry point


def channel_concat(ed: Editor, op: schema.OperatorT) -> Branches:
    """The branches of a concat along the last axis, or NotApplicable with the reason."""
    if ed.opcode(op) != "CONCATENATION":
        raise NotApplicable("not a CONCATENATION")
    out = ed.outputs(op)[0]
    rank = len(ed.shape(out))
    o = ed.options(op)
    axis = o.axis % max(rank, 1)
    if axis != rank - 1 and not (rank == 4 and axis in (1, 2)) and not (rank == 3
                                                                         and axis == 1):
        raise NotApplicable("concatenation is not along the channel, H or W axis of a "
                            "feature map, nor along the rows of a [1, rows, values] tensor")
    if o.fusedActivationFunction:
        raise NotApplicable("concatenation has a fused activation")
    if ed.dtype(out) not in SUPPORTED_TYPES:
        raise NotApplicable(f"{ed.dtype(out)} concatenation")
    ins = ed.inputs(op)
    if len(set(ins)) != len(ins):
        raise NotApplicable("a tensor is concatenated twice")
    if axis == rank - 1:
        return Branches(tuple(ins), tuple(ed.shape(t)[-1] for t in ins))
    return Branches(tuple(ins), tuple(ed.shape(t)[axis] for t in ins), axis)


def dissolve(
    ed: Editor, concat: schema.OperatorT, contract: bool, ranges: Ranges | None = None
) -> list[Step]:
    """Move every consumer of ``concat`` into its branches; the concat is removed.

    ``contract`` allows channel-wise partitioning of CONV_2D/FULLY_CONNECTED (inexact for
    int8); without it only exact steps are taken. ``ranges`` narrows the int8 range of
    partial products and sums, by tensor name, inside their worst-case bounds. Raises
    NotApplicable (model unchanged) when some consumer cannot be moved. New concats are
    dissolved in turn where possible.
    """
    steps: list[Step] = []
    pending = [concat]
    first = True
    while pending:
        c = pending.pop(0)
        try:
            made = _dissolve_one(ed, c, contract, steps, ranges)
        except NotApplicable:
            if first:
                raise
            made = []
        first = False
        pending.extend(made)
    ed.toposort()
    return steps


def _dissolve_one(
    ed: Editor, concat: schema.OperatorT, contract: bool, steps: list[Step],
    ranges: Ranges | None,
) -> list[schema.OperatorT]:
    br = channel_concat(ed, concat)
    t = ed.outputs(concat)[0]
    consumers = ed.consumers(t)
    if not consumers and not ed.is_io(t):
        raise NotApplicable("concatenation output is unused")
    plans, whole = _plans(ed, consumers, t, br, contract, ranges)
    new_concats = []
    for e, apply in plans:
        ops, new_concat, step = apply()
        step = replace(step, op=e)
        if ops:
            ed.replace([e], ops)
        if new_concat is not None:
            new_concats.append(new_concat)
        steps.append(step)
    for code, why in whole:  # the concat stays, for these only
        steps.append(Step("keep_whole", code, True, concat, reason=why))
    if not whole:
        ed.sg.operators = [o for o in ed.sg.operators if o is not concat]
    return new_concats


def _plans(
    ed: Editor, consumers: list[schema.OperatorT], t: int, br: Branches, contract: bool,
    ranges: Ranges | None,
) -> tuple[list[tuple[schema.OperatorT, Apply]], list[tuple[str, str]]]:
    """How each consumer runs on the branches, and (opcode, why) of those that need the
    concat whole (a subgraph output counts as one: "OUTPUT").

    *Partial dissolution*: the consumers that can run per branch do, and the concat stays
    for the rest (it is then needed later, or by fewer ops: whether that lowers the peak is
    the caller's pricing). Raises NotApplicable (nothing changed) when no consumer can, or
    when one could only by an inexact step ``contract`` forbids (the exact variant of a
    site stays what it was: all of it exact, or nothing).
    """
    plans, whole = [], []
    if ed.is_io(t):
        whole.append(("OUTPUT", "concatenation output is a subgraph input or output"))
    for e in consumers:
        try:
            plans.append((e, _plan(ed, e, t, br, contract, ranges)))
        except NotApplicable as exc:
            if NEEDS_CONTRACT in str(exc):
                raise
            whole.append((ed.opcode(e), str(exc)))
    if not plans:
        raise NotApplicable(whole[0][1] if whole else "concatenation output is unused")
    return plans, whole


def _plan(
    ed: Editor, e: schema.OperatorT, t: int, br: Branches, contract: bool,
    ranges: Ranges | None,
) -> Apply:
    if br.axis != -1:
        return _along(ed, e, t, br)
    code = ed.opcode(e)
    if code in UNARY or code in BINARY:
        return _elementwise(ed, e, t, br)
    if code in POOLS or code in PADS or code in REDUCERS:
        return _spatial(ed, e, t, br)
    if code == "DEPTHWISE_CONV_2D":
        return _depthwise(ed, e, t, br)
    if code == "CONCATENATION":
        return _flatten(ed, e, t, br)
    if code in CONTRACTIONS:
        if not contract:
            raise NotApplicable(f"{code} consumer {NEEDS_CONTRACT}")
        return _contraction(ed, e, t, br, ranges or {})
    raise NotApplicable(f"consumer {code} cannot be split by channel")


# ---------------------------------------------------------------------------------------------
# Exact steps: the consumer runs per branch, a concat of the results replaces its output


def _exact_branches(ed: Editor, t: int, br: Branches) -> bool:
    """Branches quantised like the concat: moving an op into them changes no bit."""
    return all(ed.same_quant(x, t) for x in br.tensors)


def _single_output(ed: Editor, e: schema.OperatorT, channels: int) -> int:
    outs = ed.outputs(e)
    if len(outs) != 1:
        raise NotApplicable(f"{ed.opcode(e)} has {len(outs)} outputs")
    shape = ed.shape(outs[0])
    if not shape or shape[-1] != channels:
        raise NotApplicable(f"{ed.opcode(e)} output does not keep the channel axis last")
    if ed.dtype(outs[0]) not in SUPPORTED_TYPES:
        raise NotApplicable(f"{ed.opcode(e)} output is {ed.dtype(outs[0])}")
    return outs[0]


def _branch_outputs(ed: Editor, out: int, br: Branches, mult: int = 1) -> list[int]:
    shape = ed.shape(out)
    q = ed.quant(out)
    outs = []
    for i, (a, b) in enumerate(br.slices()):
        sq = q.sliced(a * mult, b * mult, len(shape) - 1) if q is not None else None
        outs.append(ed.new_tensor(out, shape[:-1] + ((b - a) * mult,),
                                  f"{ed.name(out)}/branch{i}", sq))
    return outs


def _slice_last(ed: Editor, c: int, a: int, b: int, tag: str) -> int:
    """A constant sliced to channels [a, b) of its last axis (per-channel quant sliced)."""
    value = ed.constant(c)
    q = ed.quant(c)
    sq = q.sliced(a, b, value.ndim - 1) if q is not None else None
    return ed.new_constant(value[..., a:b], c, f"{ed.name(c)}/{tag}", sq)


def _finish(
    ed: Editor, ops: list[schema.OperatorT], outs: list[int], out: int, step: Step
) -> tuple[list[schema.OperatorT], schema.OperatorT, Step]:
    concat = ed.concat_op(outs, out, len(ed.shape(out)) - 1)
    return ops + [concat], concat, step


def _elementwise(ed: Editor, e: schema.OperatorT, t: int, br: Branches) -> Apply:
    code = ed.opcode(e)
    out = _single_output(ed, e, br.channels)
    ins = ed.inputs(e)
    how = []  # per input: "x" (the concat), "keep", or "slice"
    for j in ins:
        if j == t:
            how.append("x")
        elif j < 0:
            how.append("keep")
        else:
            shape = ed.shape(j)
            last = shape[-1] if shape else 1  # broadcasting aligns trailing axes
            if last == 1:
                how.append("keep")
            elif last == br.channels and ed.constant(j) is not None:
                how.append("slice")
            else:
                raise NotApplicable(f"{code} has a per-channel operand that is not constant")

    def apply():
        outs = _branch_outputs(ed, out, br)
        ops = []
        for i, ((a, b), x) in enumerate(zip(br.slices(), br.tensors, strict=True)):
            new_in = [x if h == "x" else j if h == "keep" else _slice_last(ed, j, a, b,
                                                                            f"branch{i}")
                      for j, h in zip(ins, how, strict=True)]
            ops.append(ed.clone_op(e, new_in, [outs[i]]))
        return _finish(ed, ops, outs, out, Step("distribute", code,
                                                   _exact_branches(ed, t, br)))

    return apply


def _spatial(ed: Editor, e: schema.OperatorT, t: int, br: Branches) -> Apply:
    code = ed.opcode(e)
    ins = ed.inputs(e)
    if ins[0] != t or t in ins[1:]:
        raise NotApplicable(f"{code} reads the concatenation other than as its data input")
    out = _single_output(ed, e, br.channels)
    rank = len(ed.shape(t))
    for j in ins[1:]:
        if j >= 0 and ed.constant(j) is None:
            raise NotApplicable(f"{code} has a non-constant parameter input")
    if code in PADS:
        pads = ed.constant(ins[1])
        if pads is None or pads.shape != (rank, 2) or pads[rank - 1].any():
            raise NotApplicable(f"{code} pads the channel axis")
    if code in REDUCERS:
        axes = ed.constant(ins[1])
        if axes is None or any(int(a) % rank == rank - 1 for a in np.ravel(axes)):
            raise NotApplicable(f"{code} reduces over the channel axis")

    def apply():
        outs = _branch_outputs(ed, out, br)
        ops = [ed.clone_op(e, [x, *ins[1:]], [o])
               for x, o in zip(br.tensors, outs, strict=True)]
        return _finish(ed, ops, outs, out, Step("distribute", code,
                                                   _exact_branches(ed, t, br)))

    return apply


def _depthwise(ed: Editor, e: schema.OperatorT, t: int, br: Branches) -> Apply:
    """Kernel-wise partitioning: per-branch depthwise convs with sliced filter and bias."""
    ins = ed.inputs(e)
    if ins[0] != t or t in ins[1:]:
        raise NotApplicable("DEPTHWISE_CONV_2D reads the concatenation as a filter")
    filt = ed.constant(ins[1])
    bias_t = ins[2] if len(ins) > 2 else -1
    if filt is None or (bias_t >= 0 and ed.constant(bias_t) is None):
        raise NotApplicable("DEPTHWISE_CONV_2D filter or bias is not constant")
    out_ch = filt.shape[-1]
    if out_ch % br.channels:
        raise NotApplicable("DEPTHWISE_CONV_2D channel multiplier is not an integer")
    mult = out_ch // br.channels
    out = _single_output(ed, e, out_ch)

    def apply():
        outs = _branch_outputs(ed, out, br, mult)
        ops = []
        for i, ((a, b), x) in enumerate(zip(br.slices(), br.tensors, strict=True)):
            f_i = _slice_last(ed, ins[1], a * mult, b * mult, f"branch{i}")
            new_in = [x, f_i]
            if bias_t >= 0:
                new_in.append(_slice_last(ed, bias_t, a * mult, b * mult, f"branch{i}"))
            elif len(ins) > 2:
                new_in.append(-1)  # keep the optional input's slot
            ops.append(ed.clone_op(e, new_in, [outs[i]]))
        return _finish(ed, ops, outs, out, Step("kernel_partition", "DEPTHWISE_CONV_2D",
                                                   _exact_branches(ed, t, br)))

    return apply


def _flatten(ed: Editor, e: schema.OperatorT, t: int, br: Branches) -> Apply:
    """A concat feeding a concat along the same axis: splice its inputs in."""
    out = ed.outputs(e)[0]
    rank = len(ed.shape(out))
    want = rank - 1 if br.axis == -1 else br.axis
    if rank != len(ed.shape(t)) or ed.options(e).axis % rank != want:
        raise NotApplicable("outer concatenation is along another axis")
    if len(ed.inputs(e)) - 1 + len(br.tensors) > MAX_CONCAT_INPUTS:
        raise NotApplicable(f"merged concatenation would exceed {MAX_CONCAT_INPUTS} inputs")

    def apply():
        new_in = []
        for j in ed.inputs(e):
            new_in.extend(br.tensors if j == t else (j,))
        e.inputs = np.array(new_in, np.int32)
        return [], None, Step("flatten", "CONCATENATION", _exact_branches(ed, t, br))

    return apply


# ---------------------------------------------------------------------------------------------
# Concatenations along H or W: consumers that never read across a seam run per piece

SPATIAL_POOLS = frozenset({"MAX_POOL_2D", "AVERAGE_POOL_2D", "L2_POOL_2D"})
# Ops over the last axis only: along any other concatenation axis they run per piece.
LAST_AXIS_OPS = frozenset({"SOFTMAX", "LOG_SOFTMAX", "L2_NORMALIZATION"})


def _along(ed: Editor, e: schema.OperatorT, t: int, br: Branches) -> Apply:
    """The plan for consumer ``e`` of a concat ``t`` along H, W (4-D) or the rows of a
    ``[1, rows, values]`` tensor (a detection head's flattened anchors), or NotApplicable
    (why). Rows: element-wise ops and ops over the last axis (SOFTMAX) run per piece."""
    code = ed.opcode(e)
    ins = ed.inputs(e)
    if code == "CONCATENATION":
        return _flatten(ed, e, t, br)
    if ins[0] != t or t in ins[1:]:
        raise NotApplicable(f"{code} reads the concatenation other than as its data input")
    outs = ed.outputs(e)
    rank = len(ed.shape(t))
    if len(outs) != 1 or len(ed.shape(outs[0])) != rank or ed.dtype(outs[0]) not in (
            SUPPORTED_TYPES):
        raise NotApplicable(f"{code} output is not a {rank}-D int8/float32 tensor")
    scale = 1
    if code in UNARY or code in BINARY:
        for j in ins[1:]:
            shape = ed.shape(j) if j >= 0 else ()
            if j >= 0 and (ed.constant(j) is None or (
                    len(shape) >= rank - br.axis and shape[br.axis - rank] != 1)):
                raise NotApplicable(f"{code} has an operand that varies along the "
                                    "concatenation axis")
    elif code in LAST_AXIS_OPS:
        pass  # each row on its own
    elif rank != 4:
        raise NotApplicable(f"consumer {code} cannot be split along the rows")
    elif code in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        o = ed.options(e)
        if ed.shape(ins[1])[1:3] != (1, 1) or (o.strideH, o.strideW) != (1, 1):
            raise NotApplicable(f"{code} is not 1x1 stride 1: it reads across the seam")
    elif code in SPATIAL_POOLS:
        o = ed.options(e)
        k, st = ((o.filterHeight, o.strideH) if br.axis == 1 else (o.filterWidth, o.strideW))
        if o.padding != schema.Padding.VALID or k != st or st < 1 or any(
                w % st for w in br.widths):
            raise NotApplicable(f"{code} windows cross the seam (window not equal to a "
                                "stride dividing every piece)")
        scale = st
    else:
        raise NotApplicable(f"consumer {code} cannot be split along H/W")

    def apply():
        out = outs[0]
        shape = list(ed.shape(out))
        new_outs, ops = [], []
        for i, (x, w) in enumerate(zip(br.tensors, br.widths, strict=True)):
            shape[br.axis] = w // scale
            o_i = ed.new_tensor(out, tuple(shape), f"{ed.name(out)}/piece{i}",
                                keep_quant=True)
            ops.append(ed.clone_op(e, [x, *ins[1:]], [o_i]))
            new_outs.append(o_i)
        concat = ed.concat_op(new_outs, out, br.axis)
        return ops + [concat], concat, Step("distribute", code, _exact_branches(ed, t, br))

    return apply


# ---------------------------------------------------------------------------------------------
# Channel-wise partitioning: partial products summed by a chain of ADDs


def _contraction(
    ed: Editor, e: schema.OperatorT, t: int, br: Branches, ranges: Ranges
) -> Apply:
    code = ed.opcode(e)
    ins = ed.inputs(e)
    o = ed.options(e)  # the partial products copy it and set their activation
    if ins[0] != t or t in ins[1:]:
        raise NotApplicable(f"{code} reads the concatenation as weights")
    w = ed.constant(ins[1])
    bias_t = ins[2] if len(ins) > 2 else -1
    if w is None or (bias_t >= 0 and ed.constant(bias_t) is None):
        raise NotApplicable(f"{code} weights or bias are not constant")
    if w.shape[-1] != br.channels:
        raise NotApplicable(f"{code} weights do not match the concatenation's channels")
    if code == "FULLY_CONNECTED" and (w.ndim != 2 or o.weightsFormat != 0):
        raise NotApplicable("FULLY_CONNECTED with packed weights")
    out = ed.outputs(e)[0]
    types = {ed.dtype(t), ed.dtype(ins[1]), ed.dtype(out)}
    if types == {"FLOAT32"}:
        return lambda: _partition_float(ed, e, ins, br, out)
    if types == {"INT8"} and all(ed.quant(x) is not None and ed.quant(x).per_tensor
                                 for x in (*br.tensors, t, out)):
        return lambda: _partition_int8(ed, e, ins, br, out, ranges)
    raise NotApplicable(f"{code} with {'/'.join(sorted(types))} tensors is not supported")


def _act(e: schema.OperatorT) -> int:
    return int(getattr(e.builtinOptions, "fusedActivationFunction", 0) or 0)


def _partial_op(
    ed: Editor, e: schema.OperatorT, x: int, w: int, bias: int | None, out: int, act: int
) -> schema.OperatorT:
    n_in = len(ed.inputs(e))
    op = ed.clone_op(e, [x, w] + ([bias] if bias is not None else [-1] * (n_in - 2)), [out])
    op.builtinOptions.fusedActivationFunction = act
    return op


def _chain(
    ed: Editor, e: schema.OperatorT, partials: list[int], out: int, sum_quants: list[Quant]
) -> list[schema.OperatorT]:
    """ADD(ADD(p1, p2), p3)…: the last writes ``out`` with the conv's activation."""
    ops, acc = [], partials[0]
    for j, p in enumerate(partials[1:], start=1):
        last = j == len(partials) - 1
        dst = out if last else ed.new_tensor(out, ed.shape(out), f"{ed.name(out)}/sum{j}",
                                             sum_quants[j - 1] if sum_quants else None)
        ops.append(ed.add_op("ADD", [acc, p], dst, _act(e) if last else 0))
        acc = dst
    return ops


def _zero_bias(
    ed: Editor, cache: dict, like: int | None, n: int, dtype: str, q: Quant | None
) -> int:
    """A zero bias for partials after the first (LiteRT's CONV_2D insists on a bias).

    Shared by every partial with the same bias scale, which LiteRT checks against
    input scale × weight scale.
    """
    key = None if q is None else tuple(np.round(q.scale, 12))
    if key not in cache:
        np_type = np.float32 if dtype == "FLOAT32" else np.int32
        cache[key] = ed.new_constant(np.zeros(n, np_type), like, "zero_bias", q)
    return cache[key]


def _partition_float(
    ed: Editor, e: schema.OperatorT, ins: list[int], br: Branches, out: int
) -> tuple[list[schema.OperatorT], None, Step]:
    bias_t = ins[2] if len(ins) > 2 and ins[2] >= 0 else None
    n_out = ed.constant(ins[1]).shape[0]
    k = len(br.tensors)
    ops, partials, zeros = [], [], {}
    for i, ((a, b), x) in enumerate(zip(br.slices(), br.tensors, strict=True)):
        w_i = _slice_last(ed, ins[1], a, b, f"part{i}")
        p = out if k == 1 else ed.new_tensor(out, ed.shape(out), f"{ed.name(out)}/part{i}")
        b_i = bias_t
        if i > 0 and bias_t is not None:
            b_i = _zero_bias(ed, zeros, bias_t, n_out, "FLOAT32", None)
        ops.append(_partial_op(ed, e, x, w_i, b_i, p, _act(e) if k == 1 else 0))
        partials.append(p)
    ops += _chain(ed, e, partials, out, [])
    return ops, None, Step("channel_partition", ed.opcode(e), False)


def _quant(ranges: Ranges, name: str, lo: np.ndarray, hi: np.ndarray) -> Quant:
    """int8 quantisation of a partial product or sum: its worst-case range, or a narrower
    one from ``ranges`` (kept inside the worst case)."""
    b_lo, b_hi = float(lo.min()), float(hi.max())
    if name in ranges:
        r_lo, r_hi = ranges[name]
        b_lo, b_hi = max(b_lo, r_lo), min(b_hi, r_hi)
    return qa.covering_quant(b_lo, b_hi)


def _partition_int8(
    ed: Editor, e: schema.OperatorT, ins: list[int], br: Branches, out: int, ranges: Ranges
) -> tuple[list[schema.OperatorT], None, Step]:
    w = ed.constant(ins[1])
    wq = ed.quant(ins[1])
    w_real = qa.weight_reals(w, wq)
    w_scale = np.broadcast_to(wq.scale, (w.shape[0],)).astype(np.float64)
    s_cat = float(ed.quant(ins[0]).scale[0])
    bias_t = ins[2] if len(ins) > 2 and ins[2] >= 0 else None
    bias = ed.constant(bias_t).astype(np.int64) if bias_t is not None else None
    k = len(br.tensors)
    ops, partials, cum_lo, cum_hi, sum_quants, zeros = [], [], 0.0, 0.0, [], {}
    for i, ((a, b), x) in enumerate(zip(br.slices(), br.tensors, strict=True)):
        s_x = float(ed.quant(x).scale[0])
        lo, hi = qa.contraction_bounds(w_real[..., a:b], *qa.real_range(ed, x))
        b_q = Quant(s_x * w_scale, np.zeros(len(w_scale), np.int64), 0)
        b_i = None
        if bias_t is not None and (i > 0 or bias is None):
            b_i = _zero_bias(ed, zeros, bias_t, len(w_scale), "INT32", b_q)
        if i == 0 and bias is not None:
            new_bias = qa.requantized_bias(bias, s_cat * w_scale, s_x * w_scale)
            real = new_bias * s_x * w_scale
            lo, hi = lo + real, hi + real
            b_i = (bias_t if np.array_equal(new_bias, bias) and s_x == s_cat
                   else ed.new_constant(new_bias, bias_t, f"{ed.name(bias_t)}/part0", b_q))
        cum_lo, cum_hi = cum_lo + lo, cum_hi + hi
        if i >= 1:
            sum_quants.append(_quant(ranges, f"{ed.name(out)}/sum{i}", cum_lo, cum_hi))
        w_i = _slice_last(ed, ins[1], a, b, f"part{i}")
        p = out if k == 1 else ed.new_tensor(
            out, ed.shape(out), f"{ed.name(out)}/part{i}",
            _quant(ranges, f"{ed.name(out)}/part{i}", lo, hi))
        ops.append(_partial_op(ed, e, x, w_i, b_i, p, _act(e) if k == 1 else 0))
        partials.append(p)
    ops += _chain(ed, e, partials, out, sum_quants)
    ranged = any(f"{ed.name(out)}/{k}" in ranges for k in ("part0", "part1"))
    return ops, None, Step("channel_partition", ed.opcode(e), False, quantized=True,
                           ranged=ranged)
