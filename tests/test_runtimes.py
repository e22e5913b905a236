"""``runtimes``: LiteRT's reference kernels and the two input generators."""

from __future__ import annotations

import numpy as np
from conftest import model_path
from tinymodels import diamond

from tflite_reorder.flatbuffer_io import serialize_model
from tflite_reorder.runtimes import (
    random_inputs,
    run_litert,
    run_litert_cases,
    structured_inputs,
)


def test_litert_runs_the_reference_kernels():
    data = serialize_model(diamond())
    (x,) = structured_inputs(data, seed=1)
    (y,) = run_litert(data, [x])
    assert np.array_equal(y, 2 * np.maximum(x, 0))
    outs, probed = run_litert_cases(data, [[x], [-x]], probes=(1,))
    assert np.array_equal(outs[0][0], y) and np.array_equal(probed[1][0], np.maximum(-x, 0))


def test_input_generators_are_deterministic_and_typed():
    data = model_path("while_float32").read_bytes()
    a, b = random_inputs(data, 2, seed=3), random_inputs(data, 2, seed=3)
    assert len(a) == 2 and all(np.array_equal(x, y) for x, y in zip(a[0], b[0], strict=True))
    s = structured_inputs(data, seed=0)
    counts = [x for x in s if x.dtype == np.int32]
    assert counts and all(0 <= int(v) <= 3 for x in counts for v in x.ravel())
    assert all(-1 <= float(v) < 1 for x in s if x.dtype.kind == "f" for v in x.ravel())
    q = structured_inputs(model_path("mobilenet_int8").read_bytes(), seed=0)
    assert q[0].dtype == np.int8 and q[0].min() < -100 and q[0].max() > 100
