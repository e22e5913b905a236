"""A NAS candidate in any of its forms, turned into the scheduling graph.

``peak_memory`` is called once per candidate architecture, thousands of times. A candidate
may come as ``.tflite`` bytes or a path (read by :mod:`fastread`, no weights unpacked), as a
model already parsed, as a :class:`ModelGraph` from an earlier call (reused as is), or as a
:class:`GraphSpec`: a plain description a search loop can build without any flatbuffer.

A graph description has one subgraph (no control flow) and gives every tensor's true shape;
no shape inference runs on it. In dict form (e.g. from JSON)::

    {"tensors": [{"shape": [1, 32, 32, 3], "dtype": "INT8"},
                 {"shape": [8, 3, 3, 3], "dtype": "INT8", "constant": true},
                 {"shape": [1, 32, 32, 8], "dtype": "INT8"}],
     "ops": [{"opcode": "CONV_2D", "inputs": [0, 1], "outputs": [2]}],
     "inputs": [0], "outputs": [2]}

``opcode`` is a TFLite builtin operator name (``CONV_2D``, ``ADD``, …) or ``CUSTOM:name``;
``dtype`` a TFLite tensor type name (``INT8``, ``FLOAT32``, …; default ``INT8``).
Constants take no arena; the in-place rule and stateful-op ordering are the ones applied to
``.tflite`` input, because the description is built into the same graph by the same code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ai_edge_litert import schema_py_generated as schema

from . import shapes
from .dtypes import TYPE_NAMES
from .fastread import (
    LiteBuffer,
    LiteModel,
    LiteOperator,
    LiteOperatorCode,
    LiteSubGraph,
    LiteTensor,
    read_lite,
)
from .flatbuffer_io import LoadedModel, ModelError, read_bytes
from .graph import BUILTIN_NAMES, ModelGraph, build_graph, opcode_name

_BUILTIN_CODES = {name: code for code, name in BUILTIN_NAMES.items()}
_TYPE_CODES = {name: code for code, name in TYPE_NAMES.items()}
_CONSTANT = LiteBuffer(b"\0", 0, 1, 0, 0)  # any buffer with data marks a tensor constant
_NO_DATA = LiteBuffer(b"", 0, 0, 0, 0)


@dataclass
class TensorSpec:
    """One tensor: its true shape, element type and whether it is a constant (weights)."""

    shape: tuple[int, ...]
    dtype: str = "INT8"
    constant: bool = False
    name: str = ""


@dataclass
class OpSpec:
    """One operator, by builtin name, reading and writing tensors by index."""

    opcode: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass
class GraphSpec:
    """A one-subgraph model described without a flatbuffer (see the module docstring)."""

    tensors: list[TensorSpec]
    ops: list[OpSpec]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    name: str = field(default="graph description")

    @classmethod
    def from_dict(cls, d: dict) -> GraphSpec:
        """Build from the dict form; raises ``ModelError`` naming what is missing."""
        try:
            return cls(
                [TensorSpec(tuple(t["shape"]), t.get("dtype", "INT8"),
                            bool(t.get("constant", False)), str(t.get("name", "")))
                 for t in d["tensors"]],
                [OpSpec(str(o["opcode"]), tuple(o["inputs"]), tuple(o["outputs"]))
                 for o in d["ops"]],
                tuple(d["inputs"]), tuple(d["outputs"]), str(d.get("name", "graph description")),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ModelError(f"graph description: malformed ({type(exc).__name__}: {exc})") \
                from None


def describe_graph(graph: ModelGraph) -> GraphSpec:
    """The description of a one-subgraph graph (e.g. of a seed model a search mutates).

    Tensors outside the arena that no operator writes become constants (a variable's
    ordering of the ops that touch it is not expressed). Raises ``ModelError`` for a graph
    of several subgraphs."""
    if len(graph.subgraphs) != 1:
        raise ModelError(f"a graph description has one subgraph, not {len(graph.subgraphs)}")
    sg = graph.subgraphs[0]
    consts = _constants(sg)
    return GraphSpec(
        [TensorSpec(t.shape, t.dtype, t.index in consts, t.name) for t in sg.tensors],
        [OpSpec(op.opcode, op.inputs, op.outputs) for op in sg.ops],
        sg.inputs, sg.outputs, sg.name or "graph description",
    )


def _constants(sg) -> set[int]:
    """Tensors no operator writes that are not subgraph inputs and not in the arena."""
    return {t.index for t in sg.tensors
            if not t.in_arena and t.index not in sg.producer and t.index not in sg.inputs}


def _code(opcode: str, where: str) -> LiteOperatorCode:
    if opcode.startswith("CUSTOM:"):
        return LiteOperatorCode(schema.BuiltinOperator.CUSTOM, 0, opcode[7:].encode(), 1)
    code = _BUILTIN_CODES.get(opcode)
    if code is None:
        raise ModelError(f"{where}: unknown operator {opcode!r} (a TFLite builtin name)")
    return LiteOperatorCode(code, min(code, 127), None, 1)


def _tensor(t: TensorSpec, i: int, where: str) -> LiteTensor:
    if t.dtype not in _TYPE_CODES:
        raise ModelError(f"{where}: tensor {i} has unknown dtype {t.dtype!r}")
    try:
        shape = tuple(int(d) for d in t.shape)
    except (TypeError, ValueError):
        raise ModelError(f"{where}: tensor {i} shape {t.shape!r} is not a list of ints") from None
    if any(d < 0 for d in shape):
        raise ModelError(f"{where}: tensor {i} shape {list(shape)} has a negative dimension")
    name = (t.name or f"t{i}").encode()
    return LiteTensor(shape, _TYPE_CODES[t.dtype], 1 if t.constant else 0, name, False, None, 0)


def _indices(values, where: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in values)
    except (TypeError, ValueError):
        raise ModelError(f"{where}: tensor indices {values!r} are not ints") from None


def spec_model(spec: GraphSpec | dict) -> LiteModel:
    """The description as a model ``graph.build_graph`` reads; raises ``ModelError``."""
    if isinstance(spec, dict):
        spec = GraphSpec.from_dict(spec)
    where = spec.name
    codes: dict[str, int] = {}
    code_list: list[LiteOperatorCode] = []
    ops = []
    for i, op in enumerate(spec.ops):
        if op.opcode not in codes:
            codes[op.opcode] = len(code_list)
            code_list.append(_code(op.opcode, f"{where}: operator {i}"))
        ops.append(LiteOperator(codes[op.opcode], _indices(op.inputs, f"{where}: operator {i}"),
                                _indices(op.outputs, f"{where}: operator {i}"), None, 0, b"",
                                None))
    tensors = [_tensor(t, i, where) for i, t in enumerate(spec.tensors)]
    sg = LiteSubGraph(tensors, ops, _indices(spec.inputs, where), _indices(spec.outputs, where),
                      spec.name.encode())
    return LiteModel(3, code_list, [sg], [_NO_DATA, _CONSTANT], [])


Candidate = str | os.PathLike | bytes | LoadedModel | GraphSpec | dict | ModelGraph
REPAIRED_OPS = frozenset({"SPACE_TO_BATCH_ND"})  # read_safe_graph rewrites models with them


def read_graph(candidate: Candidate, source: str | None = None) -> ModelGraph:
    """The scheduling graph of a candidate in any form, with true (inferred) shapes.

    Bytes and paths are read straight from the flatbuffer tables; the result equals
    ``build_graph(model, infer_shapes(model))`` on the fully parsed model. Raises
    ``ModelError`` (one line, naming the file, or ``source`` for bytes) for input that is
    not a valid model.
    """
    if isinstance(candidate, ModelGraph):
        return candidate
    if isinstance(candidate, GraphSpec | dict):
        return build_graph(spec_model(candidate))
    return shapes.true_graph(_tables(candidate, source))


def _tables(candidate: Candidate, source: str | None) -> LiteModel | schema.ModelT:
    """The model of a ``.tflite`` candidate: the caller's tables, or read from the bytes."""
    if isinstance(candidate, LoadedModel):
        return candidate.model
    if isinstance(candidate, bytes | bytearray | memoryview):
        return read_lite(bytes(candidate), source or "<bytes>")
    return read_lite(read_bytes(candidate), str(candidate))


def read_safe_graph(candidate: Candidate, source: str | None = None) -> ModelGraph:
    """``read_graph`` of the model made safe in TFLM, as ``optimize`` plans it.

    TFLM's SPACE_TO_BATCH_ND pads with a value it never initialises; ``optimize`` moves the
    padding into an explicit PAD first (``rewrites.padding``), which costs arena. Peaks
    asked of a candidate are of that safe model, so ``peak_memory`` and ``optimize`` agree.
    The repair edits the tables read for this call (a loaded model's are copied first), by
    the same code ``optimize`` runs. Graph descriptions are taken as they are. Raises what
    ``read_graph`` raises.
    """
    if isinstance(candidate, ModelGraph | GraphSpec | dict):
        return read_graph(candidate, source)
    model = _tables(candidate, source)
    n_codes = len(model.operatorCodes or [])
    if not any(opcode_name(model, op.opcodeIndex) in REPAIRED_OPS
               for sg in model.subgraphs or [] for op in sg.operators or []
               if 0 <= op.opcodeIndex < n_codes):
        return shapes.true_graph(model)
    import copy

    from .rewrites.padding import repair_model

    build_graph(model)  # the input's own errors first (shapes do not change them)
    if isinstance(candidate, LoadedModel):
        model = copy.deepcopy(model)
    repair_model(model)
    return shapes.true_graph(model)
