"""``tensors``: names, shapes and constant data read one way."""

from __future__ import annotations

import numpy as np
from tinymodels import model_t

from tflite_reorder.tensors import constant_data, is_constant, is_static, stored_shape, text


def _model():
    return model_t({"x": (1, 3)}, [("ADD", ["x", "k"], "y", (1, 3))], ["y"],
                   constants={"k": np.array([[1.0, 2.0, 3.0]], np.float32)})


def test_text():
    assert text(b"a\xffb") == "a\ufffdb" and text("s") == "s" and text(None) == ""


def test_constant_detection_and_data():
    m = _model()
    x, k, _ = m.subgraphs[0].tensors
    assert not is_constant(m, x.buffer) and is_constant(m, k.buffer)
    assert stored_shape(k) == (1, 3)
    assert constant_data(m, k).tolist() == [[1.0, 2.0, 3.0]]
    assert constant_data(m, x) is None
    x.isVariable = True
    assert is_static(m, x) and is_static(m, k)


def test_data_that_does_not_fill_the_shape_is_no_constant_value():
    m = _model()
    k = m.subgraphs[0].tensors[1]
    k.shape = np.array([1, 4], np.int32)
    assert constant_data(m, k) is None
