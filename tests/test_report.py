"""``report``: the summary lines, the per-operator table, the C header and the plot."""

from __future__ import annotations

import re

import pytest
from rich.console import Console
from tinymodels import chain

from tflite_reorder.graph import build_graph
from tflite_reorder.memory import simulate
from tflite_reorder.report import c_header, kib, op_table, peak_line, plot_memory, summary_lines
from tflite_reorder.results import OpRow, Report


def _report(**kw) -> Report:
    base = dict(input="in.tflite", output="out.tflite", ops=5, subgraphs=1, peak_before=4096,
                peak_after=2048, lower_bound=2048, optimal=True, arena_planned=2048,
                plan_method="greedy_by_size", tflm_greedy_head=2304)
    return Report(**{**base, **kw})


def test_summary_leads_with_the_numbers():
    lines = summary_lines(_report())
    assert lines[0] == "in.tflite -> out.tflite: 5 ops in 1 subgraph(s)"
    assert lines[1].startswith("peak before 4096 B (4.0 KiB) -> after 2048 B (2.0 KiB), 2.00x")
    assert "optimal" in lines[1]
    assert any("arena plan head 2048 B" in ln and "2304 B" in ln for ln in lines)
    assert lines[-1].startswith("time ")


def test_summary_states_a_gap_hazards_warnings_and_skipped_checks():
    r = _report(optimal=False, lower_bound=1024, warnings=["w1"],
                shape_fixes=[{"kind": "shape", "bytes_missing": 96},
                             {"kind": "uninitialized_padding", "bytes_missing": 0}],
                repairs=[{}], verification={"comparisons": [], "not_run": [
                    {"runtime": "tflm", "why": "disabled by the caller"}]})
    text = "\n".join(summary_lines(r))
    assert "not proven optimal (gap 1024 B)" in text
    assert "1 stored shape(s) smaller than what kernels write (96 B missing)" in text
    assert "1 explicit PAD(s)" in text
    assert "not verified with tflm: disabled by the caller" in text and "warning: w1" in text


def test_summary_says_when_the_wall_clock_cut_planning():
    assert not any("wall clock" in ln for ln in summary_lines(_report()))
    assert any("cut short by the wall clock" in ln
               for ln in summary_lines(_report(plan_clock_cut=True)))


def test_c_header_rounds_to_16_and_adds_the_margin():
    text = c_header("model-opt.tflite", "src/model.tflite", {"head": 1000, "tail": 100}, 0.1)
    macros = dict(re.findall(r"#define (\w+) (\d+)", text))
    assert macros == {"MODEL_OPT_ARENA_HEAD": "1000", "MODEL_OPT_ARENA_TAIL": "100",
                      "MODEL_OPT_ARENA_SIZE": "1216"}  # 1100 * 1.1 = 1210 -> 1216
    assert "#ifndef MODEL_OPT_ARENA_H_" in text and "from model.tflite" in text
    with_min = c_header("m.tflite", "m.tflite", {"head": 16, "tail": 0, "min_arena": 32})
    # TFLM needs the bisected minimum even when head + tail is less (planner scratch).
    assert "#define M_ARENA_MIN 32" in with_min and "#define M_ARENA_SIZE 32" in with_min


def test_op_table_marks_the_peak():
    rows = [OpRow(0, 0, "RELU", "1x4", 256, 0), OpRow(1, 1, "RELU", "1x4", 512, 0)]
    console = Console(width=120, record=True)
    console.print(op_table(rows, "t"))
    peak_lines = [ln for ln in console.export_text().splitlines() if "<- peak" in ln]
    assert len(peak_lines) == 1 and "512" in peak_lines[0]
    assert kib(None) == "-" and kib(1536) == "1.5 KiB"


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_plot_is_written(tmp_path, suffix):
    pytest.importorskip("matplotlib")
    graph = build_graph(chain(3))
    use = simulate(graph, graph.stored_orders(), inplace=False)
    offsets = {k: 0 for b in use.buffers for k in b.tensors}
    path = tmp_path / f"plot{suffix}"
    plot_memory(path, use, use, offsets, "t")
    assert path.stat().st_size > 1000


def _peaks(before: int, after: int, bound: int, optimal: bool) -> Report:
    return Report(input="m.tflite", peak_before=before, peak_after=after, lower_bound=bound,
                  optimal=optimal)


def test_a_fall_is_lower():
    line = peak_line(_peaks(2048, 1024, 1024, True))
    assert "2.00x lower" in line and "optimal" in line


def test_no_improvement_is_one_plain_line():
    assert peak_line(_peaks(1024, 1024, 1024, True)) == \
        "peak 1024 B (1.0 KiB) unchanged: the stored order is already optimal"
    line = peak_line(_peaks(1024, 1024, 512, False))
    assert line.startswith("peak 1024 B (1.0 KiB) unchanged: no order found needs less")
    assert "gap 512 B" in line and "lower" in line.split(";")[-1]  # only "lower bound"
    assert "x lower" not in line


def test_a_rise_is_never_called_lower():
    line = peak_line(_peaks(1024, 2048, 512, False))
    assert "ROSE" in line and "x lower" not in line
