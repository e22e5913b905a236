"""``optimize(tile=..., ram_budget=...)``, ``peak_memory(tile=True)`` and the CLI's ``--tile``
and ``--ram-budget``: tiled, scheduled, planned, verified; the TFLM figures are TFLM's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli

from tflite_reorder import api, tflm
from tflite_reorder.results import BudgetError

MODEL = Path(__file__).resolve().parent.parent / "models" / "tile_resnet8_int8.tflite"


def test_optimize_tile_reports_and_verifies():
    res = api.optimize(MODEL, tile=True, time_limit=4)
    r = res.report
    assert r.tiles and r.verification["ok"]
    assert all(c["identical"] for c in r.verification["comparisons"])
    assert r.macs_after > r.macs_before
    assert r.peak_after < r.peak_before
    t = r.tiles[0]
    assert {"ops", "grid", "tiles", "halo", "bytes_saved", "peak_before", "peak_after"} <= set(t)
    assert t["tiles"] == t["grid"][0] * t["grid"][1] and t["bytes_saved"] > 0


@pytest.mark.tflm
def test_optimize_tile_reports_tflm_figures():
    res = api.optimize(MODEL, tile=True, time_limit=4)
    r = res.report
    before, after = tflm.measure_arena(MODEL.read_bytes()), tflm.measure_arena(res.data)
    assert r.tflm_after == {"head": after.head, "tail": after.tail, "total": after.total,
                            "source": "tflm"}
    assert r.tflm_before["total"] == before.total
    assert after.head == r.arena_planned and after.total < before.total
    # the same run's untiled answer was measured and is not smaller
    assert r.tflm_untiled["source"] == "tflm" and r.tflm_untiled["total"] > after.total


@pytest.mark.tflm
def test_tiling_that_needs_more_than_untiled_is_dropped(monkeypatch):
    """The tiled answer is never worse than the untiled one of the same run: a search made
    to pick the largest total must end with the untiled model, said so."""
    from tflite_reorder.tiling import search

    def worst(choices, *args, **kwargs):
        return max((c for c in choices if c.picks), key=lambda c: c.total)

    monkeypatch.setattr(search, "best_of", worst)
    res = api.optimize(MODEL, tile=True, time_limit=4)
    r = res.report
    plain = api.optimize(MODEL, time_limit=4)
    assert r.tiles == [] and any(w.startswith("tiling dropped") for w in r.warnings)
    assert r.verification["ok"]
    assert r.tflm_after == r.tflm_untiled
    assert tflm.measure_arena(res.data).total == r.tflm_after["total"] \
        == tflm.measure_arena(plain.data).total


def test_untiled_report_has_no_tile_fields():
    r = api.optimize(MODEL, time_limit=2).report
    assert r.tiles is None and r.macs_before is None and r.tflm_after is None


def test_ram_budget_fails_with_the_best_reached():
    with pytest.raises(BudgetError, match="best reached is \\d+ B"):
        api.optimize(MODEL, ram_budget=1000, time_limit=2)


def test_peak_memory_tiled():
    plain = api.peak_memory(MODEL, time_limit=2)
    tiled = api.peak_memory(MODEL, tile=True, time_limit=2)
    assert tiled.stored == plain.stored and tiled.optimal < plain.optimal


def test_cli_tile_json_and_budget(tmp_path, capsys):
    out = tmp_path / "t.tflite"
    code, stdout, _ = run_cli([MODEL, out, "--tile", "--json", "--time-limit", "2"], capsys)
    assert code == 0 and out.exists()
    d = json.loads(stdout)
    assert d["tiles"] and d["macs_after"] > d["macs_before"]
    assert d["tflm_after"]["total"] < d["tflm_before"]["total"]
    code, stdout, _ = run_cli([MODEL, out, "--tile", "--time-limit", "2"], capsys)
    assert code == 0 and "tiled ops" in stdout and "MACs" in stdout
    none = tmp_path / "none.tflite"
    code, _, err = run_cli([MODEL, none, "--ram-budget", "1000"], capsys)
    assert code == 1 and not none.exists()
    assert "best reached" in err and "nothing written" in err


def test_inspect_tiled_profile(capsys):
    plain = api.inspect_order(MODEL)
    tiled = api.inspect_order(MODEL, tile=True)
    assert tiled.peak < plain.peak
    assert "STRIDED_SLICE" in {r.opcode for r in tiled.rows}
    code, stdout, _ = run_cli(["inspect", MODEL, "--tile"], capsys)
    assert code == 0 and "tiled" in stdout and "STRIDED_SLICE" in stdout


def test_untiled_wins_under_the_run_objective():
    u, t = {"head": 50, "total": 90}, {"head": 30, "total": 100}
    assert api._untiled_wins(u, t, None, "total")  # smaller total: untiled
    assert not api._untiled_wins(u, t, None, "head")  # smaller head: tiled
    assert api._untiled_wins(u, t, 95, "total")  # untiled fits the budget, no MACs added
    assert api._untiled_wins(u, t, 80, "total")  # neither fits: the smaller total
    assert not api._untiled_wins({"head": 50, "total": 120}, t, 110, "total")  # only tiled fits
