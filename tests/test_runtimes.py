"""``runtimes``: LiteRT's reference kernels and the two input generators."""

from __future__ import annotations

import tempfile
import time

import numpy as np
import pytest
from conftest import model_path
from tinymodels import diamond

from tflite_reorder.flatbuffer_io import serialize_model
from tflite_reorder.runtimes import (
    RUN_TIMEOUT,
    RuntimeTimeout,
    may_not_end,
    random_inputs,
    run_budget,
    run_litert,
    run_litert_cases,
    run_timeout,
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


# ---------------------------------------------------------------------------------------------
# The time bound (``run_timeout``): a run that does not end is killed and reported


def _children() -> list[int]:
    """Pids of this process's live children (from /proc)."""
    import os
    from pathlib import Path

    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def endless(trips: int = 2**31 - 1) -> bytes:
    """The corpus's endless WHILE (``tools/make_bad_inputs.endless_while``): each runtime
    runs it for minutes; ``trips`` small, it ends at once."""
    from tools.make_bad_inputs import endless_while

    return endless_while(trips)


@pytest.mark.parametrize("runtime", ["litert", "tflm"])
def test_a_run_past_the_bound_is_killed_and_leaves_nothing(runtime, tmp_path, monkeypatch):
    from tflite_reorder import tflm

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where run_isolated works
    data, x = endless(), [np.ones((1, 4), np.float32)]
    run = run_litert if runtime == "litert" else tflm.run_tflm
    before = _children()
    t0 = time.monotonic()
    with run_budget(1.0), pytest.raises(RuntimeTimeout, match=r"timed out after 1 s"):
        run(data, x)
    assert time.monotonic() - t0 < 30  # the bound is 1 s; unbounded, the loop runs minutes
    assert _children() == before and not list(tmp_path.iterdir())
    assert run(endless(5), x)[0].tolist() == [[1.0] * 4]  # the same model, a short loop


def test_a_timed_out_tflm_run_is_a_tflm_error():
    """What reports TFLM as not run (``except TflmError``) reports a timeout so too."""
    from tflite_reorder import tflm

    with run_budget(1.0), pytest.raises(tflm.TflmError) as exc:
        tflm.run_tflm(endless(), [np.ones((1, 4), np.float32)])
    assert isinstance(exc.value, tflm.TflmTimeout) and exc.value.seconds == 1.0


def test_only_models_with_a_loop_run_in_a_child(monkeypatch):
    """A model without WHILE runs in this process (no child's start-up cost)."""
    from tflite_reorder import runtimes, tflm

    assert may_not_end(endless()).endswith("is a WHILE loop, which may not end")
    assert may_not_end(model_path("while_float32").read_bytes())
    plain = serialize_model(diamond())
    assert may_not_end(plain) == ""

    def no_child(*_a, **_k):
        raise AssertionError("ran in a child process")

    monkeypatch.setattr(runtimes, "run_isolated", no_child)
    (x,) = structured_inputs(plain, seed=1)
    run_litert(plain, [x])
    tflm.run_tflm(plain, [x])
    with pytest.raises(AssertionError, match="child"):
        run_litert(endless(5), [np.ones((1, 4), np.float32)])


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan"), "5"])
def test_the_bound_is_a_positive_number(bad):
    with pytest.raises(ValueError, match="verify_timeout"), run_budget(bad):
        pass


def test_the_bound_nests_and_has_a_default():
    assert run_timeout() == RUN_TIMEOUT
    with run_budget(3.0):
        assert run_timeout() == 3.0
        with run_budget(None):
            assert run_timeout() == 3.0
    assert run_timeout() == RUN_TIMEOUT
