"""rewrites.focus: the sites at the peak, and the sites their rewrite needs."""

from __future__ import annotations

from conftest import model_path

from tflite_reorder.flatbuffer_io import load_model
from tflite_reorder.rewrites.edit import Editor
from tflite_reorder.rewrites.focus import hot_sites
from tflite_reorder.rewrites.measure import optimal_peak
from tflite_reorder.rewrites.search import find_sites
from tflite_reorder.rewrites.split import input_chain


def test_hot_sites_follow_the_live_bytes_and_their_links():
    model = load_model(model_path("densenet_keras_int8").read_bytes()).model
    peak = optimal_peak(model, True, 5.0)
    sites = find_sites(model)
    assert hot_sites(model, sites, peak.live, 0) == sorted(sites)
    assert hot_sites(model, sites, peak.live, peak.peak + 1) == []
    hot = hot_sites(model, sites, peak.live, int(0.75 * peak.peak))
    assert hot and len(hot) < len(sites)
    assert any(s.op == 1 and s.kind == "split" for s in hot)  # the stem: the peak
    ed = Editor(model, 0)
    index = {id(op): i for i, op in enumerate(ed.sg.operators)}
    concats = {s.op for s in hot if s.kind == "concat"}
    for s in hot:
        if s.kind != "split":
            continue
        chain = input_chain(ed, ed.sg.operators[s.op])
        if chain:  # fed by per-channel ops: the concat behind them comes along
            prod = ed.producer(ed.inputs(chain[0])[0])
            if prod is not None and ed.opcode(prod) == "CONCATENATION":
                assert index[id(prod)] in concats
