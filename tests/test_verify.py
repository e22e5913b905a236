"""``verify``: bit-identical or measured differences, tolerances; only what ran counts (``ok``
needs at least one runtime, all agreeing), and an input no runtime can run is bad input."""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from conftest import model_path
from tinymodels import diamond, model_bytes

from tflite_reorder import api, tflm
from tflite_reorder.flatbuffer_io import ModelError, serialize_model
from tflite_reorder.verify import Comparison, Runnability, Verification, runnability, verify


def _scaled(factor: float) -> bytes:
    """y = x + k with k = factor (so two models differ by exactly the constants)."""
    return model_bytes({"x": (1, 4)}, [("ADD", ["x", "k"], "y", (1, 4))], ["y"],
                       constants={"k": np.full((1, 4), factor, np.float32)})


def test_identical_models_verify_bit_for_bit():
    data = serialize_model(diamond())
    result = verify(data, data, use_tflm=False)
    (c,) = result.comparisons
    assert result.ok and c.identical and c.max_abs_diff == 0.0 and c.cases == 3
    assert result.to_dict()["not_run"] == [{"runtime": "tflm", "why": "disabled by the caller",
                                          "timed_out": False}]


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


def test_an_input_no_runtime_runs_is_bad_input_before_any_search():
    m = diamond()
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode = "NoSuchKernel"
    m.operatorCodes.append(code)
    m.subgraphs[0].operators[0].opcodeIndex = len(m.operatorCodes) - 1
    data = serialize_model(m)
    result = verify(data, data, use_tflm=False)
    assert not result.ok and result.comparisons == []
    with pytest.raises(ModelError, match="cannot verify: no runtime runs this model"):
        api.optimize(data, use_tflm=False)


def test_nothing_ran_is_not_ok():
    none_ran = Verification(not_run=[Runnability("litert", False, "x"),
                                     Runnability("tflm", False, "y")])
    assert not none_ran.ok and none_ran.to_dict()["ran"] == []
    one = Verification([Comparison("litert", "input", 3, True, 0.0)])
    assert one.ok and one.to_dict()["ran"] == ["litert"]
    bad = Verification([Comparison("litert", "input", 3, True, 0.0),
                        Comparison("tflm", "input", 3, False, 2.0, within_tolerance=False)])
    assert not bad.ok


def test_runtimes_not_run_are_listed_with_the_reason(monkeypatch):
    data = model_path("inception_int8").read_bytes()
    ver = verify(data, data, use_tflm=False)
    assert ver.ok and [c.runtime for c in ver.comparisons] == ["litert"]
    assert ver.to_dict()["not_run"] == [{"runtime": "tflm", "why": "disabled by the caller",
                                          "timed_out": False}]
    monkeypatch.setattr(tflm, "available", lambda: False)
    (_, t) = runnability(data)
    assert (t.runtime, t.runs, t.why) == ("tflm", False, "tflite-micro is not installed")


def test_a_model_no_runtime_runs_verifies_nothing():
    data = model_path("unknown_op").read_bytes()
    ver = verify(data, data)
    assert not ver.ok and ver.comparisons == []
    assert {n.runtime for n in ver.not_run} == {"litert", "tflm"}


@pytest.mark.tflm
def test_tflm_refusal_is_in_tflm_words():
    (lite, micro) = runnability(model_path("dense_sparse").read_bytes())
    assert lite.runs and not micro.runs
    assert "Didn't find op for builtin opcode 'DENSIFY'" in micro.why


def test_verification_parses_each_model_once(monkeypatch):
    """Every interpreter verification builds (per runtime, model and input case) is
    preceded by read-only checks of its model; inside ``verify`` each distinct model is
    parsed once (1,500 nested IFs were parsed 34 times, 28 s)."""
    from tflite_reorder import flatbuffer_io as fio

    data = serialize_model(diamond())
    other = _scaled(1.0)
    parsed: list[bytes] = []
    real = fio.parse_model
    monkeypatch.setattr(fio, "parse_model", lambda raw, *a: parsed.append(raw) or real(raw, *a))
    result = verify(data, data, use_tflm=tflm.available())
    assert result.ok and len(result.comparisons) == (2 if tflm.available() else 1)
    assert parsed == [data]
    parsed.clear()
    runnability(other)
    assert parsed == [other]
    parsed.clear()
    runnability(other)  # a new block: the trees of the last one are not kept
    assert parsed == [other]


def test_shared_reads_remember_a_refusal_and_forget_at_the_end():
    from tflite_reorder import flatbuffer_io as fio

    calls = []

    def refuse(raw: bytes) -> None:
        calls.append(raw)
        raise ModelError("no")

    with fio.shared_reads():
        for _ in range(3):
            with pytest.raises(ModelError, match="no"):
                fio.derived(b"x", "refuse", refuse)
        with fio.shared_reads(), pytest.raises(ModelError):  # nested: the outer's results
            fio.derived(b"x", "refuse", refuse)
        assert fio.derived(b"y", "len", len) == 1
    assert calls == [b"x"]
    with pytest.raises(ModelError):
        fio.derived(b"x", "refuse", refuse)  # outside: computed again
    assert calls == [b"x", b"x"]


# ---------------------------------------------------------------------------------------------
# A run cut at the time bound is a check not run, never a pass


def test_a_written_model_that_does_not_end_is_not_verified():
    """The input's loop ends, the written one's does not: each runtime is killed at the
    bound on the written model, listed as not run and timed out; the result is not ok.
    (3 s: the input's short loop, a child process's start-up included, ends well within.)"""
    from tflite_reorder.runtimes import run_budget
    from tools.make_bad_inputs import endless_while

    runs = [Runnability("litert", True), Runnability("tflm", True)]
    with run_budget(3.0):
        ver = verify(endless_while(5), endless_while(), runtimes=runs, cases=1)
    assert not ver.ok and not ver.comparisons
    assert [r.runtime for r in ver.timed_out] == ["litert", "tflm"]
    d = ver.to_dict()
    assert d["ok"] is False and d["ran"] == [] and d["timed_out"] == ["litert", "tflm"]
    assert all(n["timed_out"] and n["why"] == "timed out after 3 s (--verify-timeout) "
               "running the written model" for n in d["not_run"])


def test_a_timeout_spoils_an_otherwise_passing_verification():
    """One runtime compared and agreed, the other timed out: not ok."""
    ver = Verification([Comparison("litert", "input", 3, True, 0.0)],
                       [Runnability("tflm", False, "timed out after 1 s", timed_out=True)])
    assert not ver.ok and ver.to_dict()["timed_out"] == ["tflm"]
    assert Verification([Comparison("litert", "input", 3, True, 0.0)],
                        [Runnability("tflm", False, "not installed")]).ok


def test_runnability_says_which_runtime_timed_out():
    from tflite_reorder.runtimes import run_budget
    from tools.make_bad_inputs import endless_while

    with run_budget(1.0):
        found = runnability(endless_while())
    assert [(r.runtime, r.runs, r.timed_out) for r in found] == [
        ("litert", False, True), ("tflm", False, True)]
