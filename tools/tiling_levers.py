#!/usr/bin/env python3
"""What two plan-level levers would do for tiling: self-copy CONCATENATION and reuse of
consumed input rows (the figures of docs/tiling.md, "Self-copy CONCATENATION and reuse of
consumed input rows").

Usage::

    python tools/tiling_levers.py                          # every models/tile_* int8 model
    python tools/tiling_levers.py --only tile_mbv1_025_96_int8

Neither lever is in the planner; this prices them with the search's own cost model, on
the candidates the search emits, by replaying TFLM's lifetime rule over a candidate's
tile ops (``replay``) with two changes the offline plan could express:

* *self-copy*: the bands of the final CONCATENATION along H sit inside its output, so
  they take no bytes of their own and the output is live from the first band on;
* *reuse*: the region input's rows that no later STRIDED_SLICE reads are no longer
  counted (bands along H only: a patch's slice frees no whole row).

With both off the replay must equal ``cost.local_peak`` on every candidate (checked; the
tool exits 1 otherwise). The search (``tiling.search``) then chooses with each pricing:
the estimated head and tail it prints are the search's estimates, not TFLM measurements.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from tflite_reorder.dtypes import align, tensor_bytes  # noqa: E402
from tflite_reorder.flatbuffer_io import load_model  # noqa: E402
from tflite_reorder.rewrites.edit import Editor  # noqa: E402
from tflite_reorder.tiling import cost, region, search  # noqa: E402
from tflite_reorder.tiling.rewrite import Grid  # noqa: E402
from tflite_reorder.tiling.spatial import is_constant  # noqa: E402

MODELS = ["tile_resnet8_int8", "tile_mbv1_025_96_int8", "tile_mbv2_035_96_int8",
          "tile_mcunet_int8", "tile_effnet_lite_int8", "tile_mbv2_100_144_int8",
          "tile_dscnn_int8"]
# Finer bands than the search's own grids: reuse frees more rows the thinner band 0 is.
FINE = (*search.GRIDS, Grid(12), Grid(16), Grid(24), Grid(48))


class Mismatch(Exception):
    """The replay without levers disagrees with ``cost.local_peak``."""


def _slices(ed: Editor, ops, source: int) -> list[tuple[int, int]] | None:
    """(op position, first row) of each STRIDED_SLICE of whole rows of ``source``; None
    when something else reads it or a slice cuts columns (no row is freed early)."""
    sh = ed.shape(source)
    out = []
    for v, op in enumerate(ops):
        if source not in ed.inputs(op):
            continue
        if ed.opcode(op) != "STRIDED_SLICE":
            return None
        begin, end = ed.constant(ed.inputs(op)[1]), ed.constant(ed.inputs(op)[2])
        if begin[2] != 0 or end[2] != sh[2]:
            return None
        out.append((v, int(begin[1])))
    return out


def replay(ed: Editor, ops, source: int, sink: int, self_copy: bool, reuse: bool) -> int:
    """Peak live bytes of ``ops`` under TFLM's lifetime rule, with the levers asked for."""
    size = {}

    def nbytes(t: int) -> int:
        if t not in size:
            size[t] = 0 if is_constant(ed, t) else align(tensor_bytes(ed.shape(t), ed.dtype(t)))
        return size[t]

    made, last = {source: 0}, {}
    for v, op in enumerate(ops):
        for t in ed.outputs(op):
            made.setdefault(t, v)
        for t in (*ed.inputs(op), *ed.outputs(op)):
            if t >= 0:
                last[t] = v
    last[sink] = len(ops) - 1
    inside: set[int] = set()
    tail = ops[-1]
    if self_copy and ed.opcode(tail) == "CONCATENATION" and tail.builtinOptions.axis == 1:
        inside = set(ed.inputs(tail))
        made[sink] = min(made[b] for b in inside)
    slices = _slices(ed, ops, source) if reuse else None
    sh = ed.shape(source)
    row = tensor_bytes((1, 1, sh[2], sh[3]), ed.dtype(source))
    diff = [0] * (len(ops) + 1)
    for t, m in made.items():
        if t not in inside and t != source:
            diff[m] += nbytes(t)
            diff[last[t] + 1] -= nbytes(t)
    if slices is None:
        diff[0] += nbytes(source)
        diff[last[source] + 1] -= nbytes(source)
    else:  # rows before the window of the next slice still to run are not counted
        for k, (u, lo) in enumerate(slices):
            held = align((sh[1] - lo) * row)
            start = slices[k - 1][0] + 1 if k else 0
            diff[start] += held
            diff[u + 1] -= held
    peak = run = 0
    for v in range(len(ops)):
        run += diff[v]
        peak = max(peak, run)
    return peak


@contextlib.contextmanager
def priced_with(self_copy: bool, reuse: bool, best_of: bool):
    """``cost.local_peak`` replaced by the replay with levers (``best_of``: the lower of
    with and without them, as a planner free to use each lever where it pays would do).
    ``cost.floor`` is off: its concatenation term (bands beside the output) does not hold
    for a self-copy."""
    plain, floor = cost.local_peak, cost.floor

    def levered(ed, ops, source, sink):
        base = plain(ed, ops, source, sink)
        if replay(ed, ops, source, sink, False, False) != base:
            raise Mismatch(f"replay differs from cost.local_peak ({base} B)")
        options = [replay(ed, ops, source, sink, sc, ru)
                   for sc, ru in ((self_copy, False), (False, reuse), (self_copy, reuse))]
        return min([base, *options]) if best_of else options[-1]

    cost.local_peak, cost.floor = levered, lambda *_: 0
    try:
        yield
    finally:
        cost.local_peak, cost.floor = plain, floor


def answers(model, grids) -> dict[str, str]:
    """The search's choice per objective, as ``head / tail estimate, MACs, regions``."""
    prof = region.profile(model)
    macs0, counts0 = cost.model_macs(model), cost.model_counts(model)
    cands, _ = search._candidates(model, prof, grids, 12, macs0 * 0.3, 100_000)
    out = {}
    for objective in ("total", "head"):
        ch = search.choose(prof, cands, counts0, macs0, 0.3, None, objective)
        picks = ", ".join(f"{c.grid} ({c.region.start}-{c.region.end - 1}): {c.peak}"
                          for c in ch.picks) or "none"
        out[objective] = (f"head {ch.head}, tail {ch.tail}, total {ch.total}, "
                          f"MACs +{100 * (ch.macs / macs0 - 1):.1f} %, {picks}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", choices=MODELS)
    args = ap.parse_args(argv)
    cases = [
        ("as planned (each band its own tensor)", None, search.GRIDS),
        ("self-copy where it pays", (True, False, True), search.GRIDS),
        ("self-copy everywhere", (True, False, False), search.GRIDS),
        ("reuse of consumed rows, up to 48 bands", (False, True, True), FINE),
        ("reuse and self-copy, up to 48 bands", (True, True, True), FINE),
    ]
    try:
        for name in args.only or MODELS:
            model = load_model((ROOT / "models" / f"{name}.tflite").read_bytes()).model
            print(name)
            for label, levers, grids in cases:
                if levers is None:
                    found = answers(model, grids)
                else:
                    with priced_with(*levers):
                        found = answers(model, grids)
                for objective, text in found.items():
                    print(f"  {label}, smallest {objective}: {text}", flush=True)
    except Mismatch as exc:
        print(f"replay check failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
