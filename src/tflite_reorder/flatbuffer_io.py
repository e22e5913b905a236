"""Reading and writing ``.tflite`` flatbuffers.

The object API of ``ai_edge_litert.schema_py_generated`` is used both ways so that every
field we do not understand survives a round trip. Two things the generated code gets wrong
for microcontrollers are fixed here: buffer data is placed at 16-byte file offsets (the
schema's ``force_align: 16``, ignored by every generated Python ``Pack``), and buffers kept
outside the flatbuffer (``offset``/``size``, models over 2 GB) are carried along.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from .dtypes import BUFFER_ALIGNMENT, FIXED_SIZE, align
from .tensors import text

FILE_IDENTIFIER = b"TFL3"
SUPPORTED_SCHEMA_VERSION = 3


class ModelError(Exception):
    """A model that cannot be read, understood or written; the message is one line."""


@dataclass
class LoadedModel:
    """A parsed model plus where it came from (for messages) and its original bytes."""

    model: schema.ModelT
    raw: bytes
    source: str


def read_bytes(path: str | os.PathLike) -> bytes:
    """Read a file, turning every OS-level failure into a one-line ModelError.

    Raises ``ModelError`` for a missing, unreadable or directory path.
    """
    p = Path(path)
    if p.is_dir():
        raise ModelError(f"{p}: is a directory, not a .tflite file")
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"{p}: no such file") from None
    except PermissionError:
        raise ModelError(f"{p}: permission denied") from None
    except OSError as exc:
        raise ModelError(f"{p}: cannot read ({exc.strerror or exc})") from None


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
    version, indices inside their tables, external data inside the file, constant sizes.

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


def parse_model(raw: bytes, source: str = "<bytes>") -> LoadedModel:
    """Parse flatbuffer bytes, rejecting anything that is not a schema-v3 TFLite model.

    Raises ``ModelError`` (one line, naming ``source``) for anything it refuses.
    """
    check_header(raw, source)
    try:
        model = schema.ModelT.InitFromPackedBuf(raw, 0)
    except Exception as exc:  # the generated reader raises anything on corrupt input
        kind = type(exc).__name__
        raise ModelError(f"{source}: corrupt or truncated flatbuffer ({kind})") from None
    if model.subgraphs:
        _normalize_vectors(model)
    check_model(model, raw, source)
    _load_external_buffers(model, raw)
    return LoadedModel(model=model, raw=bytes(raw), source=source)


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
            need = size * int(np.prod(shape, dtype=object))
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
    """Pull data stored after the flatbuffer (``Buffer.offset/size``) inline into the object
    (``check_model`` has checked it lies inside the file).

    The writer puts it back after the new flatbuffer; the absolute offsets change.
    """
    for buf in model.buffers or []:
        buf.external = _is_external(buf)
        if buf.external:
            buf.data = np.frombuffer(raw[buf.offset : buf.offset + buf.size], np.uint8).copy()


# ---------------------------------------------------------------------------------------------
# Writing


def _pack_buffer(builder: flatbuffers.Builder, data: bytes | None, offset: int, size: int) -> int:
    data_off = None
    if data is not None:
        builder.StartVector(1, len(data), BUFFER_ALIGNMENT)
        builder.head = builder.head - len(data)
        builder.Bytes[builder.head : builder.head + len(data)] = data
        data_off = builder.EndVector()
    schema.BufferStart(builder)
    if data_off is not None:
        schema.BufferAddData(builder, data_off)
    schema.BufferAddOffset(builder, offset)
    schema.BufferAddSize(builder, size)
    return schema.BufferEnd(builder)


class _AlignedBuffer(schema.BufferT):
    """A BufferT whose Pack aligns its data to 16 bytes; external data gets a new offset."""

    def __init__(self, src: schema.BufferT, external_offset: int) -> None:
        super().__init__()
        if getattr(src, "external", False):
            self.payload, self.offset, self.size = None, external_offset, len(src.data)
        else:
            has = src.data is not None
            self.payload = np.asarray(src.data, dtype=np.uint8).tobytes() if has else None
            self.offset, self.size = src.offset, src.size

    def Pack(self, builder: flatbuffers.Builder) -> int:  # noqa: N802 (generated API name)
        return _pack_buffer(builder, self.payload, self.offset, self.size)


def _pack_once(model: schema.ModelT, external_offsets: dict[int, int]) -> bytes:
    original = model.buffers
    model.buffers = [
        _AlignedBuffer(b, external_offsets.get(i, 1)) for i, b in enumerate(original or [])
    ] if original is not None else None
    try:
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
        out = bytes(builder.Output())
    finally:
        model.buffers = original
    return out


def serialize_model(model: schema.ModelT) -> bytes:
    """Pack a model; every buffer's data starts at a multiple of 16 in the file.

    Never raises for a tree ``parse_model`` produced (or edited in place).
    """
    externals = [i for i, b in enumerate(model.buffers or []) if getattr(b, "external", False)]
    if not externals:
        return _pack_once(model, {})
    # Offsets of external data depend on the flatbuffer's length, which does not depend on
    # their values (the fields are fixed-width and present either way): pack twice.
    head = _pack_once(model, {})
    offsets, tail, pos = {}, bytearray(), align(len(head), BUFFER_ALIGNMENT)
    for i in externals:
        data = np.asarray(model.buffers[i].data, dtype=np.uint8).tobytes()
        offsets[i] = pos
        pad = pos - (len(head) + len(tail))
        tail += b"\0" * pad + data
        pos = align(pos + len(data), BUFFER_ALIGNMENT)
    head = _pack_once(model, offsets)
    return head + bytes(tail)


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write via a temp file in the target directory and rename, so no half file is left.

    Raises ``ModelError`` when the file cannot be written (nothing is left behind).
    """
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise ModelError(f"{target}: output directory {parent} does not exist")
    if target.is_dir():
        raise ModelError(f"{target}: output path is a directory")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:  # read-only or full file system, no permission, ...
        raise ModelError(f"{target}: cannot write ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _new_file_mode())  # mkstemp's 0600 would hide the model from others
        os.replace(tmp, target)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise ModelError(f"{target}: cannot write ({exc.strerror or exc})") from None
        raise


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


def set_offline_plan(model: schema.ModelT, offsets: list[int]) -> None:
    """Write (or replace) the offline plan; ``offsets`` covers every tensor of every subgraph.

    Raises ``ValueError`` when ``offsets`` does not cover every tensor.
    """
    n_tensors = sum(len(sg.tensors or []) for sg in model.subgraphs)
    if len(offsets) != n_tensors:
        raise ValueError(f"offline plan has {len(offsets)} offsets for {n_tensors} tensors")
    words = [OFFLINE_PLAN_VERSION, len(model.subgraphs), n_tensors, *offsets]
    payload = np.asarray(words, dtype="<i4").view(np.uint8).copy()
    model.metadata = model.metadata or []
    model.buffers = model.buffers or []
    for entry in model.metadata:
        if text(entry.name) == OFFLINE_PLAN_NAME:
            model.buffers[entry.buffer].data = payload
            return
    buf = schema.BufferT()
    buf.data = payload
    model.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name = OFFLINE_PLAN_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)


def remove_offline_plan(model: schema.ModelT) -> None:
    """Drop an existing plan (its buffer is emptied, indices of other buffers stay valid)."""
    keep = []
    for entry in model.metadata or []:
        if text(entry.name) == OFFLINE_PLAN_NAME:
            model.buffers[entry.buffer].data = None
        else:
            keep.append(entry)
    if model.metadata is not None:
        model.metadata = keep
