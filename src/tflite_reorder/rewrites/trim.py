"""Trim padding that no consumer reads.

Keras pads explicitly (``ZeroPadding2D``) before a VALID convolution or pool. With a stride
above 1 the last padded row or column is often never read: DenseNet's stem pads 64 → 70
for a 7×7/2 convolution that reads rows 0..68, then 32 → 34 for a 3×3/2 max pool that
reads 0..32. The padded copy is live together with its input, and in small DenseNets that
pair is the peak once the rest is partitioned. Padding only what some consumer reads
changes no output value (bit-exact) and shrinks the copy.
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from .edit import Editor, NotApplicable
from .partition import Step

CONVS = ("CONV_2D", "DEPTHWISE_CONV_2D")
WINDOWED = frozenset({*CONVS, "MAX_POOL_2D", "AVERAGE_POOL_2D"})


def candidates(ed: Editor) -> list[int]:
    """Indices of PAD ops whose trailing padding some row or column of goes unread."""
    return ed.applicable(_trimmed)


def _reach(ed: Editor, e: schema.OperatorT, axis: int) -> int:
    """How many leading rows (axis 1) or columns (axis 2) of its input ``e`` reads."""
    o = ed.options(e)
    code = ed.opcode(e)
    if code in CONVS:
        k = ed.shape(ed.inputs(e)[1])[axis]
        dil = o.dilationHFactor if axis == 1 else o.dilationWFactor
    else:
        k, dil = (o.filterHeight if axis == 1 else o.filterWidth), 1
    stride = o.strideH if axis == 1 else o.strideW
    n_out = ed.shape(ed.outputs(e)[0])[axis]
    return (n_out - 1) * stride + (k - 1) * max(dil, 1) + 1


def _trimmed(ed: Editor, pad: schema.OperatorT) -> np.ndarray:
    """The paddings with the unread trailing rows/columns removed, or NotApplicable."""
    if ed.opcode(pad) not in ("PAD", "PADV2"):
        raise NotApplicable("not a PAD")
    ins, out = ed.inputs(pad), ed.outputs(pad)[0]
    pads = ed.constant(ins[1])
    shape = ed.shape(out)
    if pads is None or pads.shape != (4, 2) or len(shape) != 4 or ed.is_io(out):
        raise NotApplicable("not a constant 4-D padding")
    consumers = ed.consumers(out)
    if not consumers:
        raise NotApplicable("padded tensor is unused")
    for e in consumers:
        if ed.opcode(e) not in WINDOWED or ed.inputs(e)[0] != out or out in ed.inputs(e)[1:]:
            raise NotApplicable(f"consumer {ed.opcode(e)} is not a windowed op on the data")
        if len(ed.shape(ed.outputs(e)[0])) != 4 or (ed.opcode(e) in CONVS and (
                len(ed.inputs(e)) < 2 or len(ed.shape(ed.inputs(e)[1])) != 4)):
            raise NotApplicable(f"consumer {ed.opcode(e)} is not 4-D (weights or output)")
        if ed.options(e).padding != schema.Padding.VALID:
            raise NotApplicable("a consumer pads again (SAME): it reads every row")
    new = pads.astype(np.int64).copy()
    for axis in (1, 2):
        reach = max(_reach(ed, e, axis) for e in consumers)
        new[axis, 1] -= min(max(shape[axis] - reach, 0), int(pads[axis, 1]))
    if np.array_equal(new, pads):
        raise NotApplicable("every padded row and column is read")
    return new


def trim(ed: Editor, pad: schema.OperatorT) -> list[Step]:
    """Pad only what is read; consumers read the smaller tensor (NotApplicable: unchanged).

    The PAD and its consumers keep their identity (their tensor vectors are replaced, not
    written into), so other sites anchored at them still apply afterwards.
    """
    new = _trimmed(ed, pad)
    ins, out = ed.inputs(pad), ed.outputs(pad)[0]
    xs = ed.shape(ins[0])
    shape = tuple(int(d + a + b) for d, (a, b) in zip(xs, new, strict=True))
    t = ed.new_tensor(out, shape, f"{ed.name(out)}/trimmed", keep_quant=True)
    p = ed.new_int32(new.astype(np.int32), f"{ed.name(out)}/trimmed_paddings")
    for e in ed.consumers(out):
        e.inputs = np.array([t, *ed.inputs(e)[1:]], np.int32)
    pad.inputs = np.array([ins[0], p, *ins[2:]], np.int32)
    pad.outputs = np.array([t], np.int32)
    return [Step("trim_pad", ed.opcode(pad), True, pad)]
