"""The Python API as a user (or a NAS loop) calls it: ``peak_memory`` and ``optimize``."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest
from conftest import model_path
from randgraphs import random_order

from tflite_reorder import api, scheduling
from tflite_reorder.flatbuffer_io import (
    LoadedModel,
    ModelError,
    get_offline_plan,
    load_model,
    serialize_model,
)
from tflite_reorder.graph import build_graph
from tflite_reorder.memory import simulate

SMALL = ["inception_int8", "hostile_order_int8", "multi_output_int8", "nasnet_cells_int8",
         "randwire_small_int8", "concat_dw_int8", "mobilenet_int8"]


@pytest.mark.parametrize("name", SMALL)
def test_peak_memory_from_path_and_bytes(name):
    by_path = api.peak_memory(model_path(name))
    by_str = api.peak_memory(str(model_path(name)))
    by_bytes = api.peak_memory(model_path(name).read_bytes())
    by_loaded = api.peak_memory(load_model(model_path(name)))
    for pm in (by_str, by_bytes, by_loaded):
        assert (pm.stored, pm.optimal, pm.lower_bound, pm.is_optimal) == \
               (by_path.stored, by_path.optimal, by_path.lower_bound, by_path.is_optimal)
    assert by_path.stored >= by_path.optimal
    assert by_path.lower_bound <= by_path.optimal
    assert by_path.is_optimal and by_path.lower_bound == by_path.optimal
    assert by_path.seconds >= 0


def test_peak_memory_inplace_never_needs_more():
    plain = api.peak_memory(model_path("randwire_small_int8"))
    shared = api.peak_memory(model_path("randwire_small_int8"), inplace=True)
    assert shared.optimal <= plain.optimal
    assert shared.stored == plain.stored  # the stored order is always measured as TFLM plans it


def test_peak_memory_finds_the_known_win():
    # hostile_order is inception_int8 stored breadth-first: same graph, worse order.
    hostile = api.peak_memory(model_path("hostile_order_int8"))
    good = api.peak_memory(model_path("inception_int8"))
    assert hostile.stored > good.stored
    assert hostile.optimal == good.optimal < hostile.stored


def test_optimize_returns_bytes_and_report():
    raw = model_path("inception_int8").read_bytes()
    result = api.optimize(raw, verify=True, output_name="opt.tflite")
    assert isinstance(result.data, bytes) and result.data[4:8] == b"TFL3"
    r = result.report
    assert r.output == "opt.tflite" and r.ops == 41 and r.subgraphs == 1
    assert r.lower_bound <= r.peak_after <= r.peak_before
    assert r.optimal and r.ratio == pytest.approx(r.peak_before / r.peak_after)
    assert r.arena_planned == r.peak_after  # the plan packs without fragmentation here
    assert r.verification["ok"]
    d = r.to_dict()
    assert d["ratio"] == round(r.ratio, 4) and d["gap"] == 0
    assert raw == model_path("inception_int8").read_bytes()  # input untouched
    # The written bytes are a model whose stored order has the optimal peak.
    out = load_model(result.data)
    graph = build_graph(out.model)
    assert simulate(graph, graph.stored_orders(), inplace=False).lower_bound == \
        r.peak_after_no_inplace
    assert len(get_offline_plan(out.model)) == graph.n_tensors


def test_optimize_without_plan_writes_no_offline_plan():
    result = api.optimize(model_path("randwire_small_int8"), plan=False, verify=False)
    r = result.report
    assert result.plan is None and r.arena_planned is None
    assert not r.inplace and r.peak_after == r.peak_after_no_inplace
    assert get_offline_plan(load_model(result.data).model) is None


@pytest.mark.parametrize("inplace", [False, True])
def test_optimize_inplace_flag(inplace):
    r = api.optimize(model_path("randwire_small_int8"), inplace=inplace, verify=False).report
    assert r.inplace is inplace
    if inplace:
        assert r.peak_after <= r.peak_after_no_inplace
    else:
        assert r.peak_after == r.peak_after_no_inplace
    assert r.arena_planned is not None and r.arena_planned >= r.peak_after


def test_optimize_accepts_a_loaded_model_and_leaves_it_alone():
    loaded = load_model(model_path("hostile_order_int8"))
    before = serialize_model(loaded.model)
    result = api.optimize(loaded, verify=False)
    assert isinstance(loaded, LoadedModel)
    assert serialize_model(loaded.model) == before
    assert result.report.peak_after < result.report.peak_before


def _reordered(loaded: LoadedModel, rng: random.Random) -> bytes:
    """The same network stored in a random topological order (a NAS 'candidate')."""
    order = random_order(rng, build_graph(loaded.model).subgraphs[0])
    m = copy.deepcopy(loaded.model)
    scheduling.apply_orders(m, [order])
    return serialize_model(m)


def test_nas_loop():
    """A search loop scores candidates by their optimal arena, picks the best under budget.

    Candidates: several architectures, each also stored in random operator orders. The
    stored peak depends on the order the converter happened to emit; the optimal peak
    must not, so the ranking is by architecture alone.
    """
    rng = random.Random(0)
    budget = 64 * 1024
    candidates: list[tuple[str, bytes]] = []
    for name in ("inception_int8", "randwire_small_int8", "nasnet_cells_int8",
                 "concat_dw_int8", "mobilenet_int8"):
        loaded = load_model(model_path(name))
        candidates.append((name, loaded.raw))
        candidates += [(name, _reordered(loaded, rng)) for _ in range(3)]
    scores: dict[str, set[int]] = {}
    stored: dict[str, set[int]] = {}
    fits = []
    for name, data in candidates:
        pm = api.peak_memory(data, time_limit=5)
        assert pm.is_optimal and pm.lower_bound <= pm.optimal <= pm.stored
        scores.setdefault(name, set()).add(pm.optimal)
        stored.setdefault(name, set()).add(pm.stored)
        if pm.optimal <= budget:
            fits.append((pm.optimal, name))
    assert len(candidates) == 20
    assert all(len(v) == 1 for v in scores.values()), scores  # order-independent
    assert any(len(v) > 1 for v in stored.values())  # …while stored peaks vary
    best = min(fits)
    assert best == (min(min(v) for v in scores.values()), "nasnet_cells_int8")
    # What the loop would report: every architecture that fits the budget once reordered.
    assert {n for _, n in fits} >= {"inception_int8", "randwire_small_int8"}


@pytest.mark.parametrize("name", ["dilated_int8", "darts_int8", "while_float32",
                                  "mobilenet_deep_fp16w"])
@pytest.mark.parametrize("inplace", [False, True])
def test_peak_memory_and_optimize_agree(name, inplace):
    """Same figures for the same model: ``peak_memory`` repairs the padding as ``optimize``
    does
    (dilated_int8: 18,560 B as stored, 20,736 B once made safe, as the README says)."""
    pm = api.peak_memory(model_path(name), inplace=inplace)
    r = api.optimize(model_path(name), inplace=inplace, verify=False).report
    assert (pm.stored, pm.optimal, pm.lower_bound, pm.is_optimal) == \
        (r.peak_before, r.peak_after, r.lower_bound, r.optimal)
    if name == "dilated_int8":
        assert (r.peak_input, pm.stored, pm.optimal) == (18_560, 20_736, 20_736)


def test_too_many_live_pairs_writes_no_plan(monkeypatch):
    """Past the planner's pair limit the model is still written, planned online by TFLM,
    and the report does not count in-place sharing only an offline plan would give."""
    from tflite_reorder.arena import blocks
    from tflite_reorder.flatbuffer_io import get_offline_plan, parse_model
    from tools import make_bad_inputs as mb

    monkeypatch.setattr(blocks, "MAX_CONFLICT_PAIRS", 1000)
    r = api.optimize(mb.fan_out(200), verify=False, time_limit=0.5)
    assert r.plan is None and r.report.arena_planned is None
    assert any("no offline plan written" in w for w in r.report.warnings)
    assert get_offline_plan(parse_model(r.data).model) is None
    assert r.report.peak_after == r.report.peak_after_no_inplace
    assert r.report.lower_bound <= r.report.peak_after


@pytest.mark.parametrize("name", ["read_before_write", "constant_output"])
def test_every_entry_point_refuses_a_model_the_runtimes_run_wrongly(name):
    """An operator reading a tensor before the stored order's writer of it (LiteRT and TFLM
    run the stored order and read what the arena held: their outputs differed), or writing
    a constant: one refusal, with the same message, from every API entry point (the compiled
    ``peak_memory`` path declines such a model; the CLI's commands and ``batch`` are
    tested on the same corpus entries in test_robustness.py and test_batch.py)."""
    path = Path(__file__).resolve().parent / "bad_inputs" / f"{name}.tflite"
    data = path.read_bytes()
    calls = [lambda: api.optimize(data, verify=False, time_limit=0.5),
             lambda: api.peak_memory(data, time_limit=0.5),
             lambda: api.peak_memory(data, inplace=True, time_limit=0.5),
             lambda: api.peak_memory(str(path), time_limit=0.5),
             lambda: api.inspect_order(data),
             lambda: api.read_graph(data)]
    messages = set()
    for call in calls:
        with pytest.raises(ModelError) as exc:
            call()
        messages.add(str(exc.value).split("subgraph 0: ", 1)[1])
    assert len(messages) == 1, messages
