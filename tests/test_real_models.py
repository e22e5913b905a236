"""Real models that public packages ship (``models/real/``): optimised, verified, TFLM agrees.

``keyword_scrambled`` (TFLM's own SVDF keyword model) is the regression for the host's kernel
scratch: its SVDF kernels request 512 B of scratch that TFLM plans online around the offline
plan; a plan that left it out claimed 288 B and TFLM then needed 800 B (more than the input's
672 B). ``keyword_scrambled_8bit`` (int8 SVDF state) killed the process inside LiteRT (heap
corruption) in ``check`` and the default run; LiteRT is now refused it before it is called.
``tools/real_models.py`` is tested on rows it builds itself (no runtime needed).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from conftest import MODELS_DIR

from tflite_reorder import api, runtimes, tflm
from tflite_reorder.flatbuffer_io import ModelError, load_model
from tflite_reorder.graph import build_graph, opcode_name
from tflite_reorder.hazards import find_hazards
from tflite_reorder.shapes import infer_shapes
from tflite_reorder.target.scratch import HOST_ARCH, requests
from tools import real_models

REAL = sorted((MODELS_DIR / "real").glob("*.tflite"))


def test_the_real_models_are_there():
    assert {p.stem for p in REAL} >= {"keyword_scrambled", "keyword_scrambled_8bit",
                                      "sine_float", "hand_recrop"}


@pytest.mark.tflm
@pytest.mark.parametrize("model", REAL, ids=lambda p: p.stem)
def test_real_model_is_verified_and_never_worse_in_tflm(model):
    raw = model.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    res = api.optimize(model, time_limit=5.0)
    rep = res.report
    # LiteRT cannot run int8 SVDF state (see test_litert_is_refused_int8_svdf_state)
    assert set(rep.verification["ran"]) == (
        {"tflm"} if model.stem == "keyword_scrambled_8bit" else {"litert", "tflm"})
    assert all(c["identical"] for c in rep.verification["comparisons"])
    head_in = tflm.measure_arena(raw).head
    head_out = tflm.measure_arena(res.data).head
    assert head_out == rep.arena_planned == rep.tflm_head, "the plan is what TFLM uses"
    assert head_out <= head_in, "never worse, as TFLM measures it"
    assert hashlib.sha256(model.read_bytes()).hexdigest() == digest


def test_svdf_scratch_is_what_the_reference_kernel_requests():
    """int8 SVDF: int32 per filter and int32 per unit (``svdf_common.cc``), rounded to 16."""
    m = load_model(MODELS_DIR / "real" / "keyword_scrambled.tflite").model
    reqs = requests(m, build_graph(m), HOST_ARCH, "reference")
    svdf = sorted(k[1] for k in reqs)
    assert svdf == [1, 3, 5, 7, 9, 10, 11]
    assert reqs[(0, 1)] == (64 * 4, 64 * 4)  # 64 filters, rank 1: 64 units
    assert reqs[(0, 9)] == (32 * 4, 32 * 4)


@pytest.mark.tflm
def test_svdf_plan_holds_the_scratch():
    """The written plan leaves room for the SVDF scratch: TFLM's head is the planned one."""
    model = MODELS_DIR / "real" / "keyword_scrambled.tflite"
    res = api.optimize(model, verify=False)
    assert tflm.measure_arena(res.data).head == res.report.arena_planned
    assert res.report.arena_planned <= tflm.measure_arena(model.read_bytes()).head
    # "before" counts the stored order's scratch as "after" counts ours: never worse
    assert res.report.peak_after <= res.report.peak_before
    # every figure that stands for TFLM's arena counts the scratch: the input's own, TFLM's
    # greedy head without a plan, and the per-subgraph peaks
    input_head = tflm.measure_arena(model.read_bytes()).head
    assert res.report.peak_input == res.report.tflm_greedy_head == input_head
    (sub,) = res.report.per_subgraph
    assert sub.peak_before == input_head and sub.peak_after == res.report.peak_after


def _row(head_in, head_out, claimed, litert="identical", ran=("litert",), mode="default"):
    row = real_models.Row("m.tflite", tflm_head_in=head_in)
    row.runs[mode] = real_models.Run([], 0, 1.0, "", {"verification": {"ok": True,
                                                                        "ran": list(ran)}})
    row.written[mode] = real_models.Written(head_out, claimed, litert, "identical")
    return row


def test_report_tool_flags_each_kind_of_problem():
    assert real_models._problems(_row(1000, 900, 900)) == []
    assert any("never-worse" in p for p in real_models._problems(_row(1000, 1100, 1100)))
    assert any("claimed head" in p for p in real_models._problems(_row(1000, 900, 800)))
    assert any("no runtime run" in p for p in real_models._problems(_row(1000, 900, 900,
                                                                          ran=())))
    assert any("max diff" in p for p in real_models._problems(
        _row(1000, 900, 900, litert="max diff 1")))
    # a rewrite may change numerics (within its bound): not flagged
    assert real_models._problems(_row(1000, 900, 900, litert="max diff 1", mode="rewrite")) == []
    timed_out = _row(1000, 900, 900)
    timed_out.runs["tile"] = real_models.Run([], None, 300.0, "")
    assert any("timed out" in p for p in real_models._problems(timed_out))
    crashed = _row(1000, 900, 900)
    crashed.runs["check"] = real_models.Run([], -11, 1.0, "")
    assert any("signal 11" in p for p in real_models._problems(crashed))


def test_report_tool_totals_count_gains():
    rows = [_row(1000, 800, 800), _row(1000, 1000, 1000)]
    text = real_models.totals(rows)
    assert "TFLM measured the input and the output of 2, smaller head for 1" in text
    assert "best −20.0 %" in text


def test_litert_is_refused_int8_svdf_state():
    """Before the check, LiteRT ran it and the process died of heap corruption."""
    raw = (MODELS_DIR / "real" / "keyword_scrambled_8bit.tflite").read_bytes()
    with pytest.raises(ModelError, match="SVDF"):
        runtimes.litert(raw)
    runtimes.litert((MODELS_DIR / "real" / "keyword_scrambled.tflite").read_bytes())  # int16


@pytest.mark.parametrize("name", ["keyword_scrambled", "keyword_scrambled_8bit"])
def test_svdf_shape_rule_rederives_the_outputs(name):
    """SVDF has a shape rule (no "unchecked" hazard): wiped output shapes are recovered."""
    m = load_model(MODELS_DIR / "real" / f"{name}.tflite").model
    assert find_hazards(m) == []
    sg = m.subgraphs[0]
    wiped = {}
    for op in sg.operators:
        if opcode_name(m, op.opcodeIndex) == "SVDF":
            t = op.outputs[0]
            wiped[(0, t)] = tuple(int(d) for d in sg.tensors[t].shape)
            sg.tensors[t].shape = np.array([7], dtype=np.int32)
    assert len(wiped) == 7
    inferred = infer_shapes(m)
    assert {k: inferred[k] for k in wiped} == wiped


def test_scratch_of_a_malformed_operator_is_unknown_not_a_crash():
    """The host plan asks every model for scratch: an op missing inputs gets a warning."""
    from tflite_reorder.target.scratch import UnknownScratch

    m = load_model(MODELS_DIR / "real" / "keyword_scrambled.tflite").model
    graph = build_graph(m)
    m.subgraphs[0].operators[2].inputs = m.subgraphs[0].operators[2].inputs[:1]  # an FC
    with pytest.raises(UnknownScratch, match="malformed"):
        requests(m, graph, HOST_ARCH, "reference")
