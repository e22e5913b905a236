"""Make float16-weight and sparse-weight models runnable in TFLM (``--tflm-compat``).

The TF converter's float16 option stores weights as FLOAT16 constants behind DEQUANTIZE
operators, and its sparsity option stores them compressed behind DENSIFY; LiteRT runs both
once at the first invoke, TFLM has kernels for neither. Folding them computes those
operators' outputs here and stores them as plain constants: the operators go, their
outputs become constants (they leave the arena), and the model computes exactly what
LiteRT computes on the input, because the folded values are the ones LiteRT's kernels
produce (float16 -> float32 is exact; DENSIFY only places values).

The cost is flash: float32 weights take twice the bytes of float16 ones, dense weights all
their zeros. :class:`CompatResult` reports both sides.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from ..dtypes import numpy_type
from .edit import Editor, NotApplicable, buffers_in_use, compact

FOLDABLE = ("DEQUANTIZE", "DENSIFY")


@dataclass
class Fold:
    """One operator folded into a constant."""

    subgraph: int
    opcode: str
    tensor: str  # the output that became a constant
    dtype_before: str  # FLOAT16, or the sparse tensor's type + "(sparse)"
    bytes_before: int  # constant bytes the operator read
    bytes_after: int  # constant bytes of the folded output


@dataclass
class CompatResult:
    folded: list[Fold] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)  # foldable ops left, with the reason
    flash_before: int = 0  # bytes of constant data in the model's buffers
    flash_after: int = 0

    def to_dict(self) -> dict:
        return {"folded": [asdict(f) for f in self.folded], "skipped": self.skipped,
                "flash_before": self.flash_before, "flash_after": self.flash_after}


def constant_bytes(model: schema.ModelT) -> int:
    """Bytes of constant data the model's tensors refer to (what it costs in flash)."""
    used = {int(t.buffer) for sg in model.subgraphs for t in sg.tensors or []} - {0}
    total = 0
    for i in used:
        data = model.buffers[i].data if i < len(model.buffers) else None
        total += 0 if data is None else len(data)
    return total


def foldable(model: schema.ModelT) -> int:
    """How many DEQUANTIZE/DENSIFY operators read a constant (``make_tflm_compatible``'s
    candidates); for the hint that names ``--tflm-compat``."""
    n = 0
    for s in range(len(model.subgraphs)):
        ed = Editor(model, s)  # normalises its lists, changes nothing else
        for op in ed.sg.operators:
            ins = ed.inputs(op)
            if ed.opcode(op) in FOLDABLE and ins and ins[0] >= 0 and _data(ed, ins[0]) is not None:
                n += 1
    return n


def make_tflm_compatible(model: schema.ModelT) -> CompatResult:
    """Fold every DEQUANTIZE of a constant float16 tensor and every DENSIFY of a constant
    sparse tensor into a float32 / dense constant, editing ``model`` in place.

    Foldable operators whose input is not a constant (or whose output is a subgraph
    output) are left and listed in ``skipped``; TFLM will still refuse them.
    """
    result = CompatResult(flash_before=constant_bytes(model))
    was_used = buffers_in_use(model)
    for s in range(len(model.subgraphs)):
        ed = Editor(model, s)
        for op in list(ed.sg.operators):
            opcode = ed.opcode(op)
            if opcode not in FOLDABLE:
                continue
            try:
                result.folded.append(_fold(ed, op, opcode))
            except NotApplicable as why:
                out = ed.outputs(op)
                result.skipped.append({"subgraph": s, "opcode": opcode, "reason": str(why),
                                       "tensor": ed.name(out[0]) if out else ""})
    if result.folded:
        compact(model, was_used)
    result.flash_after = constant_bytes(model)
    return result


def _fold(ed: Editor, op: schema.OperatorT, opcode: str) -> Fold:
    ins, outs = ed.inputs(op), ed.outputs(op)
    if len(ins) != 1 or len(outs) != 1 or ins[0] < 0:
        raise NotApplicable(f"{opcode} with {len(ins)} inputs and {len(outs)} outputs")
    x, y = ins[0], outs[0]
    if ed.is_io(y):
        raise NotApplicable("its output is a subgraph output")
    raw = _data(ed, x)
    if raw is None:
        raise NotApplicable("its input is not a constant")
    if opcode == "DEQUANTIZE":
        value, before = _dequantize(ed, x, y, raw), ed.dtype(x)
    else:
        value, before = _densify(ed, x, y, raw), f"{ed.dtype(x)}(sparse)"
    out = np.ascontiguousarray(value).reshape(-1).view(np.uint8).copy()
    buf = schema.BufferT()
    buf.data = out
    ed.model.buffers.append(buf)
    ed.t(y).buffer = len(ed.model.buffers) - 1
    ed.sg.operators = [o for o in ed.sg.operators if o is not op]
    return Fold(ed.s, opcode, ed.name(y), before, int(raw.size), int(out.size))


def _data(ed: Editor, t: int) -> np.ndarray | None:
    """The raw bytes of a constant tensor (sparse ones included), or None."""
    buffers = ed.model.buffers
    b = ed.t(t).buffer
    data = buffers[b].data if 0 < b < len(buffers) else None
    if data is None or len(data) == 0:
        return None
    return np.asarray(data, np.uint8)


def _typed(ed: Editor, t: int, raw: np.ndarray) -> np.ndarray:
    try:
        dtype = numpy_type(ed.t(t).type)
    except KeyError:
        raise NotApplicable(f"constant of type {ed.dtype(t)}") from None
    if raw.size % dtype.itemsize:
        raise NotApplicable("constant data is not a whole number of elements")
    return raw.view(dtype)


def _dequantize(ed: Editor, x: int, y: int, raw: np.ndarray) -> np.ndarray:
    if ed.dtype(x) != "FLOAT16" or ed.dtype(y) != "FLOAT32":
        raise NotApplicable(f"DEQUANTIZE {ed.dtype(x)} -> {ed.dtype(y)} (only float16 folds)")
    if ed.t(x).sparsity is not None:
        raise NotApplicable("its input is sparse")
    value = _typed(ed, x, raw).astype(np.float32)
    if value.size != int(np.prod(ed.shape(y), dtype=np.int64)):
        raise NotApplicable("constant size does not match the output shape")
    return value.astype("<f4")


def _densify(ed: Editor, x: int, y: int, raw: np.ndarray) -> np.ndarray:
    sparsity = ed.t(x).sparsity
    if sparsity is None:
        raise NotApplicable("its input has no sparsity parameters")
    if ed.dtype(x) != ed.dtype(y):
        raise NotApplicable(f"DENSIFY {ed.dtype(x)} -> {ed.dtype(y)}")
    values = _typed(ed, x, raw)
    shape = ed.shape(y)
    if shape != ed.shape(x):
        raise NotApplicable("dense shape differs from the sparse tensor's")
    try:
        return densify(values, shape, sparsity)
    except (IndexError, ValueError) as exc:
        raise NotApplicable(f"malformed sparsity parameters ({exc})") from None


def _vector(v) -> np.ndarray:
    """The values of a SparseIndexVector union member (Int32/Uint16/Uint8Vector)."""
    values = getattr(v, "values", None)
    return np.zeros(0, np.int64) if values is None else np.asarray(values, np.int64)


def densify(values: np.ndarray, shape: tuple[int, ...], sp: schema.SparsityParametersT
            ) -> np.ndarray:
    """The dense tensor of TFLite's sparse format: levels in ``traversalOrder`` (original
    dims, then block dims), each DENSE (``denseSize`` entries) or SPARSE_CSR (segments into
    indices); ``blockMap[i]`` is the original dim block dim ``rank + i`` subdivides."""
    rank = len(shape)
    order = [int(d) for d in (sp.traversalOrder if sp.traversalOrder is not None else [])]
    block_map = [int(d) for d in (sp.blockMap if sp.blockMap is not None else [])]
    levels = list(sp.dimMetadata or [])
    if len(order) != len(levels) or len(order) != rank + len(block_map):
        raise ValueError("traversal order and dimension metadata disagree")
    block_size = [int(levels[order.index(rank + i)].denseSize) for i in range(len(block_map))]
    # Walk level by level: each entry is (coordinates so far, position in the level's
    # segment array), exactly the recursion of TFLite's format converter, breadth first.
    coords = np.zeros((1, len(order)), np.int64)
    pos = np.zeros(1, np.int64)
    for level, meta in enumerate(levels):
        if meta.format == schema.DimensionType.DENSE:
            n = int(meta.denseSize)
            idx = np.tile(np.arange(n, dtype=np.int64), len(pos))
            parent = np.repeat(np.arange(len(pos)), n)
            new_pos = pos[parent] * n + idx
        else:
            segments, indices = _vector(meta.arraySegments), _vector(meta.arrayIndices)
            lo, hi = segments[pos], segments[pos + 1]
            counts = hi - lo
            parent = np.repeat(np.arange(len(pos)), counts)
            new_pos = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi, strict=True)]) \
                if len(pos) else np.zeros(0, np.int64)
            idx = indices[new_pos]
        coords = coords[parent]
        coords[:, level] = idx
        pos = new_pos
    if len(pos) != values.size:
        raise ValueError(f"{len(pos)} positions for {values.size} stored values")
    orig = np.zeros((len(pos), rank), np.int64)
    for level, dim in enumerate(order[:rank]):
        orig[:, dim] = coords[:, level]
    for level in range(rank, len(order)):
        b = order[level] - rank
        orig[:, block_map[b]] = orig[:, block_map[b]] * block_size[b] + coords[:, level]
    dense = np.zeros(shape, dtype=values.dtype)
    dense[tuple(orig.T)] = values
    return dense
