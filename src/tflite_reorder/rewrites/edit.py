"""Editing one subgraph of a ``ModelT`` in place: tensors, constants, operators, order.

Rewrites build new operators next to the ones they replace and drop the old ones; the
operator list is put back into a (stable) topological order afterwards, and tensors nothing
refers to any more are removed at the very end (``compact``), because TFLM would still give
every unreferenced non-constant tensor arena space.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from ..dtypes import numpy_type, type_name
from ..graph import opcode_name, topological_order
from ..tensors import constant_data, ints, stored_shape, text

# Operator versions LiteRT's builtin resolver accepts for the types used here.
VERSIONS = {"ADD": {"INT8": 2, "FLOAT32": 1}, "CONCATENATION": {"INT8": 2, "FLOAT32": 1},
            "STRIDED_SLICE": {"INT8": 2, "FLOAT32": 1}, "PAD": {"INT8": 2, "FLOAT32": 1},
            "PADV2": {"INT8": 2, "FLOAT32": 1}}


class NotApplicable(Exception):
    """A rewrite does not apply at a site; the message says why (for ``rejected``)."""


@dataclass(frozen=True)
class Quant:
    """Per-tensor or per-axis affine quantisation (``scale`` and ``zero_point`` arrays)."""

    scale: np.ndarray
    zero_point: np.ndarray
    dim: int = 0

    @property
    def per_tensor(self) -> bool:
        return len(self.scale) == 1

    def to_t(self) -> schema.QuantizationParametersT:
        q = schema.QuantizationParametersT()
        q.scale = [float(s) for s in self.scale]
        q.zeroPoint = [int(z) for z in self.zero_point]
        q.quantizedDimension = int(self.dim)
        return q

    def sliced(self, lo: int, hi: int, along: int) -> Quant:
        """The quantisation of a slice [lo, hi) of axis ``along`` (per-axis data sliced)."""
        if self.per_tensor or self.dim != along:
            return self
        return Quant(self.scale[lo:hi], self.zero_point[lo:hi], self.dim)


class Editor:
    """One subgraph of a model, with helpers that keep buffers and opcodes consistent."""

    def __init__(self, model: schema.ModelT, s: int) -> None:
        self.model, self.s = model, s
        self.sg = model.subgraphs[s]
        self.sg.tensors = list(self.sg.tensors or [])
        self.sg.operators = list(self.sg.operators or [])
        model.buffers = list(model.buffers or [])
        model.operatorCodes = list(model.operatorCodes or [])
        self.deferred = False  # when set, ``toposort`` waits for ``flush`` (many rewrites)
        self._vectors: dict[int, tuple[object, tuple[int, ...]]] = {}  # see ``_ints``
        self._unsorted = False

    # -- reading -----------------------------------------------------------------------------

    def t(self, i: int) -> schema.TensorT:
        return self.sg.tensors[i]

    def opcode(self, op: schema.OperatorT) -> str:
        return opcode_name(self.model, op.opcodeIndex)

    def dtype(self, i: int) -> str:
        return type_name(self.t(i).type)

    def shape(self, i: int) -> tuple[int, ...]:
        return stored_shape(self.t(i))

    def name(self, i: int) -> str:
        return text(self.t(i).name)

    def quant(self, i: int) -> Quant | None:
        q = self.t(i).quantization
        if q is None or q.scale is None or len(q.scale) == 0:
            return None
        zp = q.zeroPoint if q.zeroPoint is not None else np.zeros(len(q.scale))
        return Quant(np.asarray(q.scale, np.float64), np.asarray(zp, np.int64),
                     int(q.quantizedDimension))

    def same_quant(self, a: int, b: int) -> bool:
        """Same quantisation (or none on both): a copy between them changes no bit."""
        qa, qb = self.quant(a), self.quant(b)
        if qa is None or qb is None:
            return qa is None and qb is None
        return np.array_equal(qa.scale, qb.scale) and np.array_equal(qa.zero_point,
                                                                     qb.zero_point)

    def options(self, op: schema.OperatorT,
                error: type[Exception] = NotApplicable):  # -> the op's *OptionsT
        """``op``'s options table, which the reader left only when it is of the type the
        op reads (``options.drop_foreign_options``); raises ``error`` when it has none: the
        runtimes then run the op with zeroed parameters (stride 0, ...), which no rewrite
        or tile reproduces."""
        found = op.builtinOptions
        if found is None:
            raise error(f"{self.opcode(op)} has no options table")
        return found

    def constant(self, i: int) -> np.ndarray | None:
        """The data of a constant tensor, typed and shaped, or None when it has none."""
        return None if i < 0 else constant_data(self.model, self.t(i))

    def applicable(self, check: Callable[[Editor, schema.OperatorT], object]) -> list[int]:
        """Indices of the ops at which ``check`` raises no ``NotApplicable`` (rewrite sites)."""
        out = []
        for i, op in enumerate(self.sg.operators):
            try:
                check(self, op)
            except NotApplicable:
                continue
            out.append(i)
        return out

    def _ints(self, vec) -> tuple[int, ...]:
        """``ints(vec)``, remembered per vector object: rewrites replace an operator's
        tensor vectors, never write into them, so a vector seen before has not changed
        (the cache holds the vector, so its id is not reused). The consumer and producer
        scans read every operator's vectors for every tensor they look up."""
        hit = self._vectors.get(id(vec))
        if hit is not None and hit[0] is vec:
            return hit[1]
        out = ints(vec)
        self._vectors[id(vec)] = (vec, out)
        return out

    def inputs(self, op: schema.OperatorT) -> list[int]:
        return list(self._ints(op.inputs))

    def outputs(self, op: schema.OperatorT) -> list[int]:
        return list(self._ints(op.outputs))

    def consumers(self, t: int) -> list[schema.OperatorT]:
        return [op for op in self.sg.operators if t in self._ints(op.inputs)]

    def producer(self, t: int) -> schema.OperatorT | None:
        for op in self.sg.operators:
            if t in self._ints(op.outputs):
                return op
        return None

    def is_io(self, t: int) -> bool:
        ins = self.sg.inputs if self.sg.inputs is not None else ()
        outs = self.sg.outputs if self.sg.outputs is not None else ()
        return t in {int(x) for x in ins} | {int(x) for x in outs}

    # -- creating ----------------------------------------------------------------------------

    def new_tensor(
        self, like: int, shape: tuple[int, ...], name: str, quant: Quant | None = None,
        keep_quant: bool = False,
    ) -> int:
        """An activation tensor of ``like``'s type; quantisation given or copied."""
        src = self.t(like)
        t = schema.TensorT()
        t.type, t.buffer, t.name = src.type, 0, name
        t.shape = np.array(shape, np.int32)
        sig = src.shapeSignature
        if sig is not None and len(sig) == len(shape):
            t.shapeSignature = np.array(
                [-1 if d == -1 else n for d, n in zip(sig, shape, strict=True)], np.int32)
        if quant is not None:
            t.quantization = quant.to_t()
        elif keep_quant and src.quantization is not None:
            t.quantization = copy.deepcopy(src.quantization)
        self.sg.tensors.append(t)
        return len(self.sg.tensors) - 1

    def new_constant(
        self, value: np.ndarray, like: int, name: str, quant: Quant | None = None
    ) -> int:
        """A constant of ``like``'s type holding ``value``, with a buffer of its own."""
        return self._constant(value, self.t(like).type, name, quant)

    def new_int32(self, value: np.ndarray, name: str) -> int:
        """An int32 constant (shapes, paddings, slice bounds)."""
        return self._constant(value, schema.TensorType.INT32, name, None)

    def _constant(self, value: np.ndarray, tensor_type: int, name: str, quant) -> int:
        value = np.asarray(value).astype(numpy_type(tensor_type))
        buf = schema.BufferT()
        buf.data = np.ascontiguousarray(value).reshape(-1).view(np.uint8).copy()
        self.model.buffers.append(buf)
        t = schema.TensorT()
        t.type, t.name = tensor_type, name
        t.buffer = len(self.model.buffers) - 1
        t.shape = np.array(value.shape, np.int32)
        if quant is not None:
            t.quantization = quant.to_t()
        self.sg.tensors.append(t)
        return len(self.sg.tensors) - 1

    def opcode_index(self, opcode: str, version: int = 1) -> int:
        """The operator code of a builtin, appended when missing; its version is raised to
        ``version`` when lower (an opcode's version is the highest any of its ops needs)."""
        for i in range(len(self.model.operatorCodes)):
            if opcode_name(self.model, i) == opcode:
                code = self.model.operatorCodes[i]
                code.version = max(int(code.version), version)
                return i
        code = schema.OperatorCodeT()
        code.builtinCode = getattr(schema.BuiltinOperator, opcode)
        code.deprecatedBuiltinCode = min(code.builtinCode, 127)
        code.version = version
        self.model.operatorCodes.append(code)
        return len(self.model.operatorCodes) - 1

    def clone_op(
        self, op: schema.OperatorT, inputs: list[int], outputs: list[int]
    ) -> schema.OperatorT:
        """Same operator and options on other tensors (optional inputs stay -1).

        The options are copied one level deep (callers change their scalar fields); the
        rest is shared with ``op``.
        """
        new = copy.copy(op)
        new.builtinOptions = copy.copy(op.builtinOptions)
        new.inputs = np.array(inputs, np.int32)
        new.outputs = np.array(outputs, np.int32)
        return new

    def new_op(
        self, opcode: str, inputs: list[int], outputs: list[int], options_type: int,
        options, version: int = 1,
    ) -> schema.OperatorT:
        op = schema.OperatorT()
        op.opcodeIndex = self.opcode_index(opcode, version)
        op.inputs = np.array(inputs, np.int32)
        op.outputs = np.array(outputs, np.int32)
        op.builtinOptionsType, op.builtinOptions = options_type, options
        return op

    def add_op(self, opcode: str, inputs: list[int], output: int, act: int) -> schema.OperatorT:
        opts = schema.AddOptionsT()
        opts.fusedActivationFunction = act
        version = VERSIONS["ADD"].get(self.dtype(output), 1)
        return self.new_op("ADD", inputs, [output], schema.BuiltinOptions.AddOptions, opts,
                           version)

    def concat_op(self, inputs: list[int], output: int, axis: int) -> schema.OperatorT:
        opts = schema.ConcatenationOptionsT()
        opts.axis = axis
        version = VERSIONS["CONCATENATION"].get(self.dtype(output), 1)
        return self.new_op("CONCATENATION", inputs, [output],
                           schema.BuiltinOptions.ConcatenationOptions, opts, version)

    def strided_slice_op(self, x: int, begin, end, strides, out: int) -> schema.OperatorT:
        """STRIDED_SLICE of ``x`` into ``out`` with constant, mask-free bounds."""
        ints = [self.new_int32(np.array(v, np.int32), f"{self.name(out)}/{n}")
                for v, n in ((begin, "begin"), (end, "end"), (strides, "strides"))]
        version = VERSIONS["STRIDED_SLICE"].get(self.dtype(x), 1)
        return self.new_op("STRIDED_SLICE", [x, *ints], [out],
                           schema.BuiltinOptions.StridedSliceOptions,
                           schema.StridedSliceOptionsT(), version)

    def pad_op(self, x: int, pads, out: int, value: float | None = None) -> schema.OperatorT:
        """PAD of ``x`` (with its zero point, 0 for float) or PADV2 with ``value``.

        ``value`` is in ``x``'s stored type (an int8 value for int8, not a real number).
        """
        p = self.new_int32(np.array(pads, np.int32), f"{self.name(out)}/paddings")
        if value is None:
            version = VERSIONS["PAD"].get(self.dtype(x), 1)
            return self.new_op("PAD", [x, p], [out], schema.BuiltinOptions.PadOptions,
                               schema.PadOptionsT(), version)
        v = self.new_constant(np.array(value), x, f"{self.name(out)}/pad_value",
                              self.quant(x))
        version = VERSIONS["PADV2"].get(self.dtype(x), 1)
        return self.new_op("PADV2", [x, p, v], [out], schema.BuiltinOptions.PadV2Options,
                           schema.PadV2OptionsT(), version)

    # -- replacing ---------------------------------------------------------------------------

    def replace(self, old: list[schema.OperatorT], new: list[schema.OperatorT]) -> None:
        """Put ``new`` where the first of ``old`` was and drop ``old``; order fixed later."""
        ops = self.sg.operators
        ids = {id(o) for o in old}
        pos = min(i for i, o in enumerate(ops) if id(o) in ids)
        kept = [o for o in ops[:pos] if id(o) not in ids]
        rest = [o for o in ops[pos:] if id(o) not in ids]
        self.sg.operators = kept + list(new) + rest

    def toposort(self) -> None:
        """Stable topological order: each op as early in the list as its inputs allow.

        With ``deferred`` set, only noted: ``flush`` sorts once after many rewrites (none of
        them reads the list order). Raises NotApplicable when the graph became cyclic.
        """
        if self.deferred:
            self._unsorted = True
            return
        self._sort()

    def flush(self) -> None:
        """The sort ``toposort`` deferred, if any."""
        if self._unsorted:
            self._unsorted = False
            self._sort()

    def _sort(self) -> None:
        ops = self.sg.operators
        made = {t: i for i, op in enumerate(ops) for t in self.outputs(op)}
        preds = [{made[t] for t in self.inputs(op) if t in made and made[t] != i}
                 for i, op in enumerate(ops)]
        order = topological_order(preds)
        if len(order) < len(ops):
            raise NotApplicable("rewrite made the operator graph cyclic")
        self.sg.operators = [ops[i] for i in order]


def fork(model: schema.ModelT) -> schema.ModelT:
    """A copy to rewrite: subgraphs, opcodes and metadata copied, weight buffers shared.

    Rewrites only append buffers and ``compact`` replaces the ones it frees, so sharing the
    (large) constant data with the original is safe and avoids copying megabytes per trial.
    Metadata buffers are copied: the offline plan is written into them in place.
    """
    new = copy.copy(model)
    new.subgraphs = [_fork_subgraph(sg) for sg in model.subgraphs]
    new.operatorCodes = [copy.copy(c) for c in model.operatorCodes or []]
    new.metadata = copy.deepcopy(model.metadata)
    new.signatureDefs = copy.deepcopy(model.signatureDefs)
    new.buffers = list(model.buffers or [])
    for m in new.metadata or []:
        if 0 <= m.buffer < len(new.buffers):
            new.buffers[m.buffer] = copy.deepcopy(new.buffers[m.buffer])
    return new


def _fork_subgraph(sg: schema.SubGraphT) -> schema.SubGraphT:
    """Lists and operators copied; tensors shared (rewrites only add new ones, and replace
    operators' tensor vectors rather than writing into them)."""
    new = copy.copy(sg)
    new.tensors = list(sg.tensors or [])
    new.operators = [copy.copy(op) for op in sg.operators or []]
    return new


def buffers_in_use(model: schema.ModelT) -> set[int]:
    """Buffers a tensor or a metadata entry refers to."""
    used = {int(t.buffer) for sg in model.subgraphs for t in sg.tensors or []}
    return used | {int(m.buffer) for m in model.metadata or []}


def compact(model: schema.ModelT, was_used: set[int]) -> list[dict[int, int]]:
    """Drop tensors no operator or subgraph I/O refers to; empty buffers the rewrites freed.

    Returns, per subgraph, the map old tensor index -> new index. Buffers keep their indices
    (metadata and other subgraphs may refer to them); those in ``was_used`` that nothing
    uses any more (weights that were sliced) lose their data.
    """
    remaps = []
    for sg in model.subgraphs:
        used: set[int] = set()
        for op in sg.operators or []:
            for field in (op.inputs, op.outputs, op.intermediates):
                used.update(int(x) for x in (field if field is not None else ()) if x >= 0)
        used.update(int(x) for x in (sg.inputs if sg.inputs is not None else ()))
        used.update(int(x) for x in (sg.outputs if sg.outputs is not None else ()))
        keep = sorted(used)
        remap = {old: new for new, old in enumerate(keep)}
        sg.tensors = [sg.tensors[i] for i in keep]

        def fix(vec, remap=remap):
            if vec is None:
                return None
            return np.array([remap[int(x)] if x >= 0 else -1 for x in vec], np.int32)

        for op in sg.operators or []:
            op.inputs, op.outputs = fix(op.inputs), fix(op.outputs)
            if op.intermediates is not None and len(op.intermediates):
                op.intermediates = fix(op.intermediates)
        sg.inputs, sg.outputs = fix(sg.inputs), fix(sg.outputs)
        remaps.append(remap)
    _fix_signatures(model, remaps)
    for i in was_used - buffers_in_use(model) - {0}:
        model.buffers[i] = schema.BufferT()  # replaced, not emptied: ``fork`` shares them
    return remaps


def _fix_signatures(model: schema.ModelT, remaps: list[dict[int, int]]) -> None:
    for sig in model.signatureDefs or []:
        remap = remaps[sig.subgraphIndex] if sig.subgraphIndex < len(remaps) else {}
        for tmap in list(sig.inputs or []) + list(sig.outputs or []):
            tmap.tensorIndex = remap.get(int(tmap.tensorIndex), tmap.tensorIndex)
