"""``verify``: bit-identical or measured differences, tolerances, and an input no runtime can
run reported as bad input rather than as our failure."""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from tinymodels import diamond, model_bytes

from tflite_reorder.flatbuffer_io import ModelError, load_model, serialize_model
from tflite_reorder.verify import verify, verify_written


def _scaled(factor: float) -> bytes:
    """y = x + k with k = factor (so two models differ by exactly the constants)."""
    return model_bytes({"x": (1, 4)}, [("ADD", ["x", "k"], "y", (1, 4))], ["y"],
                       constants={"k": np.full((1, 4), factor, np.float32)})


def test_identical_models_verify_bit_for_bit():
    data = serialize_model(diamond())
    result = verify(data, data, use_tflm=False)
    (c,) = result.comparisons
    assert result.ok and c.identical and c.max_abs_diff == 0.0 and c.cases == 3
    assert result.to_dict()["skipped"] == ["tflm: disabled"]


def test_a_different_output_fails_unless_within_tolerance():
    a, b = _scaled(1.0), _scaled(1.5)
    strict = verify(a, b, use_tflm=False)
    (c,) = strict.comparisons
    assert not strict.ok and not c.identical and not c.within_tolerance
    assert c.max_abs_diff == pytest.approx(0.5)
    assert verify(a, b, use_tflm=False, rtol=1.0).ok
    assert not verify(a, b, use_tflm=False, rtol=1e-3).ok


@pytest.mark.tflm
def test_tflm_comparison_runs_when_installed():
    data = serialize_model(diamond())
    result = verify(data, data)
    assert [c.runtime for c in result.comparisons] == ["litert", "tflm"] and result.ok


def test_an_input_no_runtime_runs_is_bad_input():
    m = diamond()
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode = "NoSuchKernel"
    m.operatorCodes.append(code)
    m.subgraphs[0].operators[0].opcodeIndex = len(m.operatorCodes) - 1
    loaded = load_model(serialize_model(m))
    with pytest.raises(ModelError, match="cannot verify, the input model does not run"):
        verify_written(loaded, loaded.raw, None, use_tflm=False)
