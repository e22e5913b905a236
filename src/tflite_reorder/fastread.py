"""Reading the scheduling view of a model straight from the flatbuffer tables.

``flatbuffer_io.parse_model`` unpacks the whole model into the generated object API (every
tensor's quantisation, every buffer's bytes) so that a written model keeps every field. A
NAS loop that only asks ``peak_memory`` needs much less: tensor shapes, types, names and
whether they are constant; operators' opcodes, inputs, outputs and called subgraphs; the
small integer constants shape inference reads. :func:`read_lite` reads just that, field by
field with ``struct`` (no per-field generated accessors), into light objects that carry the
object API's attribute names, so ``graph.build_graph``, ``shapes.infer_shapes`` and the
reader's own checks (``flatbuffer_io.check_model``) run on them unchanged: one graph
builder, one shape inference, one set of input checks, two readers.

Builtin options tables are unpacked only when something reads ``op.builtinOptions`` (shape
rules, control flow); ``LiteOperator.option`` reads one field, a scalar straight from the
bytes as its generated accessor reads it (``_scalar_plan``); buffer bytes are a zero-copy
view taken only when read. Where the
extension is built the field reads run in C (``_searchcore.lite_tables``: the same fields,
bounds and types; on a read that fails it returns None and the struct reads here raise).
"""

from __future__ import annotations

import struct

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from .flatbuffer_io import (
    ModelError,
    check_header,
    check_model,
    check_table_counts,
    check_vector_entries,
)
from .options import drop_foreign_options
from .searchcore import unavailable as compiled_off

try:  # the same field reads in C (None when a read fails: _read then raises the error)
    from ._searchcore import lite_tables as _compiled_tables
except ImportError:  # not built
    _compiled_tables = None
COMPILED = _compiled_tables is not None  # tests switch it off to compare the two

_U8 = struct.Struct("<B").unpack_from
_I8 = struct.Struct("<b").unpack_from
_U16 = struct.Struct("<H").unpack_from
_I32 = struct.Struct("<i").unpack_from
_U32 = struct.Struct("<I").unpack_from
_U64 = struct.Struct("<Q").unpack_from

# Field slots (vtable entry index) of the schema's tables, as the generated code reads them.
T_SHAPE, T_TYPE, T_BUFFER, T_NAME, T_QUANT, T_VARIABLE, T_SPARSITY, T_SIGNATURE = range(8)
T_EXTERNAL = 10
O_OPCODE, O_INPUTS, O_OUTPUTS, O_OPTIONS_TYPE, O_OPTIONS = range(5)
O_INTERMEDIATES = 8
SG_TENSORS, SG_INPUTS, SG_OUTPUTS, SG_OPERATORS, SG_NAME = range(5)
M_VERSION, M_CODES, M_SUBGRAPHS, M_BUFFERS, M_METADATA = 0, 1, 2, 4, 6
C_DEPRECATED, C_CUSTOM, C_VERSION, C_BUILTIN = range(4)
B_DATA, B_OFFSET, B_SIZE = range(3)
MD_NAME, MD_BUFFER = range(2)
MIN_SLOTS = 12  # every slot above exists in a table's field offsets (0 = absent)


class _Tables:
    """Bounds-checked reads of flatbuffer tables, vectors and strings from one byte string."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.n = len(raw)
        self._vtables: dict[int, tuple[int, ...]] = {}
        self._int_vectors: dict[int, struct.Struct] = {}

    def fields(self, pos: int) -> tuple[int, ...]:
        """The field offsets of the table at ``pos`` (0 = field absent); vtables are shared."""
        if not 0 <= pos <= self.n - 4:
            raise IndexError(pos)
        vt = pos - _I32(self.raw, pos)[0]
        found = self._vtables.get(vt)
        if found is None:
            if not 0 <= vt <= self.n - 4:
                raise IndexError(vt)
            size = _U16(self.raw, vt)[0]
            if size < 4 or size % 2 or vt + size > self.n:
                raise IndexError(vt)
            found = struct.unpack_from(f"<{(size - 4) // 2}H", self.raw, vt + 4)
            found += (0,) * (MIN_SLOTS - len(found))  # absent fields: no length checks
            self._vtables[vt] = found
        return found

    def target(self, pos: int, fields: tuple[int, ...], slot: int) -> int | None:
        """Where an offset field (table, vector, string) points, or None when absent."""
        off = fields[slot] if slot < len(fields) else 0
        if not off:
            return None
        at = pos + off
        return at + _U32(self.raw, at)[0]

    def scalar(self, unpack, pos: int, fields: tuple[int, ...], slot: int, default=0):
        off = fields[slot] if slot < len(fields) else 0
        return unpack(self.raw, pos + off)[0] if off else default

    def length(self, vec: int) -> int:
        n = _U32(self.raw, vec)[0]
        return n

    def tables(self, vec: int | None) -> list[int]:
        """Positions of the tables a vector of tables points to."""
        if vec is None:
            return []
        n = self.length(vec)
        if vec + 4 + 4 * n > self.n:
            raise IndexError(vec)
        offs = struct.unpack_from(f"<{n}I", self.raw, vec + 4)
        return [vec + 4 + 4 * i + o for i, o in enumerate(offs)]

    def ints(self, vec: int | None) -> tuple[int, ...] | None:
        """A vector of int32 as a tuple (None when the field is absent)."""
        if vec is None:
            return None
        n = self.length(vec)
        if vec + 4 + 4 * n > self.n:
            raise IndexError(vec)
        unpack = self._int_vectors.get(n)
        if unpack is None:
            unpack = self._int_vectors[n] = struct.Struct(f"<{n}i")
        return unpack.unpack_from(self.raw, vec + 4)

    def string(self, vec: int | None) -> bytes | None:
        if vec is None:
            return None
        n = self.length(vec)
        if vec + 4 + n > self.n:
            raise IndexError(vec)
        return self.raw[vec + 4 : vec + 4 + n]

    def byte_span(self, vec: int | None) -> tuple[int, int]:
        """(start, length) of a vector of bytes; (0, 0) when absent."""
        if vec is None:
            return 0, 0
        n = self.length(vec)
        if vec + 4 + n > self.n:
            raise IndexError(vec)
        return vec + 4, n


# ---------------------------------------------------------------------------------------------
# Light objects: the subset of the object API (same attribute names) the graph needs.


class LiteBuffer:
    """A buffer's location; ``data`` is a zero-copy uint8 view made on first read."""

    __slots__ = ("_raw", "_start", "_len", "_view", "offset", "size", "external")

    def __init__(self, raw: bytes, start: int, length: int, offset: int, size: int) -> None:
        self._raw, self._start, self._len, self._view = raw, start, length, None
        self.offset, self.size = offset, size
        self.external = offset > 1 and size > 0
        if self.external:  # data kept after the flatbuffer, as parse_model reads it
            self._start, self._len = offset, size

    @property
    def data(self) -> np.ndarray | None:
        if not self._len and not self.external:
            return None
        if self._view is None:  # read-only (bytes): one view serves every reader
            self._view = np.frombuffer(self._raw, dtype=np.uint8, count=self._len,
                                       offset=self._start)
        return self._view

    @data.setter
    def data(self, value: np.ndarray | None) -> None:
        """Replaced data (``flatbuffer_io.remove_offline_plan`` empties a plan's buffer)."""
        self._raw = b"" if value is None else np.asarray(value, np.uint8).tobytes()
        self._start, self._len, self._view = 0, len(self._raw), None

    def has_data(self) -> bool:
        return self._len > 0


class LiteTensor:
    __slots__ = ("shape", "type", "buffer", "name", "isVariable", "sparsity", "externalBuffer")

    # Not read (no graph figure depends on them): the padding repair copies them onto the
    # tensors it adds when it edits a model read here (``candidate.read_safe_graph``).
    quantization = None
    shapeSignature = None  # noqa: N815 (the object API's name)

    def __init__(self, shape, type_, buffer, name, is_variable, sparsity, external) -> None:
        self.shape, self.type, self.buffer, self.name = shape, type_, buffer, name
        self.isVariable, self.sparsity, self.externalBuffer = is_variable, sparsity, external


class LiteOperator:
    """An operator; ``builtinOptions`` is unpacked by the generated code on first read."""

    __slots__ = ("opcodeIndex", "inputs", "outputs", "intermediates", "builtinOptionsType",
                 "_raw", "_options_pos", "_options", "_table", "_vt")

    def __init__(self, opcode, inputs, outputs, intermediates, options_type, raw, pos) -> None:
        self.opcodeIndex, self.inputs, self.outputs = opcode, inputs, outputs
        self.intermediates, self.builtinOptionsType = intermediates, options_type
        self._raw, self._options_pos, self._options, self._table = raw, pos, False, False
        self._vt = False

    @property
    def builtinOptions(self):  # noqa: N802 (the object API's name)
        if self._options is False:
            self._options = None
            if self._options_pos is not None and self.builtinOptionsType:
                self._options = _options(self._raw, self._options_pos, self.builtinOptionsType)
        return self._options

    @builtinOptions.setter
    def builtinOptions(self, value) -> None:  # noqa: N802
        """Set by ``options.drop_foreign_options`` (to None): the table is not read."""
        self._options, self._table = value, False

    @property
    def options_unpacked(self) -> bool:
        """Whether the options were unpacked in full (a field ``option`` could not read
        alone, or ``builtinOptions`` asked for): later ``option`` reads answer from that
        unpack, which reads a corrupt table as no options at all, where earlier reads of
        single fields may have answered."""
        return self._options is not False

    def option(self, name: str):
        """``getattr(self.builtinOptions, name, None)``, reading that one field through the
        generated accessor instead of unpacking the whole table (shape inference reads a few
        options of every operator of every candidate). A field the accessor cannot read
        alone (a nested table) or a table it cannot read is left to the full unpack."""
        if self._options is not False or self._options_pos is None:
            return getattr(self.builtinOptions, name, None)
        kind = self.builtinOptionsType
        plan = _SCALARS.get((kind, name), False)
        if plan is False:
            read = _FIELDS[(kind, name)] = _field_reader(kind, name)
            plan = _SCALARS[(kind, name)] = _scalar_plan(kind, read)
        if plan is not None:  # a scalar: the accessor's one read, straight from the bytes
            vt = self._vt
            if vt is False:
                vt = self._vt = _vtable(self._raw, self._options_pos)
            if vt is not None:
                slot, unpack, py_type, default = plan
                off = vt[slot] if slot < len(vt) else 0
                if not off:
                    return default
                try:
                    return py_type(unpack(self._raw, self._options_pos + off)[0])
                except struct.error:  # past the end: as the accessor, the full unpack
                    return getattr(self.builtinOptions, name, None)
        read = _FIELDS[(kind, name)]
        table = self._table
        if table is False:
            table = self._table = _accessor(self._raw, self._options_pos, kind)
        if read is None or table is None:
            return getattr(self.builtinOptions, name, None)
        try:
            value = read(table)
        except Exception:  # corrupt: as the full unpack reads it (None options)
            return getattr(self.builtinOptions, name, None)
        if not isinstance(value, _PLAIN):
            return getattr(self.builtinOptions, name, None)
        return value


class _FastTable(flatbuffers.table.Table):
    """flatbuffers' ``Table`` with ``Offset`` and ``Get`` (the generated accessors' hot path)
    reading with ``struct`` directly: the same values, and an error wherever the original
    raises one (offsets outside uint32 included)."""

    __slots__ = ()

    def Get(self, flags, off):  # noqa: N802 (flatbuffers' name)
        if not 0 <= off <= 0xFFFFFFFF:
            raise TypeError(f"offset {off} outside uint32")
        return flags.py_type(flags.packer_type.unpack_from(self.Bytes, off)[0])

    def Offset(self, vtableOffset):  # noqa: N802, N803 (flatbuffers' names)
        raw, pos = self.Bytes, self.Pos
        if not 0 <= pos <= 0xFFFFFFFF:
            raise TypeError(f"offset {pos} outside uint32")
        vtable = pos - _I32(raw, pos)[0]
        if not 0 <= vtable <= 0xFFFFFFFF:
            raise TypeError(f"offset {vtable} outside uint32")
        if vtableOffset < _U16(raw, vtable)[0]:
            return _U16(raw, vtable + vtableOffset)[0]
        return 0


_PLAIN = (int, float, bytes, str, np.ndarray, type(None))  # values option() returns as read
# (code, field) -> how its generated accessor reads a scalar (_scalar_plan), or None
_SCALARS: dict[tuple[int, str], tuple | None] = {}
_ACCESSORS: dict[int, type | None] = {}  # BuiltinOptions code -> generated table class
_FIELDS: dict[tuple[int, str], object] = {}  # (code, field) -> _field_reader's answer


def _accessor_class(kind: int):
    cls = _ACCESSORS.get(kind, False)
    if cls is False:
        names = {v: k for k, v in vars(schema.BuiltinOptions).items() if not k.startswith("_")}
        cls = _ACCESSORS[kind] = getattr(schema, names.get(kind, ""), None)
    return cls


def _field_reader(kind: int, name: str):
    """How the object API fills attribute ``name`` of options ``kind`` from the table: the
    generated accessor of a scalar, ``XAsNumpy`` of a vector unless ``XIsNone``, None for
    an attribute the object API does not have; None (the reader) when the class has no
    such accessor (the full unpack then answers)."""
    cls = _accessor_class(kind)
    field = name[:1].upper() + name[1:]
    if cls is None:
        return None
    is_none, as_numpy = getattr(cls, field + "IsNone", None), getattr(cls, field + "AsNumpy", None)
    if is_none is not None and as_numpy is not None:
        return lambda table: None if is_none(table) else as_numpy(table)
    unpacked = getattr(schema, cls.__name__ + "T", None)
    if unpacked is not None and name not in vars(unpacked()):
        return lambda table: None  # the object API has no such attribute: None, unpacked or not
    return getattr(cls, field, None)


class _Probe:
    """A stand-in for an accessor's table that records how it reads (``_scalar_plan``)."""

    __slots__ = ("present", "offsets", "gets", "Pos")

    def __init__(self, present: bool) -> None:
        self.present, self.offsets, self.gets, self.Pos = present, [], [], 1000

    def Offset(self, vtable_offset):  # noqa: N802 (flatbuffers' name)
        self.offsets.append(vtable_offset)
        return 8 if self.present else 0

    def Get(self, flags, off):  # noqa: N802
        self.gets.append((flags, off))
        return flags.py_type(1)


def _scalar_plan(kind: int, read) -> tuple | None:
    """How the generated accessor ``read`` of options ``kind`` reads its field, when it is
    a plain scalar read: one ``Offset`` of a vtable slot, then its default when absent or
    one ``Get`` of a number at the table's position plus that offset. Found by running
    the accessor on stand-in tables; (slot, unpack, type, default), or None for any
    other accessor (``option`` then calls it as it is)."""
    cls = _accessor_class(kind)
    if cls is None or read is None or getattr(read, "__name__", "") == "<lambda>":
        return None
    try:
        absent, present = cls(), cls()
        absent._tab, present._tab = _Probe(False), _Probe(True)
        default, value = read(absent), read(present)
    except Exception:  # noqa: BLE001 -- not a plain scalar accessor
        return None
    probe, got = absent._tab, present._tab
    if len(probe.offsets) != 1 or probe.gets or got.offsets != probe.offsets \
            or len(got.gets) != 1 or not isinstance(default, int | float):
        return None
    flags, off = got.gets[0]
    packer = getattr(flags, "packer_type", None)
    want = flags.py_type(1) if packer is not None else None
    vt_off = probe.offsets[0]
    if off != 1008 or packer is None or value != want or type(value) is not type(want) \
            or vt_off < 4 or vt_off % 2:
        return None
    return (vt_off - 4) // 2, packer.unpack_from, flags.py_type, default


def _vtable(raw: bytes, pos: int) -> tuple[int, ...] | None:
    """The field offsets of the table at ``pos`` as ``_FastTable.Offset`` reads them one by
    one, or None where it would raise or a vtable is odd (then the accessors read)."""
    try:
        vt = pos - _I32(raw, pos)[0] if pos >= 0 else -1
        if vt < 0:
            return None
        size = _U16(raw, vt)[0]
        if size < 4 or size % 2:
            return None
        return struct.unpack_from(f"<{(size - 4) // 2}H", raw, vt + 4)
    except struct.error:
        return None


def _accessor(raw: bytes, pos: int, kind: int):
    """The generated accessor of the options table at ``pos`` (None for an unknown kind)."""
    cls = _accessor_class(kind)
    if cls is None:
        return None
    table = cls()
    table._tab = _FastTable(raw, pos)
    return table


def _options(raw: bytes, pos: int, kind: int):
    """The options table at ``pos`` unpacked by the generated code (None when corrupt)."""
    try:
        return schema.BuiltinOptionsCreator(kind, flatbuffers.table.Table(raw, pos))
    except Exception:  # a corrupt options table reads as absent options
        return None


class LiteSubGraph:
    __slots__ = ("tensors", "operators", "inputs", "outputs", "name")

    def __init__(self, tensors, operators, inputs, outputs, name) -> None:
        self.tensors, self.operators = tensors, operators
        self.inputs, self.outputs, self.name = inputs, outputs, name


class LiteOperatorCode:
    __slots__ = ("builtinCode", "deprecatedBuiltinCode", "customCode", "version")

    def __init__(self, builtin: int, deprecated: int, custom: bytes | None, version: int) -> None:
        self.builtinCode, self.deprecatedBuiltinCode = builtin, deprecated
        self.customCode, self.version = custom, version


class LiteMetadata:
    __slots__ = ("name", "buffer")

    def __init__(self, name: bytes | None, buffer: int) -> None:
        self.name, self.buffer = name, buffer


class LiteModel:
    """What :func:`read_lite` returns: ``ModelT``'s attribute names, graph fields only."""

    __slots__ = ("version", "operatorCodes", "subgraphs", "buffers", "metadata")

    def __init__(self, version, codes, subgraphs, buffers, metadata) -> None:
        self.version, self.operatorCodes, self.subgraphs = version, codes, subgraphs
        self.buffers, self.metadata = buffers, metadata


# ---------------------------------------------------------------------------------------------
# Reading


_EMPTY: tuple[int, ...] = ()


def _tensor(tb: _Tables, pos: int) -> LiteTensor:
    # The most numerous table: its scalars are read inline (``_Tables.scalar``'s reads).
    raw, f = tb.raw, tb.fields(pos)
    o_type, o_buffer, o_var, o_ext = f[T_TYPE], f[T_BUFFER], f[T_VARIABLE], f[T_EXTERNAL]
    return LiteTensor(
        tb.ints(tb.target(pos, f, T_SHAPE)),
        _I8(raw, pos + o_type)[0] if o_type else 0,
        _U32(raw, pos + o_buffer)[0] if o_buffer else 0,
        tb.string(tb.target(pos, f, T_NAME)),
        bool(_U8(raw, pos + o_var)[0]) if o_var else False,
        True if f[T_SPARSITY] else None,
        _U32(raw, pos + o_ext)[0] if o_ext else 0,
    )


def _operator(tb: _Tables, pos: int) -> LiteOperator:
    f = tb.fields(pos)
    ins = tb.ints(tb.target(pos, f, O_INPUTS))
    outs = tb.ints(tb.target(pos, f, O_OUTPUTS))
    return LiteOperator(
        tb.scalar(_U32, pos, f, O_OPCODE),
        _EMPTY if ins is None else ins,
        _EMPTY if outs is None else outs,
        tb.ints(tb.target(pos, f, O_INTERMEDIATES)),
        tb.scalar(_U8, pos, f, O_OPTIONS_TYPE),
        tb.raw,
        tb.target(pos, f, O_OPTIONS),
    )


def _subgraph(tb: _Tables, pos: int) -> LiteSubGraph:
    f = tb.fields(pos)
    ins = tb.ints(tb.target(pos, f, SG_INPUTS))
    outs = tb.ints(tb.target(pos, f, SG_OUTPUTS))
    return LiteSubGraph(
        [_tensor(tb, p) for p in tb.tables(tb.target(pos, f, SG_TENSORS))],
        [_operator(tb, p) for p in tb.tables(tb.target(pos, f, SG_OPERATORS))],
        _EMPTY if ins is None else ins,
        _EMPTY if outs is None else outs,
        tb.string(tb.target(pos, f, SG_NAME)),
    )


def _code(tb: _Tables, pos: int) -> LiteOperatorCode:
    f = tb.fields(pos)
    return LiteOperatorCode(
        tb.scalar(_I32, pos, f, C_BUILTIN), tb.scalar(_I8, pos, f, C_DEPRECATED),
        tb.string(tb.target(pos, f, C_CUSTOM)), tb.scalar(_I32, pos, f, C_VERSION, 1),
    )


def _buffer(tb: _Tables, pos: int) -> LiteBuffer:
    f = tb.fields(pos)
    start, length = tb.byte_span(tb.target(pos, f, B_DATA))
    return LiteBuffer(tb.raw, start, length, tb.scalar(_U64, pos, f, B_OFFSET),
                      tb.scalar(_U64, pos, f, B_SIZE))


def _metadata(tb: _Tables, pos: int) -> LiteMetadata:
    f = tb.fields(pos)
    return LiteMetadata(tb.string(tb.target(pos, f, MD_NAME)), tb.scalar(_U32, pos, f, MD_BUFFER))


def _read(tb: _Tables, raw: bytes) -> LiteModel:
    root = _U32(raw, 0)[0]
    f = tb.fields(root)
    version = tb.scalar(_U32, root, f, M_VERSION)
    return LiteModel(
        version,
        [_code(tb, p) for p in tb.tables(tb.target(root, f, M_CODES))],
        [_subgraph(tb, p) for p in tb.tables(tb.target(root, f, M_SUBGRAPHS))],
        [_buffer(tb, p) for p in tb.tables(tb.target(root, f, M_BUFFERS))],
        [_metadata(tb, p) for p in tb.tables(tb.target(root, f, M_METADATA))],
    )


def _from_fields(raw: bytes, fields: tuple) -> LiteModel:
    """The light objects of ``_searchcore.lite_tables``'s tuples (the fields ``_read``
    reads, in its order)."""
    version, codes, subgraphs, buffers, metadata = fields
    return LiteModel(
        version,
        [LiteOperatorCode(*c) for c in codes],
        [LiteSubGraph([LiteTensor(*t) for t in tensors],
                      [LiteOperator(o[0], o[1], o[2], o[3], o[4], raw, o[5]) for o in ops],
                      ins, outs, name)
         for tensors, ops, ins, outs, name in subgraphs],
        [LiteBuffer(raw, *b) for b in buffers],
        [LiteMetadata(*m) for m in metadata],
    )


def read_lite(raw: bytes, source: str = "<bytes>", checked: bool = False) -> LiteModel:
    """Read the graph fields of a ``.tflite`` flatbuffer; raises ``ModelError`` (one line,
    naming ``source``) for exactly the inputs ``parse_model`` rejects for those fields.

    ``checked``: the caller has already run every check of the reader's (``fastpeak``'s
    compiled reader accepts only bytes that pass them all), so they are not run again."""
    if not checked:
        check_header(raw, source)
    tb = _Tables(raw)
    try:
        if not checked:
            check_table_counts(raw, source)
        fields = _compiled_tables(raw) if COMPILED and not compiled_off() else None
        model = _from_fields(raw, fields) if fields is not None else _read(tb, raw)
    except ModelError:
        raise
    except Exception as exc:  # the flat accessors too raise anything on corrupt input
        kind = type(exc).__name__
        raise ModelError(f"{source}: corrupt or truncated flatbuffer ({kind})") from None
    if not checked:
        check_vector_entries(model, source)
        check_model(model, raw, source)
    else:  # what check_model ends with, which is how the runtimes read options
        drop_foreign_options(model)
    return model
