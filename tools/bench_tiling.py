#!/usr/bin/env python3
"""Benchmark of patch-based (tiled) execution on the tiling models, TFLM-measured.

Usage::

    python tools/bench_tiling.py                       # print the table
    python tools/bench_tiling.py --markdown docs/tiling_results.md

For every model of ``tools/make_tiling_models.py``: TFLM's arena (``print_allocations``)
for the input as converted, for ``optimize`` without tiling (reordering and planning
alone), for ``optimize(tile=True)`` (the smallest estimated TFLM total within 30 % extra
MACs), and for the tiling with the smallest head (``optimize(tile=True,
tile_objective="head")``). Every tiled model is checked bit for bit against the input under LiteRT's
reference kernels and TFLM. The search's time is its own (wall, CPU seconds beside; it
is bounded by work, ``TileResult.priced`` candidates); the targets of the tiling work
are checked and printed at the end.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from tflite_reorder import api, tflm  # noqa: E402
from tflite_reorder.flatbuffer_io import load_model  # noqa: E402
from tflite_reorder.tiling import tile_model  # noqa: E402
from tflite_reorder.verify import verify  # noqa: E402

MODELS = ["tile_mbv2_100_144_int8", "tile_mbv2_035_96_int8", "tile_mbv1_025_96_int8",
          "tile_effnet_lite_int8", "tile_mcunet_int8", "tile_resnet8_int8", "tile_dscnn_int8",
          "tile_mbv2_float32"]
# Head ratio targets (tiled vs the input's own TFLM head).
TARGETS = {"tile_mbv2_100_144_int8": 4.0, "tile_mbv2_035_96_int8": 2.5,
           "tile_mbv1_025_96_int8": 2.5, "tile_effnet_lite_int8": 2.5}
SEARCH_SECONDS = 5.0
# optimize's time limit: the arena planner gets a tenth of it and stops as soon as it
# reaches the lower bound; 5 s left it at the greedy plan on a loaded machine.
TIME_LIMIT = 20


def _row(name: str) -> dict:
    raw = (ROOT / "models" / f"{name}.tflite").read_bytes()
    before = tflm.measure_arena(raw)
    plain = tflm.measure_arena(api.optimize(raw, time_limit=TIME_LIMIT, verify=False).data)
    t0, c0 = time.monotonic(), time.process_time()
    res = tile_model(load_model(raw).model)
    search_s, search_cpu = time.monotonic() - t0, time.process_time() - c0
    tiled = api.optimize(raw, tile=True, time_limit=TIME_LIMIT)
    r = tiled.report
    after = tflm.measure_arena(tiled.data)
    hf = api.optimize(raw, tile=True, tile_objective="head", time_limit=TIME_LIMIT)
    hf_ok = hf.report.verification["ok"] and verify(raw, hf.data).ok
    hf_arena = tflm.measure_arena(hf.data)
    return {
        "model": name, "ops": r.ops, "head_in": before.head, "tail_in": before.tail,
        "total_in": before.total, "head_plain": plain.head, "head": after.head,
        "tail": after.tail, "total": after.total, "macs_in": r.macs_before,
        "macs": r.macs_after, "regions": r.tiles, "verified": r.verification["ok"],
        "search_s": search_s, "search_cpu": search_cpu, "search_regions": len(res.regions),
        "priced": res.priced,
        "hf_head": hf_arena.head, "hf_total": hf_arena.total, "hf_macs": hf.report.macs_after,
        "hf_ok": hf_ok,
    }


def _pct(a: int, b: int) -> str:
    return f"+{100 * (a / b - 1):.1f} %" if b else "-"


def markdown(rows: list[dict]) -> str:
    head = ("| model | TFLM head in | reordered only | tiled | head ratio | TFLM total in → "
            "tiled | total ratio | MACs | grids (region ops) | search: priced, s (CPU) | smallest "
            "head: head, total, MACs |\n|---|--:|--:|--:|--:|--:|--:|--:|---|--:|---|")
    lines = [head]
    for x in rows:
        grids = ", ".join(f"{t['grid'][0]}x{t['grid'][1]} ({t['ops'][0]}-{t['ops'][1] - 1})"
                          for t in x["regions"]) or "none pays"
        lines.append(
            f"| {x['model']} | {x['head_in']} | {x['head_plain']} | {x['head']} | "
            f"{x['head_in'] / x['head']:.2f}x | {x['total_in']} → {x['total']} | "
            f"{x['total_in'] / x['total']:.2f}x | {_pct(x['macs'], x['macs_in'])} | {grids} | "
            f"{x['priced']}, {x['search_s']:.2f} ({x['search_cpu']:.2f}) | {x['hf_head']} "
            f"({x['head_in'] / x['hf_head']:.2f}x), {x['hf_total']}, "
            f"{_pct(x['hf_macs'], x['macs_in'])} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--markdown", type=Path, help="write the table here")
    ap.add_argument("--only", nargs="+", choices=MODELS)
    args = ap.parse_args(argv)
    if not tflm.available():
        print("needs tflite-micro", file=sys.stderr)
        return 2
    rows = [_row(n) for n in (args.only or MODELS)]
    table = markdown(rows)
    print(table)
    if args.markdown:
        args.markdown.write_text(table)
    bad = [x["model"] for x in rows if not (x["verified"] and x["hf_ok"])]
    for x in rows:
        want = TARGETS.get(x["model"])
        best = x["head_in"] / min(x["head"], x["hf_head"])
        if want:
            print(f"{x['model']}: head ratio {best:.2f}x (target {want}x): "
                  f"{'met' if best >= want else 'NOT met'}")
        if x["search_s"] > SEARCH_SECONDS:
            print(f"{x['model']}: search {x['search_s']:.2f} s > {SEARCH_SECONDS} s "
                  f"({x['search_cpu']:.2f} s CPU)")
    if bad:
        print(f"NOT bit-exact: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
