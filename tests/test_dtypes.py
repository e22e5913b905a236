"""``dtypes``: TFLM's 16-byte rounding and element sizes."""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from tflite_reorder.dtypes import FIXED_SIZE, align, numpy_type, tensor_bytes, type_name


def test_align():
    assert [align(n) for n in (0, 1, 15, 16, 17)] == [0, 16, 16, 16, 32]
    assert align(5, 4) == 8


def test_sizes():
    assert tensor_bytes((1, 3, 3), "FLOAT32") == 36
    assert tensor_bytes((2, -1), "INT8") == 0  # a dynamic dimension counts as empty
    assert tensor_bytes((4,), "STRING") == 0  # not an arena type
    assert FIXED_SIZE[schema.TensorType.INT16] == 2
    assert schema.TensorType.INT4 not in FIXED_SIZE  # packed: no whole bytes per element


def test_names_and_numpy_types():
    assert type_name(schema.TensorType.INT8) == "INT8" and type_name(10_000) == ""
    assert numpy_type(schema.TensorType.FLOAT32) == np.dtype("<f4")
    with pytest.raises(KeyError):
        numpy_type(schema.TensorType.STRING)
