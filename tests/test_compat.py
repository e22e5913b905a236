"""Models TFLM cannot run (float16 DEQUANTIZE, DENSIFY, custom ops) and one nothing runs.

Built by ``tools/make_compat_models.py``. The promises: which runtimes run a model is checked
before any search; a model only LiteRT runs is verified with LiteRT, written, exit 0, and the
output says plainly that TFLM cannot run it; a model no runtime runs is refused (exit 2)
unless ``--no-verify``; ``check`` never calls such a model clean; ``arena`` reports estimates
as estimates. Needs tflite-micro (TFLM's refusal is what is tested).
"""

from __future__ import annotations

import json

import pytest
from conftest import ALL_MODELS, NO_RUNTIME, ROOT, TFLM_CANNOT_RUN, run_cli

from tflite_reorder import api, tflm
from tflite_reorder.verify import runnability

MODELS = ROOT / "models"
LITERT_ONLY = sorted(TFLM_CANNOT_RUN - NO_RUNTIME)
FP16W = ["tiny_fp16w", "mobilenet_deep_fp16w"]

pytestmark = pytest.mark.skipif(not tflm.available(), reason="tflite-micro not installed")


def test_runtime_lists_are_what_the_runtimes_say() -> None:
    """conftest's NO_RUNTIME / TFLM_CANNOT_RUN equal running every model in models/."""
    litert_fails, tflm_fails = set(), set()
    for path in ALL_MODELS:
        runs = {r.runtime: r for r in runnability(path.read_bytes())}
        if not runs["litert"].runs:
            litert_fails.add(path.stem)
        if not runs["tflm"].runs:
            tflm_fails.add(path.stem)
            assert runs["tflm"].why, path.stem
    assert litert_fails == NO_RUNTIME
    assert tflm_fails == TFLM_CANNOT_RUN


@pytest.mark.parametrize("name", LITERT_ONLY)
def test_litert_only_model_is_verified_with_litert_written_and_said_so(name, tmp_path, capsys):
    out = tmp_path / "out.tflite"
    code, stdout, stderr = run_cli([MODELS / f"{name}.tflite", out, "--json"], capsys)
    assert code == 0, stderr
    r = json.loads(stdout)
    ver = r["verification"]
    assert ver["ok"] and ver["ran"] == ["litert"]
    assert ver["comparisons"][0]["identical"]
    (not_run,) = ver["not_run"]
    assert not_run["runtime"] == "tflm" and "TFLM failed" in not_run["why"]
    assert any(w.startswith("TFLM cannot run this model") for w in r["warnings"])
    assert r["peak_after"] <= r["peak_before"]
    assert out.exists() and r["tflm_head"] is None  # nothing measured TFLM's head
    code, text, _ = run_cli([MODELS / f"{name}.tflite", tmp_path / "o2.tflite"], capsys)
    assert code == 0
    assert "not verified with tflm: TFLM failed" in text
    assert "warning: TFLM cannot run this model" in text


@pytest.mark.parametrize("name", FP16W)
def test_float16_weight_models_are_proven_optimal_and_never_worse(name, tmp_path, capsys):
    """DEQUANTIZE of float16 weights run just before their consumer (the sources reduction):
    solved to proven optimality well within a 0.05 s search budget."""
    out = tmp_path / "out.tflite"
    code, stdout, stderr = run_cli([MODELS / f"{name}.tflite", out, "--json",
                                    "--time-limit", "0.05"], capsys)
    assert code == 0, stderr
    r = json.loads(stdout)
    assert r["optimal"] and r["peak_after"] == r["lower_bound"] < r["peak_before"]
    assert r["verification"]["ran"] == ["litert"]


def test_deep_float16_model_gains_fourfold() -> None:
    """The converter runs all 156 DEQUANTIZEs first (235,600 B); just-in-time needs 58,336 B."""
    pm = api.peak_memory(MODELS / "mobilenet_deep_fp16w.tflite", time_limit=0.05)
    assert (pm.stored, pm.optimal, pm.is_optimal) == (235_600, 58_336, True)


def test_no_runtime_is_refused_before_any_search(tmp_path, capsys, monkeypatch):
    def no_search(*_args, **_kwargs):
        raise AssertionError("searched a model that cannot be verified")

    monkeypatch.setattr("tflite_reorder.api.schedule_model", no_search)
    out = tmp_path / "out.tflite"
    code, stdout, stderr = run_cli([MODELS / "unknown_op.tflite", out], capsys)
    assert code == 2 and stdout == ""
    (line,) = stderr.splitlines()
    assert line.startswith(f"tflite-reorder: error: {MODELS / 'unknown_op.tflite'}: "
                           "cannot verify: no runtime runs this model (litert: ")
    assert "; tflm: " in line and "--no-verify" in line
    assert not out.exists()


def test_no_runtime_is_written_with_no_verify(tmp_path, capsys):
    out = tmp_path / "out.tflite"
    code, stdout, stderr = run_cli([MODELS / "unknown_op.tflite", out, "--no-verify",
                                    "--json"], capsys)
    assert code == 0, stderr
    r = json.loads(stdout)
    assert r["verification"] is None and out.exists()


def test_runtimes_are_checked_before_the_search():
    stages: list[str] = []
    api.optimize(MODELS / "tiny_fp16w.tflite", on_stage=stages.append)
    assert stages.index("runtimes") < stages.index("schedule") < stages.index("verify")


@pytest.mark.parametrize("name", ["dense_sparse", "audio_custom"])
def test_check_exits_1_on_densify_and_custom_ops(name, capsys):
    code, stdout, _ = run_cli(["check", MODELS / f"{name}.tflite"], capsys)
    assert code == 1
    kinds = [line.split(":")[0] for line in stdout.splitlines()]
    assert "unchecked" in kinds and kinds[-1] == "tflm_cannot_run"
    code, stdout, _ = run_cli(["check", MODELS / f"{name}.tflite", "--json"], capsys)
    found = json.loads(stdout)["hazards"]
    assert code == 1 and {h["kind"] for h in found} == {"unchecked", "tflm_cannot_run"}


def test_check_names_the_op_tflm_cannot_run(capsys):
    code, stdout, _ = run_cli(["check", MODELS / "tiny_fp16w.tflite", "--json"], capsys)
    (h,) = json.loads(stdout)["hazards"]
    assert code == 1
    assert (h["kind"], h["opcode"], h["op_index"]) == ("tflm_cannot_run", "DEQUANTIZE", 0)
    assert "dequantize_common.cc" in h["detail"]


def test_check_is_clean_only_when_fully_checked_and_runnable(capsys, monkeypatch):
    code, stdout, _ = run_cli(["check", MODELS / "tiny3_int8.tflite"], capsys)
    assert code == 0 and stdout.strip().endswith("no hazards found")
    monkeypatch.setattr(tflm, "available", lambda: False)  # as without tflite-micro
    code, stdout, _ = run_cli(["check", MODELS / "tiny3_int8.tflite"], capsys)
    assert code == 1 and stdout.startswith("tflm_not_checked: model")


def test_arena_on_a_three_op_model(tmp_path, capsys):
    """TFLM's planner says "Too many buffers (max is 3)" just below the minimum arena."""
    header = tmp_path / "arena.h"
    code, stdout, stderr = run_cli(["arena", MODELS / "tiny3_int8.tflite", "--json",
                                    "--header", header], capsys)
    assert code == 0, stderr
    f = json.loads(stdout)
    assert f["tail_source"] == "measured by TFLM"
    assert f["tflm_head"] == f["head"] == f["peak"] == f["lower_bound"] == 32
    out = tmp_path / "o.tflite"
    assert run_cli([MODELS / "tiny3_int8.tflite", out], capsys)[0] == 0
    data = out.read_bytes()
    assert tflm.min_arena_size(data) == f["min_arena"] > f["tflm_total"]
    tflm.measure_arena(data, f["min_arena"])
    with pytest.raises(tflm.ArenaTooSmall, match="Too many buffers"):
        tflm.measure_arena(data, f["min_arena"] - 16)
    size = next(int(line.split()[-1]) for line in header.read_text().splitlines()
                if "_ARENA_SIZE" in line and line.startswith("#define"))
    assert size >= f["min_arena"]  # head + tail alone would not be enough here


def test_arena_bisection_survives_tflm_crashes():
    """TFLM's interpreter segfaults at some tiny arenas: probed in a child, never here."""
    data = (MODELS / "inplace_relu_int8.tflite").read_bytes()
    prober = tflm._Prober(data)
    try:
        assert not prober.fits(0)
        assert prober.fits(1 << 20)
    finally:
        prober.close()


def test_arena_says_estimate_and_why(capsys):
    code, stdout, _ = run_cli(["arena", MODELS / "dense_sparse.tflite", "--json"], capsys)
    f = json.loads(stdout)
    assert code == 0 and f["tail_source"] == "estimate (TFLM cannot run this model)"
    assert "DENSIFY" in f["tflm_cannot_run"] and "tflm_head" not in f
    code, stdout, _ = run_cli(["arena", MODELS / "tiny3_int8.tflite", "--json",
                               "--no-measure"], capsys)
    f = json.loads(stdout)
    assert code == 0 and f["tail_source"] == "estimate (--no-measure)"
    assert "min_arena" not in f
