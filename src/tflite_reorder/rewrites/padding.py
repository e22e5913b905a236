"""Repair: SPACE_TO_BATCH_ND's padding moved into an explicit PAD ahead of it.

TFLM's SPACE_TO_BATCH_ND kernel pads with ``SpaceToBatchParams.output_offset``, a value its
Prepare never writes (``hazards`` reports it as ``uninitialized_padding``); its PAD pads
with the zero point (0 for float) like LiteRT does. This is the one rewrite that runs on
every model (``optimize`` with ``fix_shapes``) and never changes numerics: it makes TFLM
compute what LiteRT computes.

TFLM's SPACE_TO_BATCH_ND kernel has two types only, float32 and int8. PAD without a
constant value pads float32 with 0 and int8 with its output zero point, in TFLM and LiteRT
alike, which is exactly LiteRT's S2B padding: LiteRT requires an int8 S2B's input and
output zero points to be equal, and the padded tensor takes the S2B input's quantization.
So PADV2 is never needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from ..dtypes import tensor_bytes, type_name
from ..flatbuffer_io import remove_offline_plan
from ..graph import opcode_name
from ..shapes import Shape, infer_subgraph, int_value
from .edit import Editor

REPAIRABLE_DTYPES = ("FLOAT32", "INT8")


def repair_padding(model_t: schema.ModelT) -> list[dict]:
    """Move every SPACE_TO_BATCH_ND's padding into an explicit PAD operator ahead of it.

    Each float32/int8 S2B with non-zero constant paddings gets a PAD into a new, statically
    shaped tensor ahead of it, and new all-zero paddings; shared paddings buffers are never
    modified. An S2B with zero paddings never reads TFLM's uninitialized pad value. New
    tensors and buffers are appended, so existing indices stay valid; an offline plan (which
    no longer covers every tensor) is dropped. Run ``fix_shapes(model_t,
    infer_shapes(model_t))`` afterwards as usual.

    Returns one dict per repair: ``subgraph``, ``op`` (the S2B's index in the operator list
    as it was before the call), ``tensor`` (the new padded tensor) and ``bytes`` (its size).
    Never raises for a model ``parse_model`` accepted.
    """
    repairs = []
    for s in range(len(model_t.subgraphs)):
        repairs += _repair_subgraph(model_t, s)
    if repairs:
        remove_offline_plan(model_t)
    return repairs


def repair_model(model_t: schema.ModelT) -> list[dict]:
    """Make the model safe in TFLM before planning: explicit padding for SPACE_TO_BATCH_ND.

    Shapes are repaired later, from inference. Returns the report's ``repairs`` entries
    (``repair_padding``'s, with a ``kind``).
    """
    return [{"kind": "explicit_pad", **r} for r in repair_padding(model_t)]


@dataclass(frozen=True)
class PadRepair:
    """One SPACE_TO_BATCH_ND to repair: a PAD of ``x`` by ``full`` into a new tensor of shape
    ``grown`` (``x``'s type) runs just before it, and the S2B then reads that tensor with
    all-zero paddings of shape ``pads_shape``. ``op`` is the S2B's index in the stored
    order before the repair."""

    op: int
    x: int
    full: tuple[tuple[int, int], ...]  # per axis of x (int32): the S2B's spatial paddings
    grown: Shape
    pads_shape: Shape

    def s2b_inputs(self, s2b, padded: int, zeros: int) -> list[int]:
        """The S2B's inputs after the repair: the padded tensor, its block shape, zeros."""
        return [padded, int(s2b.inputs[1]), zeros]


def plan_repairs(model, s: int, shapes: list[Shape] | None = None) -> list[PadRepair]:
    """The repairs subgraph ``s`` needs, in stored order, without changing anything.

    ``model`` is a ``ModelT`` or a ``fastread.LiteModel``. ``shapes`` are the subgraph's
    inferred shapes (``infer_subgraph``), inferred here when needed and not given; a
    subgraph without a SPACE_TO_BATCH_ND that pads is never inferred. Raises what
    ``infer_subgraph`` raises.
    """
    sg = model.subgraphs[s]
    codes = {i for i in range(len(model.operatorCodes or []))
             if opcode_name(model, i) == "SPACE_TO_BATCH_ND"}
    found = [(i, op, pads) for i, op in enumerate(sg.operators or [])
             if op.opcodeIndex in codes
             and (pads := _s2b_paddings(model, sg, op)) is not None] if codes else []
    if not found:
        return []
    shapes = infer_subgraph(model, s) if shapes is None else shapes
    out = []
    for i, op, pads in found:
        x = int(op.inputs[0])
        shape = shapes[x]
        if len(pads) < len(shape) and min(shape) >= 0:
            rows = [tuple(_int32(v) for v in row) for row in pads.tolist()]
            full = ((0, 0), *rows, *[(0, 0)] * (len(shape) - 1 - len(rows)))
            grown = tuple(d + a + b for d, (a, b) in zip(shape, full, strict=True))
            out.append(PadRepair(i, x, full, grown, pads.shape))
    return out


def _repair_subgraph(model_t: schema.ModelT, s: int) -> list[dict]:
    plan = plan_repairs(model_t, s)
    if not plan:
        return []  # untouched: no new tensors
    sg = model_t.subgraphs[s]
    ed = Editor(model_t, s)
    at = {r.op: r for r in plan}
    ops: list[schema.OperatorT] = []
    repairs = []
    zeros: dict[Shape, int] = {}  # one all-zero paddings constant per paddings shape
    for i, op in enumerate(sg.operators):
        r = at.get(i)
        if r is not None:
            padded = ed.new_tensor(r.x, r.grown, f"{ed.name(r.x)}/explicit_pad",
                                   keep_quant=True)
            pad_op = ed.pad_op(r.x, r.full, padded)
            if r.pads_shape not in zeros:
                zeros[r.pads_shape] = ed.new_int32(np.zeros(r.pads_shape, np.int32),
                                                   "zero_paddings")
            op.inputs = np.array(r.s2b_inputs(op, padded, zeros[r.pads_shape]), np.int32)
            ops.append(pad_op)
            nbytes = tensor_bytes(ed.shape(padded), ed.dtype(padded))
            repairs.append({"subgraph": s, "op": i, "tensor": padded, "bytes": nbytes})
        ops.append(op)
    sg.operators = ops
    return repairs


def _int32(v: int) -> int:
    """``v`` stored as int32 (the PAD's paddings constant), wrapping as numpy casts."""
    return (v + 2**31) % 2**32 - 2**31


def _s2b_paddings(model_t: schema.ModelT, sg: schema.SubGraphT, op) -> np.ndarray | None:
    """The [M, 2] paddings of a SPACE_TO_BATCH_ND that pads and can be repaired, else None."""
    if opcode_name(model_t, op.opcodeIndex) != "SPACE_TO_BATCH_ND" or len(op.inputs) < 3:
        return None
    x, p = int(op.inputs[0]), int(op.inputs[2])
    if x < 0 or p < 0 or type_name(sg.tensors[x].type) not in REPAIRABLE_DTYPES:
        return None
    pads = int_value(model_t, sg.tensors[p])
    if pads is None or pads.ndim != 2 or pads.shape[1] != 2:
        return None
    values = pads.ravel().tolist()
    if not any(values) or min(values) < 0:
        return None
    return pads
