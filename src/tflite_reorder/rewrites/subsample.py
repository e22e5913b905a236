"""Subsample first: a 1×1 strided op after a shift (PAD / STRIDED_SLICE) reads one pixel in s.

NASNet's and DARTS's *factorized reduction* shifts a feature map by one pixel (``PAD`` then
``STRIDED_SLICE``, or a crop) and then reads every other pixel with a 1×1 stride-2
``AVERAGE_POOL_2D`` or ``CONV_2D``. The shifted copy is nearly as large as its input and both
are live together: in those models that is the peak. The same values come from a strided
``STRIDED_SLICE`` of the input (a quarter of the size), padded where the shift ran off the
edge; the 1×1 op then runs at stride 1, or disappears when it was a pool (a 1×1 pool is the
identity). Only copies move, so the result is bit-exact.
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from .edit import Editor, NotApplicable

POOLS = frozenset({"AVERAGE_POOL_2D", "MAX_POOL_2D"})


def candidates(ed: Editor) -> list[int]:
    """Indices of 1×1 strided ops reading a shifted tensor."""
    return ed.applicable(_chain)


def _is_1x1_strided(ed: Editor, op: schema.OperatorT) -> bool:
    code, o = ed.opcode(op), op.builtinOptions
    if code in POOLS and o is not None:
        kernel = (o.filterHeight, o.filterWidth) == (1, 1)
    elif code == "CONV_2D" and o is not None:
        w = ed.shape(ed.inputs(op)[1])
        kernel = len(w) == 4 and w[1:3] == (1, 1)
    else:  # not strided, or no options (the runtimes' zeroed parameters: stride 0)
        return False
    return kernel and max(o.strideH, o.strideW) > 1


def _slice_params(ed: Editor, op: schema.OperatorT, shape) -> list[int]:
    """Per-axis begin of a unit-stride STRIDED_SLICE that keeps batch and channels whole."""
    o = ed.options(op)
    if o.ellipsisMask or o.newAxisMask or o.shrinkAxisMask or getattr(o, "offset", False):
        raise NotApplicable("STRIDED_SLICE with ellipsis/new-axis/shrink/offset masks")
    ins = ed.inputs(op)
    begin, end, strides = (ed.constant(t) for t in ins[1:4])
    if begin is None or end is None or strides is None or len(begin) != 4:
        raise NotApplicable("STRIDED_SLICE parameters are not constant")
    if np.any(strides != 1):
        raise NotApplicable("STRIDED_SLICE has strides")
    out = []
    for a in range(4):
        b = 0 if o.beginMask >> a & 1 else (int(begin[a]) + shape[a] if begin[a] < 0
                                            else int(begin[a]))
        e = shape[a] if o.endMask >> a & 1 else (int(end[a]) + shape[a] if end[a] < 0
                                                 else min(int(end[a]), shape[a]))
        if a in (0, 3) and (b, e) != (0, shape[a]):
            raise NotApplicable("STRIDED_SLICE cuts the batch or channel axis")
        out.append(b)
    return out


def _chain(ed: Editor, c: schema.OperatorT):
    """(x, ops to remove, per-axis offset into x, whether padding is involved)."""
    if not _is_1x1_strided(ed, c):
        raise NotApplicable("not a 1x1 strided op")
    y = ed.inputs(c)[0]
    offset, padded, removed, t = [0, 0, 0, 0], False, [], y
    for expect in ("STRIDED_SLICE", "PAD"):
        prod = ed.producer(t)
        if prod is None or ed.opcode(prod) != expect:
            continue
        if len(ed.consumers(t)) != 1 or ed.is_io(t):
            raise NotApplicable(f"{expect} output has other uses")
        x = ed.inputs(prod)[0]
        if not ed.same_quant(x, t):
            raise NotApplicable(f"{expect} changes the quantisation")
        if expect == "STRIDED_SLICE":
            begin = _slice_params(ed, prod, ed.shape(x))
            offset = [o + b for o, b in zip(offset, begin, strict=True)]
        else:
            pads = ed.constant(ed.inputs(prod)[1]) if len(ed.inputs(prod)) == 2 else None
            if pads is None or pads.shape != (4, 2) or pads[0].any() or pads[3].any():
                raise NotApplicable("PAD is not a constant spatial padding")
            offset = [o - int(p) for o, p in zip(offset, pads[:, 0], strict=True)]
            padded = True
        removed.append(prod)
        t = x
    if not removed:
        raise NotApplicable("input is not shifted by PAD or STRIDED_SLICE")
    if len(ed.shape(t)) != 4 or ed.dtype(t) not in ("INT8", "FLOAT32"):
        raise NotApplicable("not a 4-D int8/float32 feature map")
    return t, removed, offset, padded


def fold(ed: Editor, c: schema.OperatorT) -> None:
    """Rewrite the chain ending at ``c``; NotApplicable (model unchanged) if it cannot."""
    x, removed, offset, padded = _chain(ed, c)
    o = ed.options(c)
    out = ed.outputs(c)[0]
    xs, os_ = ed.shape(x), ed.shape(out)
    begin, end, strides, pads = [0, 0, 0, 0], list(xs), [1, 1, 1, 1], [[0, 0]] * 4
    for a, s in ((1, o.strideH), (2, o.strideW)):
        off, n_out = offset[a], os_[a]
        i_min = 0 if off >= 0 else (-off + s - 1) // s  # first output reading inside x
        i_max = min(n_out - 1, (xs[a] - 1 - off) // s)
        if i_max < i_min:
            raise NotApplicable("the strided op reads only padding")
        begin[a], end[a], strides[a] = s * i_min + off, s * i_max + off + 1, s
        pads[a] = [i_min, n_out - 1 - i_max]
    if any(p != [0, 0] for p in pads) and not padded:
        raise NotApplicable("the shift reads outside its input without a PAD")
    code = ed.opcode(c)
    drop_c = code in POOLS and ed.same_quant(x, out) and not o.fusedActivationFunction
    n_h = (end[1] - begin[1] + strides[1] - 1) // strides[1]
    n_w = (end[2] - begin[2] + strides[2] - 1) // strides[2]
    need_pad = any(p != [0, 0] for p in pads)
    y = ed.inputs(c)[0]
    last = out if drop_c and not need_pad else ed.new_tensor(
        y, (xs[0], n_h, n_w, xs[3]), f"{ed.name(y)}/subsampled", keep_quant=True)
    ops = [ed.strided_slice_op(x, begin, end, strides, last)]
    if need_pad:
        padded_t = out if drop_c else ed.new_tensor(
            y, (xs[0], os_[1], os_[2], xs[3]), f"{ed.name(y)}/subsampled_pad", keep_quant=True)
        ops.append(ed.pad_op(last, pads, padded_t))
        last = padded_t
    if not drop_c:
        new_c = ed.clone_op(c, [last, *ed.inputs(c)[1:]], [out])
        new_c.builtinOptions.strideH = new_c.builtinOptions.strideW = 1
        ops.append(new_c)
    ed.replace([*removed, c], ops)
    ed.toposort()
