"""``results``: derived report figures and the one exception -> exit-code mapping."""

from __future__ import annotations

import pytest

from tflite_reorder.flatbuffer_io import ModelError
from tflite_reorder.results import (
    EXIT_INPUT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_VERIFY,
    Report,
    VerificationError,
    classify,
)


def _failed() -> Report:
    r = Report(input="m.tflite")
    r.verification = {"ok": False, "skipped": [], "comparisons": [
        {"runtime": "tflm", "within_tolerance": False, "max_abs_diff": 3.0},
        {"runtime": "litert", "within_tolerance": True, "max_abs_diff": 0.0}]}
    return r


def test_ratio_gap_and_json_fields():
    r = Report(input="m", peak_before=300, peak_after=200, lower_bound=150)
    d = r.to_dict()
    assert (d["ratio"], d["gap"]) == (1.5, 50) and d["input"] == "m"
    assert Report(input="m").ratio == 1.0  # nothing measured: no division by zero


def test_verification_error_names_the_failing_runtime():
    exc = VerificationError(_failed())
    assert str(exc) == "m.tflite: verification failed (tflm max diff 3)"


@pytest.mark.parametrize("exc, kind, code, message", [
    (ModelError("m: bad"), "input", EXIT_INPUT, "m: bad"),
    (VerificationError(_failed()), "verification", EXIT_VERIFY,
     "m.tflite: verification failed (tflm max diff 3); nothing written"),
    (KeyboardInterrupt(), "interrupted", EXIT_INTERRUPTED, "interrupted; nothing written"),
    (MemoryError(), "internal", EXIT_INTERNAL, "out of memory"),
    (ValueError("boom"), "internal", EXIT_INTERNAL, "internal error: ValueError: boom"),
])
def test_classify(exc, kind, code, message):
    f = classify(exc)
    assert (f.kind, f.exit_code, f.message) == (kind, code, message)
