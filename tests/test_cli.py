"""The command line's promises that no other test runs: inspect, --plot, --rewrite with
--max-error, the run-time checks (TFLM's head, alignment) and the exit code of a failed
self-check. Everything goes through ``cli.main`` as the console script would."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, run_cli

from tflite_reorder import api, flatbuffer_io, tflm
from tflite_reorder.flatbuffer_io import buffer_data_offsets, get_offline_plan, load_model

MODELS = ROOT / "models"
INCEPTION = MODELS / "inception_int8.tflite"


def test_inspect_stored_and_optimal(capsys):
    """The table's peak is the stored order's (77,824 B) and the optimum's (61,440 B)."""
    code, stdout, _ = run_cli(["inspect", INCEPTION, "--json"], capsys)
    stored = json.loads(stdout)
    assert code == 0 and stored["order"] == "stored" and stored["peak"] == 77_824
    rows = stored["ops"]
    assert [r["position"] for r in rows] == list(range(41))
    assert max(r["live"] for r in rows) == stored["peak"]
    code, stdout, _ = run_cli(["inspect", INCEPTION, "--optimal", "--json"], capsys)
    best = json.loads(stdout)
    assert code == 0 and best["peak"] == 61_440
    assert sorted(r["index"] for r in best["ops"]) == list(range(41))
    code, text, _ = run_cli(["inspect", INCEPTION], capsys)
    assert code == 0 and "stored order, peak 77824 B" in text
    peak_rows = [line for line in text.splitlines() if "<- peak" in line]
    assert peak_rows and all("77824" in line for line in peak_rows)


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<?xml")])
def test_plot_is_written(suffix, magic, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    plot = tmp_path / f"mem{suffix}"
    code, _, stderr = run_cli([INCEPTION, tmp_path / "o.tflite", "--plot", plot], capsys)
    assert code == 0, stderr
    data = plot.read_bytes()
    assert data.startswith(magic) and len(data) > 10_000
    if suffix == ".svg":
        assert b"stored order" in data and b"optimised order" in data


def test_rewrite_with_max_error_through_the_cli(tmp_path, capsys):
    """concat_conv_int8: channel partitioning takes 81,920 B to 57,344 B within 1 LSB;
    --max-error 0 keeps only exact rewrites (none here) and the peak stays."""
    src = MODELS / "concat_conv_int8.tflite"
    code, stdout, stderr = run_cli([src, tmp_path / "a.tflite", "--rewrite", "--max-error",
                                    "1", "--json"], capsys)
    assert code == 0, stderr
    r = json.loads(stdout)
    assert {a["kind"] for a in r["rewrites"]} == {"channel_partition"}
    assert (r["peak_before"], r["peak_without_rewrites"], r["peak_after"]) == \
        (81_920, 81_920, 57_344)
    assert 0 < r["rewrite_error"]["max_error_lsb"] <= 1
    assert r["verification"]["ok"]
    code, stdout, _ = run_cli([src, tmp_path / "b.tflite", "--rewrite", "--max-error", "0",
                               "--json"], capsys)
    r = json.loads(stdout)
    assert code == 0 and r["rewrites"] == [] and r["peak_after"] == 81_920
    assert any("error over the bound" in e["reason"] for e in r["rewrites_rejected"])


def test_written_buffers_and_plan_are_aligned(tmp_path, capsys):
    out = tmp_path / "o.tflite"
    assert run_cli([INCEPTION, out], capsys)[0] == 0
    data = out.read_bytes()
    assert all(o % 16 == 0 for o in buffer_data_offsets(data))
    assert all(o % 16 == 0 for o in get_offline_plan(load_model(data).model) if o >= 0)


def test_misaligned_buffers_are_caught_before_writing(tmp_path, capsys, monkeypatch):
    """A writer that packs constant data 1-byte aligned: exit 3, nothing written."""
    monkeypatch.setattr(flatbuffer_io, "BUFFER_ALIGNMENT", 1)
    packed = flatbuffer_io.serialize_model(load_model(INCEPTION).model)
    assert any(o % 16 for o in buffer_data_offsets(packed))  # the sabotage is real
    out = tmp_path / "o.tflite"
    code, _, stderr = run_cli([INCEPTION, out], capsys)
    assert code == 3 and not out.exists()
    assert stderr.startswith(f"tflite-reorder: error: {INCEPTION}: internal error: ")
    assert "not 16-byte aligned" in stderr


def test_self_check_failure_exits_3_and_names_the_file(tmp_path, capsys, monkeypatch):
    """Operators not permuted as planned: the writer's self-check is an internal error."""
    monkeypatch.setattr("tflite_reorder.api.apply_orders", lambda _m, _orders: None)
    out = tmp_path / "o.tflite"
    code, _, stderr = run_cli([INCEPTION, out], capsys)
    assert code == 3 and not out.exists()
    (line,) = stderr.splitlines()
    assert line.startswith(f"tflite-reorder: error: {INCEPTION}: internal error: ")
    assert "SelfCheckError: internal check: subgraph 0 operators differ" in line


@pytest.mark.skipif(not tflm.available(), reason="tflite-micro not installed")
def test_tflm_head_other_than_planned_exits_1_and_writes_nothing(tmp_path, capsys,
                                                                 monkeypatch):
    real = tflm.measure_arena

    def off_by_16(data, arena_size=None):
        a = real(data, arena_size)
        return tflm.TflmArena(a.total + 16, a.head + 16, a.tail)

    monkeypatch.setattr(tflm, "measure_arena", off_by_16)
    out = tmp_path / "o.tflite"
    code, _, stderr = run_cli([INCEPTION, out], capsys)
    assert code == 1 and not out.exists()
    assert "TFLM's measured arena head 61456 B is not the planned 61440 B" in stderr
    assert "nothing written" in stderr


@pytest.mark.skipif(not tflm.available(), reason="tflite-micro not installed")
def test_tflm_head_is_measured_on_every_verified_output():
    r = api.optimize(INCEPTION).report
    assert r.tflm_head == r.arena_planned == 61_440
    assert r.verification["ran"] == ["litert", "tflm"] and r.verification["not_run"] == []
