"""``tflite-reorder batch``: many models in worker processes, failures isolated per model."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import BATCH_MODELS as GOOD
from conftest import run_cli

from tflite_reorder import batch
from tflite_reorder.flatbuffer_io import load_model
from tflite_reorder.graph import build_graph
from tflite_reorder.results import Report, VerificationError


def test_json_lines_and_a_bad_model_does_not_stop_the_others(model_dir, tmp_path, capsys):
    out = tmp_path / "out"  # created by the command
    code, stdout, stderr = run_cli(["batch", model_dir, "--out", out, "--jobs", "2", "--json"],
                                   capsys)
    assert code == 2, stderr  # bad input somewhere
    assert "Traceback" not in stderr
    rows = {Path(r["input"]).stem: r for r in map(json.loads, stdout.splitlines())}
    assert set(rows) == {*GOOD, "corrupt"}
    bad = rows.pop("corrupt")
    assert bad["status"] == "error" and bad["error_kind"] == "input"
    assert "corrupt.tflite" in bad["error"] and bad["output"] is None
    assert not (out / "corrupt.tflite").exists()
    for name, r in rows.items():
        assert r["status"] == "ok" and r["error"] is None, r["error"]
        assert r["output"] == str(out / f"{name}.tflite")
        assert r["verification"]["ok"]
        assert r["lower_bound"] <= r["peak_after"] <= r["peak_before"]
        assert r["optimal"] and r["arena_planned"] is not None
        written = build_graph(load_model(out / f"{name}.tflite").model)
        assert written.n_ops == r["ops"]
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.tflite" for n in GOOD)


def test_glob_and_table(model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(
        ["batch", str(model_dir / "*_int8.tflite"), "--out", out, "--no-verify"], capsys)
    assert code == 0, stderr
    assert "3 of 3 model(s) optimised" in stdout
    for name in GOOD:
        line = next(ln for ln in stdout.splitlines() if name in ln)
        assert "ok" in line
        assert (out / f"{name}.tflite").is_file()
    assert "corrupt" not in stdout


@pytest.mark.parametrize("case", ["missing", "empty dir", "no match", "overwrite", "clash"])
def test_bad_input_is_exit_2_before_any_work(case, model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    args = {
        "missing": [tmp_path / "nope.tflite"],
        "empty dir": [tmp_path / "empty"],
        "no match": [str(tmp_path / "*.nomatch")],
        "overwrite": [model_dir],
        "clash": [model_dir / "inception_int8.tflite", tmp_path / "b" / "inception_int8.tflite"],
    }[case]
    (tmp_path / "empty").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(model_dir / "inception_int8.tflite", tmp_path / "b")
    dest = model_dir if case == "overwrite" else out
    code, stdout, stderr = run_cli(["batch", *args, "--out", dest], capsys)
    assert code == 2
    assert stderr.startswith("tflite-reorder: error: ") and len(stderr.splitlines()) == 1
    assert stdout == ""
    assert not out.exists()


def test_verification_failure_is_a_row_with_exit_1(model_dir, tmp_path, monkeypatch):
    report = Report(input="x", ops=3)
    report.verification = {"ok": False, "not_run": [], "comparisons": [
        {"runtime": "tflm", "within_tolerance": False, "max_abs_diff": 3.0}]}

    def failing(*_args, **_kwargs):
        raise VerificationError(report)

    monkeypatch.setattr("tflite_reorder.api.optimize", failing)
    task = batch.Task(str(model_dir / "inception_int8.tflite"), str(tmp_path / "o.tflite"))
    row = batch.process_one(task)
    assert row["status"] == "error" and row["error_kind"] == "verification"
    assert row["exit_code"] == 1 and row["ops"] == 3 and "nothing written" in row["error"]
    assert row["input"] == task.src and row["output"] is None
    assert not (tmp_path / "o.tflite").exists()
    ok = {"exit_code": 0}
    assert batch.exit_code([ok, row]) == 1
    assert batch.exit_code([ok, row, {"exit_code": 2}]) == 2
    assert batch.exit_code([ok]) == 0


def crash_worker(task: batch.Task) -> dict:
    """Stands in for ``process_one``: dies outright (like a native crash) on one model."""
    if "corrupt" in task.src:
        os._exit(7)
    return {"input": task.src, "status": "ok", "exit_code": 0}


def test_a_crashing_worker_is_isolated(model_dir, tmp_path):
    tasks = batch.make_tasks(batch.collect_inputs([str(model_dir)]), tmp_path / "out")
    rows = {Path(r["input"]).stem: r for r in batch.run_batch(tasks, 2, worker=crash_worker)}
    assert set(rows) == {*GOOD, "corrupt"}
    assert rows["corrupt"]["error_kind"] == "internal"
    assert "crashed" in rows["corrupt"]["error"]
    assert all(rows[n]["status"] == "ok" for n in GOOD)
    assert batch.exit_code(rows.values()) == 3


HOSTILE = ["cycle.tflite", "quant_scale_nan.tflite", "offline_plan_buffer0.tflite",
           "nested_if_shared30.tflite", "fill_int64_huge.tflite",
           "large_custom_options.tflite", "constant_output.tflite",
           "read_before_write.tflite"]  # junk_constant_*: a runtime runs them (accepted)


def test_hostile_models_are_input_errors_naming_their_file(tmp_path, capsys):
    """Bad models never give exit 3 nor crash a worker; every error names its file."""
    corpus = Path(__file__).resolve().parent / "bad_inputs"
    src = tmp_path / "in"
    src.mkdir()
    for name in HOSTILE:
        shutil.copyfile(corpus / name, src / name)
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(["batch", src, "--out", out, "--jobs", "2", "--json",
                                    "--time-limit", "0.5"], capsys)
    assert code == 2, stderr
    rows = [json.loads(line) for line in stdout.splitlines()]
    assert sorted(Path(r["input"]).name for r in rows) == sorted(HOSTILE)
    for r in rows:
        assert r["error_kind"] == "input" and r["exit_code"] == 2, r
        assert r["error"].startswith(r["input"]), r["error"]
        assert "\n" not in r["error"]
    assert not out.exists() or not list(out.iterdir())
