"""Sizes in bytes, one home: element types as TFLM counts them, and the 16-byte alignment.

TFLM places every arena buffer at a multiple of ``MicroArenaBufferAlignment()`` (16) and
rounds sizes up to it; the schema asks the same of buffer data in the file
(``force_align: 16``). Every size, offset and header figure goes through ``align``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from ai_edge_litert import schema_py_generated as schema

ARENA_ALIGNMENT = 16  # MicroArenaBufferAlignment()
BUFFER_ALIGNMENT = 16  # file offset of buffer data (the schema's force_align)

TYPE_NAMES: dict[int, str] = {
    v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")
}
# Bytes per element as TFLM's TfLiteTypeSizeOf counts them; 0 = not an arena type.
TYPE_SIZES: dict[str, int] = {
    "FLOAT32": 4, "FLOAT16": 2, "BFLOAT16": 2, "FLOAT64": 8, "INT32": 4, "UINT32": 4,
    "INT16": 2, "UINT16": 2, "INT8": 1, "UINT8": 1, "INT64": 8, "UINT64": 8, "BOOL": 1,
    "COMPLEX64": 8, "COMPLEX128": 16, "INT4": 1, "STRING": 0, "RESOURCE": 0, "VARIANT": 0,
}
# Types whose constant data is exactly elements x size bytes (packed INT4 is not).
FIXED_SIZE: dict[int, int] = {
    code: TYPE_SIZES[name] for code, name in TYPE_NAMES.items()
    if TYPE_SIZES.get(name, 0) > 0 and name != "INT4"
}
# numpy types of the tensor types tensor data is read and written as.
NUMPY_TYPES: dict[str, type] = {
    "FLOAT32": np.float32, "INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16,
    "INT32": np.int32, "INT64": np.int64, "FLOAT16": np.float16, "BOOL": np.bool_,
    "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64, "FLOAT64": np.float64,
}


def align(n: int, a: int = ARENA_ALIGNMENT) -> int:
    """``n`` rounded up to a multiple of ``a`` (TFLM's 16 unless told)."""
    return (n + a - 1) // a * a


def type_name(code: int) -> str:
    """The schema's name of a tensor type code ("" for a code newer than the schema)."""
    return TYPE_NAMES.get(code, "")


# The little-endian numpy dtype of each of those type names (made once: constants are read
# for every candidate's shape inference).
LITTLE_ENDIAN: dict[str, np.dtype] = {
    name: np.dtype(t).newbyteorder("<") for name, t in NUMPY_TYPES.items()}


def numpy_type(code: int) -> np.dtype:
    """The little-endian numpy dtype of a tensor type code.

    Raises ``KeyError`` for types without one (strings, resources, packed INT4).
    """
    return LITTLE_ENDIAN[TYPE_NAMES[code]]


def tensor_bytes(shape: Iterable[int], dtype: str) -> int:
    """Bytes of a tensor of ``shape`` and type name ``dtype`` (negative dims count as 0)."""
    n = TYPE_SIZES.get(dtype, 0)
    for d in shape:
        d = int(d)
        if d <= 0:
            return 0
        n *= d
    return n
