"""Reading the flatbuffer object tree one way everywhere: names, shapes, constant data.

The generated object API hands strings over as ``bytes`` (from a file) or ``str`` (set by
us), shapes as numpy arrays or ``None``, and constant data as ``uint8`` arrays in buffers
that index 0 (the empty sentinel) or an out-of-range index may stand for "no data".
"""

from __future__ import annotations

import math

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from .dtypes import LITTLE_ENDIAN, type_name


def text(raw: object) -> str:
    """A flatbuffer string field (bytes from the reader, str from us, or None) as str."""
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")


def ints(vec) -> tuple[int, ...]:
    """A flatbuffer int vector (numpy array, list, tuple or None) as a tuple of ints.

    ``fastread`` already gives tuples of ints and numpy arrays convert in one call: this
    runs for every tensor and operator of every candidate a NAS loop asks about.
    """
    if vec is None:
        return ()
    if type(vec) is tuple:
        return vec
    if isinstance(vec, np.ndarray):
        return tuple(vec.tolist())
    return tuple(int(x) for x in vec)


def stored_shape(t: schema.TensorT) -> tuple[int, ...]:
    """The shape the flatbuffer stores for a tensor (``()`` for a scalar or none)."""
    return ints(t.shape)


def stored_shapes(tensors) -> list[tuple[int, ...]]:
    """``[stored_shape(t) for t in tensors]``, tuples (``fastread``'s) taken as they are:
    shape inference starts from them for every candidate."""
    return [s if type(s := t.shape) is tuple else ints(s) for t in tensors]


def is_constant(model: schema.ModelT, buffer_index: int) -> bool:
    """The buffer holds data (inline, or outside the flatbuffer): TFLM does not plan it."""
    buffers = model.buffers or []
    if buffer_index <= 0 or buffer_index >= len(buffers):
        return False
    buf = buffers[buffer_index]
    return (buf.data is not None and len(buf.data) > 0) or buf.offset > 1


def is_static(model: schema.ModelT, t: schema.TensorT) -> bool:
    """Constant or variable: TFLM does not plan it in the arena."""
    return bool(t.isVariable) or is_constant(model, t.buffer)


def constant_data(model: schema.ModelT, t: schema.TensorT) -> np.ndarray | None:
    """The data of a constant tensor, typed and shaped as stored, or None.

    None when the tensor has no data, its type has no numpy equivalent, or the data does
    not fill the stored shape (sparse tensors).
    """
    buffers = model.buffers or []
    data = buffers[t.buffer].data if 0 < t.buffer < len(buffers) else None
    if data is None:
        return None
    raw = np.asarray(data, np.uint8)
    dtype = LITTLE_ENDIAN.get(type_name(t.type))
    if raw.size == 0 or dtype is None or raw.size % dtype.itemsize:
        return None
    values = raw.view(dtype)
    shape = stored_shape(t)
    if values.size != math.prod(shape):
        return None
    return values.reshape(shape).copy()
