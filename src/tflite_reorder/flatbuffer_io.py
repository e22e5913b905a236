"""Reading and writing ``.tflite`` flatbuffers.

The object API of ``ai_edge_litert.schema_py_generated`` is used both ways so that every
field we do not understand survives a round trip. Two things the generated code gets wrong
for microcontrollers are fixed here: buffer data is placed at 16-byte file offsets (the
schema's ``force_align: 16``, ignored by every generated Python ``Pack``), and buffers kept
outside the flatbuffer (``offset``/``size``, models over 2 GB) are carried along.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import stat
import struct
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import flatbuffers
import flatbuffers.table
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from . import fullread
from .dtypes import BUFFER_ALIGNMENT, FIXED_SIZE, align
from .options import drop_foreign_options
from .tensors import text

FILE_IDENTIFIER = b"TFL3"
SUPPORTED_SCHEMA_VERSION = 3


MAX_MESSAGE = 1000  # characters of a ModelError message (names in a model can be huge)


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` as one printable line: control and other unprintable characters escaped
    (a hostile model's tensor names hold any bytes), at most ``limit`` characters."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


class ModelError(Exception):
    """A model that cannot be read, understood or written; the message is one line
    (``one_line``), whatever the model's names hold."""

    def __init__(self, *args: object) -> None:
        if args and isinstance(args[0], str):
            args = (one_line(args[0]), *args[1:])
        super().__init__(*args)


@dataclass
class LoadedModel:
    """A parsed model plus where it came from (for messages) and its original bytes."""

    model: schema.ModelT
    raw: bytes
    source: str


# Size limits (documented in docs/limits.md). A model for a microcontroller fits in its
# flash, far below these; above them a file is refused before it is read or unpacked, so a
# sparse 30 GB file or a small file whose table vectors repeat one entry a million times
# cannot exhaust memory.
MAX_FILE_BYTES = 1 << 30  # 1 GiB
MAX_TENSORS = 300_000  # all subgraphs together
MAX_OPERATORS = 300_000
MAX_BUFFERS = 300_000
MAX_SUBGRAPHS = 10_000
MAX_VECTOR_ENTRIES = 10_000_000  # tensor indices of all operators plus all shape dims


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


def read_bytes(path: str | os.PathLike) -> bytes:
    """Read a regular file of at most ``MAX_FILE_BYTES``; every other case is a one-line
    ModelError raised before any byte is read.

    The file is opened non-blocking, so a FIFO without a writer cannot hang the open, and
    checked with ``fstat`` on that descriptor (no race between the check and the read).

    Raises ``ModelError`` for a missing, unreadable or directory path.
    """
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise ModelError(f"{p}: no such file") from None
    except PermissionError:
        raise ModelError(f"{p}: permission denied") from None
    except IsADirectoryError:
        raise ModelError(f"{p}: is a directory, not a .tflite file") from None
    except OSError as exc:
        raise ModelError(f"{p}: cannot read ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ModelError(f"{p}: is a directory, not a .tflite file")
        if not stat.S_ISREG(st.st_mode):
            raise ModelError(f"{p}: is {_file_kind(st.st_mode)}, not a regular .tflite file")
        if st.st_size > MAX_FILE_BYTES:
            raise ModelError(f"{p}: file is {st.st_size} bytes, larger than the limit of "
                             f"{MAX_FILE_BYTES} bytes for a microcontroller model")
        return _read_fd(fd, p, st.st_size)
    except OSError as exc:
        raise ModelError(f"{p}: cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def _read_fd(fd: int, p: Path, size: int) -> bytes:
    """At most ``MAX_FILE_BYTES`` bytes from ``fd`` (a file that grows while read is cut)."""
    chunks, total = [], 0
    while True:
        chunk = os.read(fd, min(max(size - total, 0) + 1, MAX_FILE_BYTES + 1 - total) or 1)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > MAX_FILE_BYTES:
            raise ModelError(f"{p}: file grew past the limit of {MAX_FILE_BYTES} bytes "
                             f"while being read")


def check_header(raw: bytes, source: str) -> None:
    """Reject bytes that cannot be a TFLite flatbuffer before any table is read.

    Raises ``ModelError`` naming ``source``.
    """
    if len(raw) == 0:
        raise ModelError(f"{source}: empty file (0 bytes)")
    if len(raw) < 8:
        raise ModelError(f"{source}: too short to be a .tflite model ({len(raw)} bytes)")
    if raw[4:8] != FILE_IDENTIFIER:
        raise ModelError(
            f"{source}: not a TFLite flatbuffer (file identifier {raw[4:8]!r}, expected b'TFL3')"
        )
    root = int.from_bytes(raw[0:4], "little")
    if root < 8 or root + 4 > len(raw):
        raise ModelError(f"{source}: corrupt flatbuffer (root offset {root} outside the file)")


def check_model(model, raw: bytes, source: str) -> None:
    """The checks every reader of a model runs (``parse_model`` and ``fastread``): schema
    version, indices inside their tables, external data inside the file, constant sizes;
    then an operator's options table of another operator's type is cleared, as the
    runtimes read it (``options.drop_foreign_options``).

    ``model`` is a ``ModelT`` or anything with its attribute names (``fastread.LiteModel``).

    Raises ``ModelError`` naming ``source``.
    """
    if model.version != SUPPORTED_SCHEMA_VERSION:
        raise ModelError(
            f"{source}: unsupported schema version {model.version} "
            f"(expected {SUPPORTED_SCHEMA_VERSION})"
        )
    if not model.subgraphs:
        raise ModelError(f"{source}: model has no subgraphs")
    _check_indices(model, source)
    for i, buf in enumerate(model.buffers or []):
        if _is_external(buf) and buf.offset + buf.size > len(raw):
            raise ModelError(f"{source}: buffer {i} points past the end of the file")
    _check_constant_sizes(model, source)
    drop_foreign_options(model)


def parse_model(raw: bytes, source: str = "<bytes>") -> LoadedModel:
    """Parse flatbuffer bytes, rejecting anything that is not a schema-v3 TFLite model.

    Raises ``ModelError`` (one line, naming ``source``) for anything it refuses.
    """
    check_header(raw, source)
    try:
        check_table_counts(raw, source)
        with _fast_tables(raw):
            model = fullread.unpack_model(raw) or schema.ModelT.InitFromPackedBuf(raw, 0)
    except ModelError:
        raise
    except Exception as exc:  # the generated reader raises anything on corrupt input
        kind = type(exc).__name__
        raise ModelError(f"{source}: corrupt or truncated flatbuffer ({kind})") from None
    if model.subgraphs:
        _normalize_vectors(model)
        check_vector_entries(model, source)
    check_model(model, raw, source)
    _load_external_buffers(model, raw)
    _load_large_custom_options(model, raw, source)
    return LoadedModel(model=model, raw=bytes(raw), source=source)


_SOFFSET = struct.Struct("<i").unpack_from
_VOFFSET = struct.Struct("<H").unpack_from
_UOFFSET = struct.Struct("<I").unpack_from


class _Vtables:
    """The vtables of the buffer being unpacked, each decoded once: the object API reads
    every field of every table through ``Offset`` (33 reads per operator and tensor), and
    a model's tables share a handful of vtables."""

    buf: object = None  # the buffer ``_fast_tables`` unpacks; other buffers are not cached
    fields: dict[int, tuple[int, ...]] = {}


def _offset(self, slot: int) -> int:
    buf, pos = self.Bytes, self.Pos
    vtable = pos - _SOFFSET(buf, pos)[0]
    if buf is _Vtables.buf:
        fields = _Vtables.fields.get(vtable)
        if fields is None:
            fields = _vtable_fields(buf, vtable)
        if fields is not None:
            k = (slot - 4) >> 1
            return fields[k] if 0 <= k < len(fields) else 0
    return _VOFFSET(buf, vtable + slot)[0] if slot < _VOFFSET(buf, vtable)[0] else 0


def _vtable_fields(buf, vtable: int) -> tuple[int, ...] | None:
    """Every field entry of one vtable (what ``Offset`` reads for slot 4 + 2k), or None
    when the vtable runs past the buffer (then each read fails or not as the library's)."""
    try:
        size = _VOFFSET(buf, vtable)[0]
        n = max(0, (size - 3) // 2)  # entries at vtable + 4 + 2k below vtable + size
        fields = struct.unpack_from(f"<{n}H", buf, vtable + 4) if vtable >= 0 else None
    except struct.error:
        return None
    if fields is not None:
        _Vtables.fields[vtable] = fields
    return fields


def _get(self, flags, off: int):
    return flags.py_type(flags.packer_type.unpack_from(self.Bytes, off)[0])


def _vector(self, off: int) -> int:
    off += self.Pos
    return off + _UOFFSET(self.Bytes, off)[0] + 4


def _vector_len(self, off: int) -> int:
    off += self.Pos
    off += _UOFFSET(self.Bytes, off)[0]
    return _UOFFSET(self.Bytes, off)[0]


def _indirect(self, off: int) -> int:
    return off + _UOFFSET(self.Bytes, off)[0]


def _string(self, off: int) -> bytes:
    buf = self.Bytes
    off += _UOFFSET(buf, off)[0]
    return bytes(buf[off + 4 : off + 4 + _UOFFSET(buf, off)[0]])


_FAST_TABLE = {"Offset": _offset, "Get": _get, "Vector": _vector, "VectorLen": _vector_len,
               "Indirect": _indirect, "String": _string}
_fast_lock = threading.Lock()


@contextlib.contextmanager
def _fast_tables(buf: bytes) -> Iterator[None]:
    """``flatbuffers.table.Table``'s readers without their per-call argument checks.

    The generated object API reads every field through these methods; the library's
    versions validate each offset and wrap the buffer in a new memoryview per call, which
    is most of the time of unpacking a 100,000-tensor model. Same reads, same results
    (``struct.unpack_from`` either way); installed only while a model is unpacked.
    """
    table = flatbuffers.table.Table
    with _fast_lock:
        saved = {name: getattr(table, name) for name in _FAST_TABLE}
        for name, fn in _FAST_TABLE.items():
            setattr(table, name, fn)
        _Vtables.buf, _Vtables.fields = buf, {}
        try:
            yield
        finally:
            _Vtables.buf, _Vtables.fields = None, {}
            for name, fn in saved.items():
                setattr(table, name, fn)


def check_table_counts(raw: bytes, source: str) -> None:
    """Refuse models with more tables than the documented limits before unpacking them.

    The object API makes one Python object per vector entry, and entries may all point at
    one table: a few megabytes of file can stand for millions of objects. The counts are
    read through the flat accessors, which cost nothing per entry.
    """
    root = schema.Model.GetRootAs(raw, 0)
    n_sub = root.SubgraphsLength()
    counts = {"subgraphs": (n_sub, MAX_SUBGRAPHS), "buffers": (root.BuffersLength(), MAX_BUFFERS)}
    if n_sub <= MAX_SUBGRAPHS:
        tensors = operators = 0
        for i in range(n_sub):
            sg = root.Subgraphs(i)
            tensors += sg.TensorsLength()
            operators += sg.OperatorsLength()
        counts["tensors"] = (tensors, MAX_TENSORS)
        counts["operators"] = (operators, MAX_OPERATORS)
    for what, (n, limit) in counts.items():
        if n > limit:
            raise ModelError(f"{source}: model has {n} {what}, more than the limit of {limit}")


def check_vector_entries(model, source: str) -> None:
    """Bound the total length of operator tensor lists and tensor shapes (unpacked as
    views, they cost nothing until a later stage turns them into Python tuples).

    ``model`` is a ``ModelT`` or anything with its attribute names (``fastread``).
    """
    def n(vec) -> int:
        return 0 if vec is None else len(vec)

    total = 0
    for sg in model.subgraphs or []:
        for op in sg.operators or []:
            total += n(op.inputs) + n(op.outputs) + n(getattr(op, "intermediates", None))
        for t in sg.tensors or []:
            total += n(t.shape) + n(getattr(t, "shapeSignature", None))
    if total > MAX_VECTOR_ENTRIES:
        raise ModelError(f"{source}: model's operator and shape vectors hold {total} entries, "
                         f"more than the limit of {MAX_VECTOR_ENTRIES}")


def _is_external(buf) -> bool:
    """Data kept after the flatbuffer (``Buffer.offset/size``, models over 2 GB)."""
    return buf.offset > 1 and buf.size > 0


def _check_constant_sizes(model: schema.ModelT, source: str) -> None:
    """Constant data must fill exactly its tensor's shape, as TFLite's own verifier demands
    (``Tensor … requires N bytes, but is allocated with M bytes buffer``): kernels and
    shape inference read it as an array of that shape."""
    buffers = model.buffers or []
    for s, sg in enumerate(model.subgraphs):
        for t, tensor in enumerate(sg.tensors):
            size = FIXED_SIZE.get(tensor.type)
            buf = buffers[tensor.buffer] if 0 < tensor.buffer < len(buffers) else None
            held = _data_bytes(buf)
            if size is None or held == 0 or tensor.sparsity is not None:
                continue
            shape = [int(d) for d in (tensor.shape if tensor.shape is not None else ())]
            if any(d < 0 for d in shape):
                continue
            need = size * math.prod(shape)
            if need != held:
                raise ModelError(
                    f"{source}: subgraph {s} tensor {t} needs {need} bytes of constant data "
                    f"for shape {shape}, but its buffer {tensor.buffer} holds {held}"
                )


def _data_bytes(buf) -> int:
    """Bytes of constant data a buffer holds, inline or external (0 for no buffer)."""
    if buf is None:
        return 0
    if _is_external(buf):
        return int(buf.size)
    return 0 if buf.data is None else len(buf.data)


def _normalize_vectors(model: schema.ModelT) -> None:
    """Absent tensor-index vectors (writers may omit empty ones) become empty arrays, so
    every later stage can iterate and index them without a None check."""
    empty = np.zeros(0, dtype=np.int32)
    for sg in model.subgraphs:
        sg.tensors = sg.tensors or []
        sg.operators = sg.operators or []
        for name in ("inputs", "outputs"):
            if getattr(sg, name) is None:
                setattr(sg, name, empty.copy())
        for op in sg.operators:
            for name in ("inputs", "outputs"):
                if getattr(op, name) is None:
                    setattr(op, name, empty.copy())


def _check_indices(model: schema.ModelT, source: str) -> None:
    """Reject indices outside their tables, naming the file: every later stage indexes lists
    with them (shape inference, hazards and the graph all run on the object tree)."""
    n_codes, n_bufs = len(model.operatorCodes or []), len(model.buffers or [])

    def bad(where: str, what: str, i: int, n: int) -> ModelError:
        return ModelError(f"{source}: {where} refers to {what} {i}, but there are {n}")

    for k, entry in enumerate(model.metadata or []):
        if not 0 <= entry.buffer < n_bufs:
            raise bad(f"metadata entry {k}", "buffer", entry.buffer, n_bufs)
    for s, sg in enumerate(model.subgraphs):
        nt = len(sg.tensors or [])
        for t, tensor in enumerate(sg.tensors or []):
            if not 0 <= tensor.buffer < max(n_bufs, 1):
                raise bad(f"subgraph {s} tensor {t}", "buffer", tensor.buffer, n_bufs)
        for what, vec in (("inputs", sg.inputs), ("outputs", sg.outputs)):
            for t in vec if vec is not None else ():
                if not 0 <= t < nt:
                    raise bad(f"subgraph {s} {what}", "tensor", int(t), nt)
        for i, op in enumerate(sg.operators or []):
            if not 0 <= op.opcodeIndex < n_codes:
                raise bad(f"subgraph {s} operator {i}", "operator code", op.opcodeIndex, n_codes)
            for vec in (op.inputs, op.outputs, op.intermediates):
                for t in vec if vec is not None else ():
                    if not -1 <= t < nt:
                        raise bad(f"subgraph {s} operator {i}", "tensor", int(t), nt)


T = TypeVar("T")
_reads = threading.local()  # .memo: {(what, bytes): value or ModelError} inside shared_reads


@contextlib.contextmanager
def shared_reads() -> Iterator[None]:
    """Within the block, ``read_only`` and ``derived`` compute each result once per model.

    Verification builds an interpreter per runtime, per model and per input case, and
    every one is preceded by the same read-only checks (``preflight``, arena sizing): about
    45 parses of two or three distinct models per run, 28 s for 1,500 nested IFs. Here
    each model is parsed once. Results are dropped when the outermost block ends (a tree of
    a large model is big); nested blocks share the outer one's. Per thread.
    """
    if getattr(_reads, "memo", None) is not None:
        yield
        return
    _reads.memo = {}
    try:
        yield
    finally:
        _reads.memo = None


def derived(data: bytes, what: str, compute: Callable[[bytes], T]) -> T:
    """``compute(data)``, remembered under ``what`` for the same bytes inside
    ``shared_reads`` (a ``ModelError`` it raises is remembered and raised again); outside
    it simply ``compute(data)``. ``compute`` must depend on nothing but the bytes."""
    memo = getattr(_reads, "memo", None)
    if memo is None:
        return compute(data)
    key = (what, bytes(data))
    if key not in memo:
        try:
            memo[key] = compute(key[1])
        except ModelError as exc:
            memo[key] = exc
    found = memo[key]
    if isinstance(found, ModelError):
        raise type(found)(*found.args) from None
    return found


def read_only(data: bytes) -> schema.ModelT:
    """The object tree of ``data`` for callers that only read it, parsed once per model
    inside ``shared_reads``: never edit it. Raises ``ModelError`` as ``parse_model``."""
    return derived(data, "tree", lambda raw: parse_model(raw).model)


def load_model(model: str | os.PathLike | bytes | LoadedModel) -> LoadedModel:
    """Accept a path, raw bytes or an already loaded model (the API's one entry point).

    Raises ``ModelError`` as ``read_bytes`` and ``parse_model`` do.
    """
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, bytes | bytearray | memoryview):
        return parse_model(bytes(model))
    return parse_model(read_bytes(model), str(model))


def _load_external_buffers(model: schema.ModelT, raw: bytes) -> None:
    """Point data stored after the flatbuffer (``Buffer.offset/size``) into the object
    (``check_model`` has checked it lies inside the file).

    The data is a read-only view of ``raw``; buffers naming the same byte range, inline or
    external, share one array, so the writer stores that range once (a thousand references
    to one weight stay one weight). The writer puts external data back after the new
    flatbuffer; the absolute offsets change.
    """
    views: dict[tuple[int, int], np.ndarray] = {}
    inline: dict[tuple[int, int], np.ndarray] = {}
    for buf in model.buffers or []:
        buf.external = _is_external(buf)
        if buf.external:
            buf.data = _external_view(raw, buf.offset, buf.size, views, "buffer")
        elif isinstance(buf.data, np.ndarray) and len(buf.data):
            key = (buf.data.__array_interface__["data"][0], len(buf.data))
            buf.data = inline.setdefault(key, buf.data)


def _external_view(raw: bytes, offset: int, size: int, views: dict, what: str) -> np.ndarray:
    if offset + size > len(raw):
        raise ModelError(f"{what} points past the end of the file")
    key = (offset, size)
    if key not in views:
        views[key] = np.frombuffer(raw, dtype=np.uint8, count=size, offset=offset)
    return views[key]


def _load_large_custom_options(model: schema.ModelT, raw: bytes, source: str) -> None:
    """Custom options kept outside the flatbuffer (``large_custom_options_offset/size``)
    are carried as data, like external buffers: their offsets change when written."""
    views: dict[tuple[int, int], np.ndarray] = {}
    for s, sg in enumerate(model.subgraphs):
        for i, op in enumerate(sg.operators):
            if op.largeCustomOptionsSize > 0:
                op.largeCustomOptions = _external_view(
                    raw, op.largeCustomOptionsOffset, op.largeCustomOptionsSize, views,
                    f"{source}: subgraph {s} operator {i}'s large custom options")


# ---------------------------------------------------------------------------------------------
# Writing


def _as_bytes(data) -> bytes:
    return np.asarray(data, dtype=np.uint8).tobytes()


class _Packer:
    """Packs one model; each distinct data array is written once, 16-byte aligned.

    Buffers whose ``data`` is the same array object (the reader makes buffers that name
    one byte range of the input share one array) point at one data vector, so a model
    that references one weight a thousand times stays the size of one weight.
    """

    def __init__(self, external_offsets: dict[int, int]) -> None:
        self.external_offsets = external_offsets
        self.vectors: dict[int, int] = {}  # id(data array) -> offset of its packed vector

    def data_vector(self, builder: flatbuffers.Builder, data) -> int:
        key = id(data)
        if key not in self.vectors:
            raw = _as_bytes(data)
            builder.StartVector(1, len(raw), BUFFER_ALIGNMENT)
            builder.head = builder.head - len(raw)
            builder.Bytes[builder.head : builder.head + len(raw)] = raw
            self.vectors[key] = builder.EndVector()
        return self.vectors[key]


class _AlignedBuffer(schema.BufferT):
    """A BufferT whose Pack aligns its data to 16 bytes; external data gets a new offset."""

    def __init__(self, src: schema.BufferT, external_offset: int, packer: _Packer) -> None:
        super().__init__()
        self.packer = packer
        if getattr(src, "external", False):
            self.payload, self.offset, self.size = None, external_offset, len(src.data)
        else:
            self.payload, self.offset, self.size = src.data, src.offset, src.size

    def Pack(self, builder: flatbuffers.Builder) -> int:  # noqa: N802 (generated API name)
        data_off = None
        if self.payload is not None:
            data_off = self.packer.data_vector(builder, self.payload)
        schema.BufferStart(builder)
        if data_off is not None:
            schema.BufferAddData(builder, data_off)
        schema.BufferAddOffset(builder, self.offset)
        schema.BufferAddSize(builder, self.size)
        return schema.BufferEnd(builder)


class _LeanBuilder(flatbuffers.Builder):
    """``flatbuffers.Builder`` with its per-scalar hot path in one call instead of five.

    The generated ``Pack`` writes every field through ``PrependSlot`` (range check of value
    and default, ``Prepend``, ``Prep``, ``Place``, another range check, ``encode.Write``,
    ``Slot``), which is most of the time of packing a 50,000-operator model. These do the
    same writes in the same order (same bytes, ``test_flatbuffer_io`` compares them with the
    library's) and raise the same ``TypeError`` for a value outside its type's range.
    """

    def PrependSlot(self, flags, o, x, d):  # noqa: N802 (the library's API names)
        if x != d or (self.forceDefaults and d is not None):
            lo, hi = flags.min_val, flags.max_val
            if lo is not None and not lo <= x <= hi:
                raise TypeError(f"bad number {x} for type {flags.name}")
            width = flags.bytewidth
            self.Prep(width, 0)
            head = self.head - width
            self.head = head
            flags.packer_type.pack_into(self.Bytes, head, x)
            self.current_vtable[o] = len(self.Bytes) - head

    def PrependUOffsetTRelativeSlot(self, o, x, d):  # noqa: N802
        if x != d or self.forceDefaults:
            self.PrependUOffsetTRelative(x)
            self.current_vtable[o] = len(self.Bytes) - self.head

    def PrependUOffsetTRelative(self, off):  # noqa: N802
        self.Prep(4, 0)
        here = len(self.Bytes) - self.head
        if not off <= here:
            raise flatbuffers.builder.OffsetArithmeticError(
                "flatbuffers: Offset arithmetic error.")
        head = self.head - 4
        self.head = head
        _PACK_U32(self.Bytes, head, here - off + 4)

    # A table's vtable offset is signed, but its one use (``WriteVtable``'s placeholder,
    # which it overwrites with the signed value) writes here - off + 4 with
    # off <= here, the same 4 bytes as unsigned: one method serves both.
    PrependSOffsetTRelative = PrependUOffsetTRelative  # noqa: N815

    def Prep(self, size, additionalBytes):  # noqa: N802, N803
        if size > self.minalign:
            self.minalign = size
        head = self.head
        buf_len = len(self.Bytes)
        pad = (~(buf_len - head + additionalBytes) + 1) & (size - 1)
        needed = pad + size + additionalBytes
        while head < needed:
            old = buf_len
            self.GrowByteBuffer()
            buf_len = len(self.Bytes)
            head += buf_len - old
        if pad > 0:
            self.Bytes[head - pad : head] = bytes(pad)
            head -= pad
        self.head = head

    def StartVector(self, elemSize, numElems, alignment):  # noqa: N802, N803
        self.assertNotNested()
        self.nested = True
        self.vectorNumElems = numElems
        self.Prep(4, elemSize * numElems)
        self.Prep(alignment, elemSize * numElems)
        return len(self.Bytes) - self.head

    def EndVector(self, numElems=None):  # noqa: N802, N803
        if numElems is not None:  # deprecated argument: the library's checks
            return super().EndVector(numElems)
        self.assertNested()
        self.nested = False
        n = self.vectorNumElems
        if not 0 <= n <= 0xFFFFFFFF:
            raise TypeError(f"bad number {n} for type uint32")
        head = self.head - 4
        self.head = head
        _PACK_U32(self.Bytes, head, n)
        self.vectorNumElems = None
        return len(self.Bytes) - head

    def CreateNumpyVector(self, x):  # noqa: N802
        if not isinstance(x, np.ndarray) or x.dtype.kind not in "biuf" or x.ndim > 1:
            return super().CreateNumpyVector(x)  # the library's error for it
        self.StartVector(x.itemsize, x.size, x.dtype.alignment)
        payload = (x if x.dtype.str[0] == "<" else x.byteswap(inplace=False)).tobytes(order="C")
        head = self.head - len(payload)
        self.head = head
        self.Bytes[head : head + len(payload)] = payload
        self.vectorNumElems = x.size
        return self.EndVector()

    def WriteVtable(self):  # noqa: N802
        """The library's ``WriteVtable`` (same vtable, same deduplication, same bytes)."""
        self.PrependSOffsetTRelative(0)
        object_offset = len(self.Bytes) - self.head
        vtable = self.current_vtable
        key = []
        trim = True
        for elem in reversed(vtable):
            if elem == 0:
                if trim:
                    continue
            else:
                elem = object_offset - elem
                trim = False
            key.append(elem)
        object_size = object_offset - self.objectEnd
        key.append(object_size)
        key = tuple(key)
        found = self.vtables.get(key)
        if found is None:
            # written back to front: fields (trailing empty ones trimmed), object size,
            # vtable size; VOffsets need 2-byte alignment, which the SOffset above kept
            fields = key[:-1]
            for off in fields:
                self._prepend_u16(off)
            self._prepend_u16(object_size)
            self._prepend_u16((len(fields) + 2) * 2)
            object_start = len(self.Bytes) - object_offset
            _PACK_I32(self.Bytes, object_start, (len(self.Bytes) - self.head) - object_offset)
            self.vtables[key] = len(self.Bytes) - self.head
        else:
            object_start = len(self.Bytes) - object_offset
            self.head = object_start
            _PACK_I32(self.Bytes, self.head, found - object_offset)
        self.current_vtable = None
        return object_offset

    def _prepend_u16(self, x: int) -> None:
        if not 0 <= x <= 0xFFFF:
            raise TypeError(f"bad number {x} for type uint16")
        self.Prep(2, 0)
        head = self.head - 2
        self.head = head
        _PACK_U16(self.Bytes, head, x)


_PACK_U32 = struct.Struct("<I").pack_into
_PACK_I32 = struct.Struct("<i").pack_into
_PACK_U16 = struct.Struct("<H").pack_into


try:  # TensorT.Pack and OperatorT.Pack in C (the same bytes; _fastwrite.c)
    from ._searchcore import pack_operator as _pack_operator
    from ._searchcore import pack_tensor as _pack_tensor
except ImportError:  # not built
    _pack_operator = _pack_tensor = None
FAST_PACK = _pack_tensor is not None  # tests switch it off to compare the bytes
_GENERATED_PACK = {schema.TensorT: schema.TensorT.Pack, schema.OperatorT: schema.OperatorT.Pack}


def _tensor_pack(self, builder):  # TensorT.Pack while _compiled_packs is on
    return _pack_tensor(builder, self, np.ndarray, _GENERATED_PACK[schema.TensorT])


def _operator_pack(self, builder):  # OperatorT.Pack while _compiled_packs is on
    return _pack_operator(builder, self, np.ndarray, _GENERATED_PACK[schema.OperatorT])


_pack_lock = threading.Lock()


@contextlib.contextmanager
def _compiled_packs() -> Iterator[None]:
    """``TensorT.Pack`` and ``OperatorT.Pack`` done by the extension while a model is
    packed: the same writes on the same ``_LeanBuilder`` (same bytes, compared with the
    generated code on every model in ``tests/test_flatbuffer_io.py``); a table with a field
    it does not write (sparsity, builtin_options_2, a value outside its type, a vector of
    another element type) is packed by the generated code, which raises its own errors."""
    if not FAST_PACK:
        yield
        return
    with _pack_lock:
        schema.TensorT.Pack, schema.OperatorT.Pack = _tensor_pack, _operator_pack
        try:
            yield
        finally:
            schema.TensorT.Pack = _GENERATED_PACK[schema.TensorT]
            schema.OperatorT.Pack = _GENERATED_PACK[schema.OperatorT]


def _pack_once(model: schema.ModelT, external_offsets: dict[int, int]) -> bytes:
    """``external_offsets``: buffer index or ``("op", s, i)`` -> absolute file offset."""
    original = model.buffers
    packer = _Packer(external_offsets)
    model.buffers = [
        _AlignedBuffer(b, external_offsets.get(i, 1), packer) for i, b in enumerate(original)
    ] if original is not None else None
    large = _large_options_ops(model)
    saved = [(op.largeCustomOptionsOffset, op.largeCustomOptionsSize) for _, op in large]
    for key, op in large:
        op.largeCustomOptionsOffset = external_offsets.get(key, 1)
        op.largeCustomOptionsSize = len(op.largeCustomOptions)
    try:
        builder = _LeanBuilder(1024)
        with _compiled_packs():
            root = model.Pack(builder)
        builder.Finish(root, file_identifier=FILE_IDENTIFIER)
        out = bytes(builder.Output())
    finally:
        model.buffers = original
        for (_, op), (off, size) in zip(large, saved, strict=True):
            op.largeCustomOptionsOffset, op.largeCustomOptionsSize = off, size
    return out


def _large_options_ops(model: schema.ModelT) -> list[tuple[tuple, schema.OperatorT]]:
    return [(("op", s, i), op) for s, sg in enumerate(model.subgraphs or [])
            for i, op in enumerate(sg.operators or [])
            if getattr(op, "largeCustomOptions", None) is not None]


def serialize_model(model: schema.ModelT) -> bytes:
    """Pack a model; every buffer's data starts at a multiple of 16 in the file.

    Data kept outside the flatbuffer (external buffers, large custom options) follows it,
    each distinct array once. Never raises for a tree ``parse_model`` produced (or edited
    in place).
    """
    outside: list[tuple[object, object]] = [
        (i, b.data) for i, b in enumerate(model.buffers or []) if getattr(b, "external", False)
    ]
    outside += [(key, op.largeCustomOptions) for key, op in _large_options_ops(model)]
    if not outside:
        return _pack_once(model, {})
    # Offsets of outside data depend on the flatbuffer's length, which does not depend on
    # their values (the fields are fixed-width and present either way): pack twice.
    head = _pack_once(model, {})
    offsets, placed, tail, pos = {}, {}, bytearray(), align(len(head), BUFFER_ALIGNMENT)
    for key, data in outside:
        if id(data) not in placed:
            raw = _as_bytes(data)
            placed[id(data)] = pos
            tail += b"\0" * (pos - (len(head) + len(tail))) + raw
            pos = align(pos + len(raw), BUFFER_ALIGNMENT)
        offsets[key] = placed[id(data)]
    head = _pack_once(model, offsets)
    return head + bytes(tail)


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: handled like Ctrl-C (clean up, nothing half written)."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` for the duration (main thread only; elsewhere
    signals cannot be handled and this does nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(_signum, _frame) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write via a temp file in the target directory and rename, so no half file is left.

    An existing character device (``/dev/null``, a serial port, ...) is written in place:
    replacing it with a regular file would destroy it. Other non-regular targets are
    refused. SIGTERM, like Ctrl-C, removes the temp file before it propagates.

    Raises ``ModelError`` when the file cannot be written (nothing is left behind).
    """
    target = Path(path)
    parent = check_output_path(target)
    if _is_char_device(target):
        _write_device(target, data)
        return
    with sigterm_as_interrupt():
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, _new_file_mode())  # mkstemp's 0600 would hide the model from others
            os.replace(tmp, target)
            tmp = None
        except OSError as exc:  # read-only or full file system, no permission, ...
            raise ModelError(f"{target}: cannot write ({exc.strerror or exc})") from None
        finally:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)


def check_output_path(target: Path) -> Path:
    """Raise ModelError unless ``target`` can be written; returns its directory.

    Call it before any work, so a bad output path fails before anything is computed.
    """
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise ModelError(f"{target}: output directory {parent} does not exist")
    if target.is_dir():
        raise ModelError(f"{target}: output path is a directory")
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return parent
    except OSError as exc:
        raise ModelError(f"{target}: cannot write ({exc.strerror or exc})") from None
    if not (stat.S_ISREG(mode) or stat.S_ISCHR(mode)):
        raise ModelError(f"{target}: output path is {_file_kind(mode)}; refusing to replace it")
    return parent


def _is_char_device(target: Path) -> bool:
    try:
        return stat.S_ISCHR(os.stat(target).st_mode)
    except OSError:
        return False


def _write_device(target: Path, data: bytes) -> None:
    try:
        fd = os.open(target, os.O_WRONLY | getattr(os, "O_NOCTTY", 0))
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    except OSError as exc:  # /dev/full: ENOSPC
        raise ModelError(f"{target}: cannot write ({exc.strerror or exc})") from None


def _new_file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file (0666 less the umask)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def buffer_data_offsets(raw: bytes) -> list[int]:
    """File offsets of every non-empty inline buffer's data (to check the 16-byte rule)."""
    model = schema.Model.GetRootAs(raw, 0)
    offsets = []
    for i in range(model.BuffersLength()):
        buf = model.Buffers(i)
        if buf.DataLength() > 0:
            offsets.append(buf._tab.Vector(buf._tab.Offset(4)))
    return offsets


# ---------------------------------------------------------------------------------------------
# TFLM's offline arena plan: Model.metadata "OfflineMemoryAllocation" -> Model.buffers[i] =
# little-endian int32 [version, subgraph count, n, offset_0 .. offset_{n-1}], n = total tensors.

OFFLINE_PLAN_NAME = "OfflineMemoryAllocation"
OFFLINE_PLAN_VERSION = 1
ONLINE = -1  # "plan this tensor online"


def get_offline_plan(model: schema.ModelT) -> list[int] | None:
    """The offsets of an existing offline plan, or None."""
    for entry in model.metadata or []:
        if text(entry.name) == OFFLINE_PLAN_NAME:
            data = model.buffers[entry.buffer].data
            data = b"" if data is None else np.asarray(data, dtype=np.uint8).tobytes()
            words = np.frombuffer(data[: len(data) // 4 * 4], dtype="<i4")
            n = int(words[2]) if len(words) >= 3 else 0  # a short entry holds no offsets
            return [int(w) for w in words[3 : 3 + max(n, 0)]]
    return None


def unallocated_variables(model: schema.ModelT, offsets: list[int]) -> list[tuple[int, int]]:
    """The variable tensors TFLM would leave without memory under the plan ``offsets``, as
    (subgraph, tensor index in it).

    TFLM reads the plan two ways. ``AllocationInfoBuilder::InitializeAllocationInfo``
    (micro_allocation_info.cc) walks every subgraph's tensors with one running index: a
    tensor's entry is at its subgraph's start plus its index, and a variable whose entry is
    -1 is left to ``MicroAllocator::AllocateVariables`` (micro_allocator.cc), which gives it
    a persistent buffer, but only if ``offsets[i]`` is -1, ``i`` being the variable's index
    *within its own subgraph*: subgraph 0's entries, whatever subgraph the variable is in.
    A variable of a called subgraph whose own entry is -1 while entry ``i`` is planned is
    allocated by neither, and its data pointer stays null (TFLM segfaults on it). Subgraph
    0's variables read their own entry both times and are never listed.
    """
    found = []
    start = 0
    for s, sg in enumerate(model.subgraphs):
        tensors = sg.tensors or []
        if s > 0:
            for i, t in enumerate(tensors):
                if t.isVariable and offsets[start + i] == ONLINE and offsets[i] != ONLINE:
                    found.append((s, i))
        start += len(tensors)
    return found


def _referenced_elsewhere(model: schema.ModelT, index: int, entry: schema.MetadataT) -> bool:
    """True when buffer ``index`` is buffer 0 (TFLite's empty sentinel) or is named by a
    tensor or another metadata entry, or shares its data with another buffer: writing the
    plan into it would change those."""
    if index == 0:
        return True
    if any(e is not entry and e.buffer == index for e in model.metadata or []):
        return True
    if any(t.buffer == index for sg in model.subgraphs for t in sg.tensors or []):
        return True
    data = model.buffers[index].data
    return data is not None and any(
        b.data is data for i, b in enumerate(model.buffers) if i != index
    )


def set_offline_plan(model: schema.ModelT, offsets: list[int]) -> None:
    """Write (or replace) the offline plan; ``offsets`` covers every tensor of every subgraph.

    A plan entry whose buffer something else also uses gets a buffer of its own: the other
    user's bytes are never overwritten.

    Raises ``ValueError`` when ``offsets`` does not cover every tensor, or leaves a variable
    tensor without memory in TFLM (``unallocated_variables``: check that first).
    """
    n_tensors = sum(len(sg.tensors or []) for sg in model.subgraphs)
    if len(offsets) != n_tensors:
        raise ValueError(f"offline plan has {len(offsets)} offsets for {n_tensors} tensors")
    if unallocated := unallocated_variables(model, offsets):
        s, t = unallocated[0]
        raise ValueError(f"offline plan leaves subgraph {s}'s variable tensor {t} without "
                         f"memory in TFLM (entry {t} is planned)")
    words = [OFFLINE_PLAN_VERSION, len(model.subgraphs), n_tensors, *offsets]
    payload = np.asarray(words, dtype="<i4").view(np.uint8).copy()
    model.metadata = model.metadata or []
    model.buffers = model.buffers or []
    for entry in model.metadata:
        if text(entry.name) == OFFLINE_PLAN_NAME:
            if _referenced_elsewhere(model, entry.buffer, entry):
                entry.buffer = _new_buffer(model, payload)
            else:
                _set_inline(model.buffers[entry.buffer], payload)
            return
    entry = schema.MetadataT()
    entry.name = OFFLINE_PLAN_NAME
    entry.buffer = _new_buffer(model, payload)
    model.metadata.append(entry)


def _set_inline(buf: schema.BufferT, data: np.ndarray | None) -> None:
    buf.data, buf.external, buf.offset, buf.size = data, False, 0, 0


def _new_buffer(model: schema.ModelT, data: np.ndarray) -> int:
    buf = schema.BufferT()
    buf.data = data
    model.buffers.append(buf)
    return len(model.buffers) - 1


def remove_offline_plan(model: schema.ModelT) -> None:
    """Drop an existing plan (its buffer is emptied unless something else uses it; indices
    of other buffers stay valid)."""
    keep = []
    for entry in model.metadata or []:
        if text(entry.name) == OFFLINE_PLAN_NAME:
            if not _referenced_elsewhere(model, entry.buffer, entry):
                _set_inline(model.buffers[entry.buffer], None)
        else:
            keep.append(entry)
    if model.metadata is not None:
        model.metadata = keep
