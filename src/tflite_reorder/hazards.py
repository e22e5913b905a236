"""TFLM memory hazards visible before running: what could make its arena read or write wrong.

Shapes stored smaller than what the kernels write (``shapes.infer_shapes`` knows the true
ones), dynamic dimensions, reads of tensors nothing wrote, SPACE_TO_BATCH_ND's uninitialised
padding value, and offline plans that miscount, misalign or overlap live tensors. Lifetimes
and in-place sharing are ``memory``'s (one rule for planning and for checking plans).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ai_edge_litert import schema_py_generated as schema

from . import flatbuffer_io as fio
from .arena.blocks import Blocks, overlapping_pairs
from .dtypes import ARENA_ALIGNMENT, tensor_bytes, type_name
from .graph import build_graph, opcode_namer
from .memory import simulate
from .shapes import CHECKED_OPS, Key, Shape, infer_shapes, int_value
from .tensors import is_static, stored_shape, text


@dataclass(frozen=True)
class Hazard:
    """One statically detectable way TFLM's arena could be read or written wrongly.

    ``kind`` is one of ``KINDS``. ``stored``/``true`` are the tensor's stored and true
    shapes (equal when the hazard is not about shapes); ``bytes_missing`` is true − stored
    bytes for shape hazards (≤ 0 when over-sized), the overlapping bytes for plan overlaps
    and 0 otherwise. Model-level hazards (``plan_count``) have subgraph = tensor = -1.
    """

    subgraph: int
    tensor: int
    name: str
    op_index: int  # the producing operator (or the operator concerned); -1 if none
    opcode: str
    stored: Shape
    true: Shape
    bytes_missing: int
    kind: str
    detail: str = ""

    def to_report(self) -> dict:
        """The entry of ``Report.shape_fixes`` for this hazard."""
        return {"kind": self.kind, "subgraph": self.subgraph, "tensor": self.tensor,
                "name": self.name, "op": self.op_index, "opcode": self.opcode,
                "stored": list(self.stored), "true": list(self.true),
                "bytes_missing": self.bytes_missing}


KINDS = {
    "shape": "stored shape differs from the shape the kernels produce",
    "dynamic_dim": "stored shape of an arena tensor has a negative (dynamic) dimension",
    "unproduced": "operator reads a tensor that no operator produces and is no input",
    "read_before_write": "operator reads a tensor produced by a later operator (stored order)",
    "uninitialized_padding": "TFLM's SPACE_TO_BATCH_ND pads with an uninitialized value",
    "plan_count": "offline plan offset count differs from the tensor count",
    "plan_alignment": "offline plan offset is not a multiple of 16",
    "plan_overlap": "offline plan overlaps two tensors that are live at the same time",
    "unchecked": "no shape rule for this operator: its output shapes were not checked",
    "tflm_cannot_run": "this TFLM build cannot run the model",
    "tflm_not_checked": "tflite-micro is not installed: whether TFLM runs the model is unknown",
    "tflm_timed_out": "TFLM did not finish one run within --verify-timeout: whether it runs "
                      "the model is unknown",
}

# TFLM's words for the operator it could not run: "Didn't find op for builtin opcode 'X'",
# "Node X (number N) failed to prepare", "Failed to get registration from op code X".
_TFLM_OP = re.compile(r"opcode '(\w+)'|Node (\w+) \(number (\d+)\)|from op code (\w+)")


def runtime_hazard(why: str, tflm_installed: bool = True, timed_out: bool = False) -> Hazard:
    """A model-level entry for ``check``: TFLM refused the model (``why``, its own words),
    could not be asked, or was killed at the time bound (``timed_out``). The operator is
    named when TFLM's message names it."""
    if not tflm_installed or timed_out:
        kind = "tflm_timed_out" if timed_out else "tflm_not_checked"
        return Hazard(-1, -1, "", -1, "", (), (), 0, kind, why)
    m = _TFLM_OP.search(why)
    opcode = next((g for g in (m.groups() if m else ()) if g and not g.isdigit()), "")
    index = int(m.group(3)) if m and m.group(3) else -1
    return Hazard(-1, -1, "", index, opcode, (), (), 0, "tflm_cannot_run", why)


def find_hazards(model_t: schema.ModelT, true: dict[Key, Shape] | None = None
                 ) -> list[Hazard]:
    """Every static TFLM memory hazard of the model, grouped by kind (order of ``KINDS``).

    ``true`` is ``infer_shapes(model_t)`` when the caller has it already (inferred here
    otherwise). Never raises for a model ``parse_model`` accepted (inference is best effort).
    """
    true = infer_shapes(model_t) if true is None else true
    name = opcode_namer(model_t)
    producers = [_producers(model_t, s, name) for s in range(len(model_t.subgraphs))]
    return [
        *_shape_hazards(model_t, true, producers),
        *_dynamic_hazards(model_t, true, producers),
        *_dataflow_hazards(model_t, producers, name),
        *_padding_hazards(model_t, name),
        *_plan_hazards(model_t, true),
        *_unchecked(model_t, name),
    ]


def _unchecked(model_t: schema.ModelT, name: Callable[[int], str]) -> list[Hazard]:
    """Operators with arena outputs but no shape rule: nothing above vouches for them."""
    out = []
    for s, sg in enumerate(model_t.subgraphs):
        for i, op in enumerate(sg.operators or []):
            opcode = name(op.opcodeIndex)
            outs = [int(t) for t in (op.outputs if op.outputs is not None else ()) if t >= 0]
            if opcode in CHECKED_OPS or not outs:
                continue
            out.append(_hazard(model_t, s, outs[0], "unchecked", (i, opcode)))
    return out


def _producers(model_t: schema.ModelT, s: int, name: Callable[[int], str]
               ) -> dict[int, tuple[int, str]]:
    out: dict[int, tuple[int, str]] = {}
    for i, op in enumerate(model_t.subgraphs[s].operators or []):
        for t in op.outputs if op.outputs is not None else ():
            out.setdefault(int(t), (i, name(op.opcodeIndex)))
    return out


def _hazard(
    model_t: schema.ModelT, s: int, t: int, kind: str, where: tuple[int, str],
    true: Shape | None = None, missing: int = 0, detail: str = "",
) -> Hazard:
    tensor = model_t.subgraphs[s].tensors[t]
    stored = stored_shape(tensor)
    return Hazard(s, t, text(tensor.name), where[0], where[1], stored,
                  true if true is not None else stored, missing, kind, detail)


def _dtype(model_t: schema.ModelT, s: int, t: int) -> str:
    return type_name(model_t.subgraphs[s].tensors[t].type)


def _shape_hazards(model_t: schema.ModelT, true: dict[Key, Shape],
                   producers: list[dict[int, tuple[int, str]]]) -> list[Hazard]:
    out = []
    for (s, t), shape in sorted(true.items()):
        stored = stored_shape(model_t.subgraphs[s].tensors[t])
        dtype = _dtype(model_t, s, t)
        missing = tensor_bytes(shape, dtype) - tensor_bytes(stored, dtype)
        where = producers[s].get(t, (-1, ""))
        out.append(_hazard(model_t, s, t, "shape", where, shape, missing))
    return out


def _dynamic_hazards(model_t: schema.ModelT, true: dict[Key, Shape],
                     producers: list[dict[int, tuple[int, str]]]) -> list[Hazard]:
    """Arena tensors stored with a -1 dimension that inference could not make static."""
    out = []
    for s, sg in enumerate(model_t.subgraphs):
        for t, tensor in enumerate(sg.tensors or []):
            dynamic = any(d < 0 for d in stored_shape(tensor))
            if dynamic and (s, t) not in true and not is_static(model_t, tensor):
                out.append(_hazard(model_t, s, t, "dynamic_dim",
                                   producers[s].get(t, (-1, ""))))
    return out


def _dataflow_hazards(model_t: schema.ModelT, all_producers: list[dict[int, tuple[int, str]]],
                      name: Callable[[int], str]) -> list[Hazard]:
    out = []
    for s, sg in enumerate(model_t.subgraphs):
        producers = all_producers[s]
        inputs = {int(t) for t in (sg.inputs if sg.inputs is not None else ())}
        for i, op in enumerate(sg.operators or []):
            where = (i, name(op.opcodeIndex))
            for t in dict.fromkeys(int(t) for t in (op.inputs if op.inputs is not None else ())):
                if t < 0 or t in inputs or is_static(model_t, sg.tensors[t]):
                    continue
                if t not in producers:
                    out.append(_hazard(model_t, s, t, "unproduced", where))
                elif producers[t][0] >= i:
                    detail = f"produced by operator {producers[t][0]} ({producers[t][1]})"
                    out.append(_hazard(model_t, s, t, "read_before_write", where, detail=detail))
    return out


def _padding_hazards(model_t: schema.ModelT, name: Callable[[int], str]) -> list[Hazard]:
    """SPACE_TO_BATCH_ND operators that pad (nonzero or unknown paddings).

    TFLM's kernel pads with ``SpaceToBatchParams.output_offset``, a persistent buffer that its
    Prepare never writes; ``memset`` takes its low byte. LiteRT pads with the output zero
    point. Seen here: TFLM padded with 0, -16 or -63 (varying between processes) where
    LiteRT used -128, so a dilated int8 model's border outputs are wrong and vary between runs.
    An S2B whose constant paddings are all zero writes no padding, so it is no hazard: that is
    what ``repair_padding`` leaves behind (the padding moves into a PAD ahead of it).
    """
    out = []
    for s, sg in enumerate(model_t.subgraphs):
        for i, op in enumerate(sg.operators or []):
            if name(op.opcodeIndex) != "SPACE_TO_BATCH_ND" or len(op.inputs) < 3:
                continue
            pads = int_value(model_t, sg.tensors[op.inputs[2]]) if op.inputs[2] >= 0 else None
            if pads is None or pads.any():
                detail = "paddings " + ("unknown" if pads is None else str(pads.tolist()))
                out.append(_hazard(model_t, s, int(op.outputs[0]), "uninitialized_padding",
                                   (i, "SPACE_TO_BATCH_ND"), detail=detail))
    return out


def _plan_hazards(model_t: schema.ModelT, true: dict[Key, Shape]) -> list[Hazard]:
    plan = fio.get_offline_plan(model_t)
    if plan is None:
        return []
    n = sum(len(sg.tensors or []) for sg in model_t.subgraphs)
    if len(plan) != n:
        detail = f"{len(plan)} offsets for {n} tensors: TFLM refuses the model"
        return [Hazard(-1, -1, "", -1, "", (), (), 0, "plan_count", detail)]
    graph = build_graph(model_t, true)
    keys = [(s, t) for s, sg in enumerate(graph.subgraphs) for t in range(len(sg.tensors))]
    offsets = dict(zip(keys, plan, strict=True))
    out = []
    for (s, t), off in offsets.items():
        if off >= 0 and off % ARENA_ALIGNMENT and graph.subgraphs[s].tensors[t].in_arena:
            out.append(_hazard(model_t, s, t, "plan_alignment", (-1, ""),
                               detail=f"offset {off}"))
    return out + _overlap_hazards(model_t, graph, offsets)


def _overlap_hazards(model_t, graph, offsets: dict[Key, int]) -> list[Hazard]:
    """Pairs of planned tensors live together whose byte ranges (true sizes) intersect.

    An output placed exactly on (same offset) an input it may share a buffer with by
    ``memory``'s in-place rule (an input of the same size and type dying at an in-place-safe
    operator) is deliberate aliasing, not a hazard; at any other intersecting offset the
    kernel's writes could run ahead of its reads.
    """
    use = simulate(graph, graph.stored_orders(), inplace=False)
    live = [(b.tensors[0], b) for b in use.buffers if b.first >= 0 and offsets[b.tensors[0]] >= 0]
    live.sort(key=lambda kb: offsets[kb[0]])
    group = {k: i for i, b in enumerate(simulate(graph, graph.stored_orders()).buffers)
             for k in b.tensors}
    blocks = Blocks.of(b for _, b in live)
    out = []
    for i, j in sorted(overlapping_pairs(blocks, [offsets[k] for k, _ in live])):
        (ka, a), (kb, b) = live[i], live[j]
        if group[ka] == group[kb] and offsets[ka] == offsets[kb]:
            continue
        overlap = min(offsets[ka] + a.size, offsets[kb] + b.size) - offsets[kb]
        detail = f"overlaps tensor {kb[1]} of subgraph {kb[0]} by {overlap} bytes"
        out.append(_hazard(model_t, ka[0], ka[1], "plan_overlap", (-1, ""),
                           missing=overlap, detail=detail))
    return out


def describe(hazards: Sequence[Hazard]) -> list[str]:
    """One line per hazard, for reports and the CLI."""
    lines = []
    for h in hazards:
        what = KINDS.get(h.kind, h.kind)
        where = f"subgraph {h.subgraph} tensor {h.tensor} ({h.name})" if h.tensor >= 0 else "model"
        op = f", operator {h.op_index} {h.opcode}" if h.op_index >= 0 else ""
        shapes = ""
        if h.kind == "shape":
            shapes = f": stored {list(h.stored)}, true {list(h.true)}, {h.bytes_missing:+d} bytes"
        extra = f" ({h.detail})" if h.detail else ""
        lines.append(f"{h.kind}: {where}{op}{shapes}{extra} — {what}")
    return lines
