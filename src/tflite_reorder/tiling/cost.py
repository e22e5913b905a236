"""What a tiling costs and gains: MACs, the live bytes inside a tiled region, TFLM's tail.

* MACs: multiply-accumulates of convolutions (``out pixels × kh·kw·cin·cout``), depthwise
  convolutions (``out pixels × kh·kw·c``) and fully connected layers; a tile recomputes its
  halo, so tiling raises them.
* The local peak of a tiled region: its new ops replayed under TFLM's lifetime rule
  (``memory.peak`` on a ``Problem`` of just those ops), the region input live from the start
  and its output to the end — at a cut nothing else is live, so this is exact.
* A floor of that local peak from the windows alone (``floor``), before any op is emitted:
  the search skips emitting candidates whose floor already says they cannot pay.
* The tail: every op and tensor the tiles add, and every output channel of a cloned
  convolution (per-channel multipliers and shifts), grow TFLM's persistent data;
  ``tflm.tail_from_counts`` is the project's fit of that.
"""

from __future__ import annotations

from dataclasses import dataclass

from ai_edge_litert import schema_py_generated as schema

from .. import rows
from ..dtypes import align, tensor_bytes
from ..memory import Problem, peak
from ..rewrites.edit import Editor
from ..tflm import TAIL_CHANNEL_OPS, tail_from_counts
from .spatial import is_constant


def per_pixel_macs(ed: Editor, op: schema.OperatorT) -> int:
    """MACs per output pixel (per output row for FULLY_CONNECTED); 0 for other ops, and
    for an op whose weights are absent or of another rank (a malformed model)."""
    code = ed.opcode(op)
    ins = ed.inputs(op)
    w = ed.shape(ins[1]) if len(ins) > 1 and ins[1] >= 0 else ()
    if code in ("CONV_2D", "TRANSPOSE_CONV") and len(w) == 4:
        return w[0] * w[1] * w[2] * w[3]
    if code == "DEPTHWISE_CONV_2D" and len(w) == 4:
        return w[1] * w[2] * w[3]
    if code == "FULLY_CONNECTED" and len(w) == 2:
        return w[0] * w[1]
    return 0


def _pixels(ed: Editor, op: schema.OperatorT) -> int:
    outs = ed.outputs(op)
    if not outs or outs[0] < 0:
        return 0
    sh = ed.shape(outs[0])
    if ed.opcode(op) == "FULLY_CONNECTED":
        n = 1
        for d in sh[:-1]:
            n *= d
        return n
    if ed.opcode(op) == "TRANSPOSE_CONV":  # MACs follow the input pixels
        ins = ed.inputs(op)
        sh = ed.shape(ins[2]) if len(ins) > 2 and ins[2] >= 0 else ()
    return sh[0] * sh[1] * sh[2] if len(sh) == 4 else 0


def op_macs(ed: Editor, op: schema.OperatorT) -> int:
    return _pixels(ed, op) * per_pixel_macs(ed, op)


def model_macs(model: schema.ModelT) -> int:
    """MACs of one inference (every subgraph once)."""
    total = 0
    for s in range(len(model.subgraphs)):
        ed = Editor(model, s)
        total += sum(op_macs(ed, op) for op in ed.sg.operators)
    return total


@dataclass(frozen=True)
class Counts:
    """What TFLM's tail grows with."""

    tensors: int
    ops: int
    conv_channels: int

    def tail(self) -> int:
        return tail_from_counts(self.tensors, self.ops, self.conv_channels)

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tensors + other.tensors, self.ops + other.ops,
                      self.conv_channels + other.conv_channels)


def _channels(ed: Editor, ops) -> int:
    out = 0
    for op in ops:
        if ed.opcode(op) in TAIL_CHANNEL_OPS:
            sh = ed.shape(ed.outputs(op)[0])
            out += sh[-1] if sh else 0
    return out


def model_counts(model: schema.ModelT) -> Counts:
    tensors = sum(len(sg.tensors or []) for sg in model.subgraphs)
    ops = sum(len(sg.operators or []) for sg in model.subgraphs)
    channels = sum(_channels(Editor(model, s), Editor(model, s).sg.operators)
                   for s in range(len(model.subgraphs)))
    return Counts(tensors, ops, channels)


def count_delta(ed: Editor, old_ops, new_ops, tensors_added: int) -> Counts:
    """Tail counts the tiles add: new ops/tensors less the region's ops and intermediates."""
    dropped = {t for op in old_ops for t in ed.outputs(op)} - {
        t for op in new_ops for t in ed.outputs(op)}
    return Counts(tensors_added - len(dropped), len(new_ops) - len(old_ops),
                  _channels(ed, new_ops) - _channels(ed, old_ops))


def local_peak(ed: Editor, ops, source: int, sink: int) -> int:
    """Peak live bytes while ``ops`` run, ``source`` live from the start, ``sink`` kept."""
    index: dict[int, int] = {}
    sizes: list[int] = []

    def local(t: int) -> int:
        if t not in index:
            index[t] = len(sizes)
            const = is_constant(ed, t)
            sizes.append(0 if const else align(tensor_bytes(ed.shape(t), ed.dtype(t))))
        return index[t]

    local(source)
    op_in = [tuple(local(t) for t in ed.inputs(op) if t >= 0) for op in ops]
    op_out = [tuple(local(t) for t in ed.outputs(op)) for op in ops]
    n_t = len(sizes)
    producer = [-1] * n_t
    consumers: list[list[int]] = [[] for _ in range(n_t)]
    for v, outs in enumerate(op_out):
        for t in outs:
            producer[t] = v
    for v, ins in enumerate(op_in):
        for t in ins:
            consumers[t].append(v)
    preds = tuple(tuple(sorted({producer[t] for t in ins if producer[t] >= 0}))
                  for ins in op_in)
    pinned = [False] * n_t
    pinned[index[sink]] = True
    p = Problem(
        n_ops=len(ops), size=tuple(sizes), producer=tuple(producer),
        consumers=tuple(tuple(c) for c in consumers), pinned=tuple(pinned),
        inputs=(index[source],), op_in=tuple(op_in), op_out=tuple(op_out), preds=preds,
        extra=(0,) * len(ops), alias=((),) * len(ops),
    )
    return peak(p, range(len(ops)))


def row_peak(ed: Editor, ops, source: int, sink: int) -> int:
    """``local_peak`` with the plan's row levers (``rows.cut``): the region input cut into
    row pieces that die at the last slice reading them, the bands inside the output
    (self-copy). The least any plan of those lifetimes needs; the planner
    (``arena.layout``) places the pieces as rigid groups and may need more."""
    first: dict[int, int] = {source: 0}
    last: dict[int, int] = {}
    for v, op in enumerate(ops):
        for t in ed.outputs(op):
            first.setdefault(t, v)
        for t in (*ed.inputs(op), *ed.outputs(op)):
            if t >= 0:
                last[t] = v
    last[sink] = len(ops) - 1
    live = [t for t in first if not is_constant(ed, t)]
    nbytes = {t: tensor_bytes(ed.shape(t), ed.dtype(t)) for t in live}
    slices, row_bytes = {}, {}
    for v, op in enumerate(ops):
        rs = rows.row_slice(ed, op)
        x = ed.inputs(op)[0] if rs is not None else -1
        if x in nbytes and nbytes[x] % ed.shape(x)[1] == 0:
            slices[v] = (x, *rs)
            row_bytes[x] = nbytes[x] // ed.shape(x)[1]
    view = rows.OpView(
        inputs=[[t for t in ed.inputs(op) if t in nbytes] for op in ops],
        outputs=[ed.outputs(op) for op in ops], scope=list(range(len(ops))),
        size={t: align(n) for t, n in nbytes.items()}, nbytes=nbytes,
        first={t: first[t] for t in live}, last={t: last.get(t, first[t]) for t in live},
        slices=slices,
        concats=frozenset(v for v, op in enumerate(ops) if rows.concat_along_h(ed, op)),
        row_bytes=row_bytes, pinned=frozenset((source, sink)))
    return rows.peak(view, rows.cut(view, self_copy=True), len(ops))


def floor(ed: Editor, source: int, sink: int, source_crops: list[int], pieces: int,
          levers: bool = False) -> int:
    """A lower bound of ``local_peak`` of the tiles, from sizes alone (no op emitted).

    Two scopes of the emitted tiles are certain: each STRIDED_SLICE of the region input
    (``source_crops`` holds the aligned sizes of the windows that need one) runs with the
    whole input still live (a later tile slices it again, or this is the last slice and
    the input dies there, still live at that scope), so ``source + crop`` are live
    together; and the last CONCATENATION has every band (or patch) and the region
    output live together, at least ``2 × sink`` bytes when there are ``pieces > 1``.

    With the row levers (``row_peak``) only the first scope is certain: the whole input
    and the first tile's slice (``source_crops[0]``, 0 when it takes none) are live there,
    and the output at the end.
    """
    x = align(tensor_bytes(ed.shape(source), ed.dtype(source)))
    y = align(tensor_bytes(ed.shape(sink), ed.dtype(sink)))
    if levers:
        return max(x + (source_crops[0] if source_crops else 0), y)
    return max(x + max(source_crops, default=0), 2 * y if pieces > 1 else y)
