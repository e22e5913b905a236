"""Every shipped model through the real CLI: verified, never worse, TFLM agrees, optimal."""

from __future__ import annotations

import hashlib
import json

import pytest
from conftest import MODELS, run_cli
from exhaustive import TooLarge, optimum

from tflite_reorder import tflm
from tflite_reorder.flatbuffer_io import get_offline_plan, load_model
from tflite_reorder.graph import build_graph
from tflite_reorder.memory import build_problem, nested_extra
from tflite_reorder.scheduling import schedule_model
from tflite_reorder.shapes import true_shapes


@pytest.mark.tflm
@pytest.mark.parametrize("model", MODELS, ids=lambda p: p.stem)
def test_cli_optimizes_and_verifies(model, tmp_path, capsys):
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    out = tmp_path / "out.tflite"
    code, stdout, stderr = run_cli([model, out, "--json"], capsys)
    assert code == 0, stderr
    assert "Traceback" not in stderr
    r = json.loads(stdout)
    for key in ("input", "output", "ops", "peak_before", "peak_after", "lower_bound",
                "optimal", "seconds", "arena_planned"):
        assert key in r
    assert r["peak_after"] <= r["peak_before"]
    assert r["lower_bound"] <= r["peak_after"]
    assert r["optimal"], "every shipped model is solved to proven optimality"
    comps = {c["runtime"]: c for c in r["verification"]["comparisons"]}
    assert comps["litert"]["identical"]
    assert comps["tflm"]["identical"]
    measured = tflm.measure_arena(out.read_bytes())
    assert measured.head == r["arena_planned"], "TFLM must report the planned head"
    assert hashlib.sha256(model.read_bytes()).hexdigest() == digest, "input modified"
    written = load_model(out)
    assert get_offline_plan(written.model) is not None


@pytest.mark.parametrize("model", MODELS, ids=lambda p: p.stem)
def test_optimum_matches_exhaustive_search(model):
    """On every subgraph small enough to enumerate, the optimum equals brute force."""

    loaded = load_model(model)
    graph = build_graph(loaded.model, true_shapes(loaded.model))
    if graph.n_ops > 45:
        pytest.skip("too many operators to enumerate")
    orders, results = schedule_model(graph, inplace=True, time_limit=30)
    checked = 0
    for s, sg in enumerate(graph.subgraphs):
        p = build_problem(sg, nested_extra(graph, orders, s, True), True)
        try:
            best = optimum(p, max_states=50_000)
        except TooLarge:
            continue
        assert results[s].peak == best
        checked += 1
    if not checked:
        pytest.skip("too many downsets to enumerate")
