"""Verification counts only what ran: ``ok`` needs at least one runtime and all agreeing."""

from __future__ import annotations

import pytest
from conftest import ROOT

from tflite_reorder import tflm
from tflite_reorder.verify import Comparison, Runnability, Verification, runnability, verify

MODELS = ROOT / "models"


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
    data = (MODELS / "inception_int8.tflite").read_bytes()
    ver = verify(data, data, use_tflm=False)
    assert ver.ok and [c.runtime for c in ver.comparisons] == ["litert"]
    assert ver.to_dict()["not_run"] == [{"runtime": "tflm", "why": "disabled by the caller"}]
    monkeypatch.setattr(tflm, "available", lambda: False)
    (_, t) = runnability(data)
    assert (t.runtime, t.runs, t.why) == ("tflm", False, "tflite-micro is not installed")


def test_a_model_no_runtime_runs_verifies_nothing():
    data = (MODELS / "unknown_op.tflite").read_bytes()
    ver = verify(data, data)
    assert not ver.ok and ver.comparisons == []
    assert {n.runtime for n in ver.not_run} == {"litert", "tflm"}


@pytest.mark.skipif(not tflm.available(), reason="tflite-micro not installed")
def test_tflm_refusal_is_in_tflm_words():
    (lite, micro) = runnability((MODELS / "dense_sparse.tflite").read_bytes())
    assert lite.runs and not micro.runs
    assert "Didn't find op for builtin opcode 'DENSIFY'" in micro.why
