"""Pool first: a 1×1 convolution followed by an average pool runs after the pool instead.

DenseNet's transition is BN → ReLU → 1×1 conv → 2×2 average pool: the convolution writes
a full-resolution tensor only for the pool to shrink it 4×. Both are linear and the pool
works per channel, so ``AVG_POOL(CONV_1x1(x)) = CONV_1x1(AVG_POOL(x))`` (the bias too: the
average of ``Wx + b`` is ``W·avg(x) + b``, also for SAME pooling, which averages over the
valid pixels only). The convolution then writes the pooled size directly, and when its
input is a channel concatenation (``partition.dissolve``) each branch is pooled on its own
before its partial product, which are pooled-size too.

Exact up to float rounding for float models. In int8 the pool now rounds its (conv input)
average to the input's scale instead of rounding the conv output's average: the error is
measured by the search, never assumed.
"""

from __future__ import annotations

from ai_edge_litert import schema_py_generated as schema

from .edit import Editor, NotApplicable
from .partition import SUPPORTED_TYPES, Step


def candidates(ed: Editor) -> list[int]:
    """Indices of 1×1 CONV_2D ops whose only consumer is an AVERAGE_POOL_2D."""
    return ed.applicable(_check)


def _check(ed: Editor, conv: schema.OperatorT) -> schema.OperatorT:
    """The pool after ``conv``, or NotApplicable with the reason."""
    if ed.opcode(conv) != "CONV_2D":
        raise NotApplicable("not a CONV_2D")
    o = ed.options(conv)
    ins, outs = ed.inputs(conv), ed.outputs(conv)
    w = ed.shape(ins[1])
    if len(w) != 4 or w[1:3] != (1, 1) or (o.strideH, o.strideW) != (1, 1):
        raise NotApplicable("not a 1x1 stride-1 convolution")
    if o.fusedActivationFunction:
        raise NotApplicable("the convolution has a fused activation (not linear)")
    y = outs[0]
    if ed.dtype(y) not in SUPPORTED_TYPES or ed.is_io(y):
        raise NotApplicable("convolution output is a subgraph output or of another type")
    consumers = ed.consumers(y)
    if len(consumers) != 1 or ed.opcode(consumers[0]) != "AVERAGE_POOL_2D":
        raise NotApplicable("the convolution's only consumer is not an AVERAGE_POOL_2D")
    pool = consumers[0]
    if ed.options(pool).fusedActivationFunction:
        raise NotApplicable("the pool has a fused activation")
    return pool


def move(ed: Editor, conv: schema.OperatorT) -> list[Step]:
    """Pool ``conv``'s input, then convolve into the pool's output; NotApplicable (model
    unchanged) when the pattern does not hold."""
    pool = _check(ed, conv)
    x, out = ed.inputs(conv)[0], ed.outputs(pool)[0]
    xs, os_ = ed.shape(x), ed.shape(out)
    pooled = ed.new_tensor(x, (xs[0], os_[1], os_[2], xs[3]), f"{ed.name(x)}/pooled",
                           keep_quant=True)
    new_pool = ed.clone_op(pool, [x], [pooled])
    new_conv = ed.clone_op(conv, [pooled, *ed.inputs(conv)[1:]], [out])
    ed.replace([conv, pool], [new_pool, new_conv])
    ed.toposort()
    return [Step("pool_first", "AVERAGE_POOL_2D", False, conv)]  # rounding changes
