"""The rewrite benchmark (``python tools/bench.py --rewrites docs/rewrites.md``).

Per model in ``models/`` (not the one-op ``inplace_*`` checks), each in a fresh process
through the command line exactly as a user runs it, with the default ``--time-limit``:

* ``tflite-reorder optimize`` (optimal order, in-place sharing, offline plan) and
  ``tflite-reorder optimize --rewrite`` (the same after the graph rewrites), both verified
  (LiteRT reference kernels and TFLM, against the input resp. the rewritten reference);
* TFLM's measured head and total (head + persistent tail) of both outputs;
* the wall time of the ``--rewrite`` run, the rewrites applied (exact / inexact), the
  worst output error of the rewritten model vs the input over random, structured and
  (where given) calibration inputs, and the input family it came from.

DenseNet-style models also run with ``--calibration`` (the converter's representative
data, from ``tools/make_densenet_models.py``). ``--densenet121 PATH`` adds Keras
DenseNet121 at 64×64 (``make_densenet_models.py --densenet121 PATH --calibration``),
measured but not shipped (8 MB).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CALIBRATED = {"densenet_keras_int8", "densenet_bc_int8", "densenet_int8", "densenet121"}
# DenseNet121 also with the error bound its full rewrite needs (see NOTES).
DENSENET121_LONG = ("--max-error", "5", "--time-limit", "30")
DEFAULT_LIMIT = 10.0  # the command line's --time-limit
CLI = "import sys; from tflite_reorder.cli import main; main(sys.argv[1:])"


def run_cli(args: list[str]) -> tuple[dict | None, float, str]:
    """One ``tflite-reorder`` run in a fresh process: its JSON report, wall seconds, error."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CLI, *args, "--json"], capture_output=True,
                          text=True, timeout=900, env={"PYTHONPATH": str(ROOT / "src"),
                                                       "PATH": "/usr/bin:/bin"})
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return None, wall, (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return json.loads(lines[-1]), wall, ""


def calibration_file(name: str, model: Path, tmp: Path) -> Path | None:
    """The converter's representative data for DenseNet-style models, as an .npz."""
    if name not in CALIBRATED:
        return None
    side = model.with_name(f"{model.stem}_calibration.npz")
    if side.exists():
        return side
    sys.path.insert(0, str(ROOT / "tools"))
    import numpy as np
    from make_densenet_models import representative

    from tflite_reorder.flatbuffer_io import load_model

    sg = load_model(model.read_bytes()).model.subgraphs[0]
    shape = tuple(int(d) for d in sg.tensors[int(sg.inputs[0])].shape[1:])
    path = tmp / f"{name}_calibration.npz"
    np.savez(path, representative(shape))
    return path


def measure(model: Path, tmp: Path, calibration: Path | None, extra: tuple[str, ...] = ()
            ) -> dict:
    from tflite_reorder import tflm

    name = model.stem
    plain_out, rw_out = tmp / f"{name}.plain.tflite", tmp / f"{name}.rw.tflite"
    plain, _, err = run_cli(["optimize", str(model), str(plain_out)])
    args = ["optimize", "--rewrite", *extra, str(model), str(rw_out)]
    if calibration is not None:
        args += ["--calibration", str(calibration)]
    rw, wall, err2 = run_cli(args)
    limit = float(extra[extra.index("--time-limit") + 1]) if "--time-limit" in extra else (
        DEFAULT_LIMIT)
    row = {"model": name + (" (calibrated)" if calibration else "")
           + (f" `{' '.join(extra)}`" if extra else ""), "wall_s": wall, "limit": limit}
    if plain is None or rw is None:
        row["error"] = err or err2
        return row
    applied = rw["rewrites"]
    e = rw.get("rewrite_error") or {}
    row.update(
        ops_before=plain["ops"], ops_after=rw["ops"], peak_order=plain["peak_after"],
        peak_rewrite=rw["peak_after"], applied=len(applied),
        exact=sum(1 for a in applied if a.get("exact")),
        max_lsb=e.get("max_error_lsb"), max_rel=e.get("max_rel_error"),
        worst=e.get("worst_input") or "-",
        cases=e.get("cases"), identical=e.get("identical"),
        verified=all(c["identical"] for c in rw["verification"]["comparisons"]),
        reasons=_top_reasons(rw["rewrites_rejected"]),
        search_s=rw.get("search_seconds"), rewrite_s=rw.get("rewrite_seconds"),
        stopped=rw.get("rewrite_out_of_time"),
    )
    if tflm.available():
        try:
            a, b = tflm.measure_arena(plain_out.read_bytes()), tflm.measure_arena(
                rw_out.read_bytes())
        except tflm.TflmError as exc:  # a model TFLM cannot run (custom ops, ...)
            row["tflm_error"] = str(exc).split(":")[0]
            return row
        row.update(tflm_head_order=a.head, tflm_total_order=a.total, tflm_head_rewrite=b.head,
                   tflm_total_rewrite=b.total, ratio=a.head / b.head if b.head else None)
    return row


def _top_reasons(rejected: list[dict]) -> str:
    counts: dict[str, int] = {}
    for r in rejected:
        key = r["reason"].split(" (")[0].split(":")[0]
        counts[key] = counts.get(key, 0) + 1
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:2]
    return "; ".join(f"{n}× {k}" for k, n in top)


def bench(models_dir: Path, densenet121: Path | None, only: list[str] | None) -> list[dict]:
    models = sorted(p for p in models_dir.glob("*.tflite") if not p.stem.startswith("inplace_"))
    if only:
        models = [p for p in models if p.stem in only]
    jobs = [(p, False, ()) for p in models] + [(p, True, ()) for p in models
                                               if p.stem in CALIBRATED]
    if densenet121 is not None:
        jobs += [(densenet121, False, ()), (densenet121, True, ()),
                 (densenet121, True, ("--time-limit", "30")),
                 (densenet121, True, DENSENET121_LONG)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for path, calibrated, extra in jobs:
            name = "densenet121" if path == densenet121 else path.stem
            cal = calibration_file(name, path, Path(tmp)) if calibrated else None
            row = measure(path, Path(tmp), cal, extra)
            row["load"] = os.getloadavg()[0]  # the machine is shared: times depend on it
            if path == densenet121:
                row["model"] = row["model"].replace(path.stem, "densenet121 (64×64, Keras)")
            print(f"  {row['model']}: {row['wall_s']:.1f} s", file=sys.stderr, flush=True)
            rows.append(row)
    return rows


COLUMNS = [
    ("model", "model"), ("ops", lambda r: f"{r.get('ops_before', '-')}→{r.get('ops_after', '-')}"),
    ("TFLM head order B", "tflm_head_order"), ("TFLM head rewritten B", "tflm_head_rewrite"),
    ("ratio", lambda r: f"{r['ratio']:.2f}x" if r.get("ratio") else "-"),
    ("TFLM total order B", "tflm_total_order"), ("TFLM total rewritten B", "tflm_total_rewrite"),
    ("applied (exact)", lambda r: f"{r.get('applied', '-')} ({r.get('exact', '-')})"),
    ("max error", lambda r: "0 (bit-exact)" if r.get("identical") else
     f"{r['max_rel']:.1e} relative" if r.get("max_rel") else
     f"{r.get('max_lsb')} LSB" if r.get("max_lsb") is not None else "-"),
    ("worst input", "worst"), ("error cases", "cases"),
    ("verified", lambda r: ("yes" if r.get("verified") else r.get("error", "no"))
     + (f" ({r['tflm_error']})" if r.get("tflm_error") else "")),
    ("--rewrite wall s", lambda r: f"{r['wall_s']:.1f}"),
    ("rewrite / bounded s (limit)", lambda r: "-" if r.get("search_s") is None else
     f"{r['rewrite_s']:.1f} / {r['search_s']:.1f} ({r['limit']:g})"
     + (" stopped" if r.get("stopped") else "")),
    ("most rejections", "reasons"),
]


def markdown(rows: list[dict]) -> str:
    def cell(r, col):
        v = col(r) if callable(col) else r.get(col, "-")
        return "-" if v is None else str(v)

    head = "| " + " | ".join(c for c, _ in COLUMNS) + " |"
    sep = "|" + "---|" * len(COLUMNS)
    body = ["| " + " | ".join(cell(r, c) for _, c in COLUMNS) + " |" for r in rows]
    return "\n".join([head, sep, *body])


INTRO = """\
# Graph rewrites: measured

Generated by `python tools/bench.py --no-models --rewrites docs/rewrites.md --densenet121
/tmp/densenet121_int8.tflite` ({stamp}). Do not edit by hand.

Each row runs the command line twice in a fresh process with the default `--time-limit 10`
(a row that names options ran `--rewrite` with them):
`optimize` (memory-optimal order, in-place sharing, offline plan) and `optimize --rewrite`
(the graph rewrites first). *TFLM head/total* are what TFLM's interpreter reports for the
two written models (head = activations, total = head + persistent tail). *ratio* = head
without rewrites / head with them. *max error* is the rewritten model's worst output
difference from the input model (LiteRT reference kernels) over *error cases* inputs:
random ones, structured ones (constant images at the ends and the middle of the range,
ramps along H and W, a min/max checkerboard) and, on *calibrated* rows, the calibration
samples (`--calibration`, the converter's representative data); *worst input* is the
family of the worst case. *verified* = the written model is bit-identical to the rewritten
reference under LiteRT and under TFLM. *wall s* is the whole `--rewrite` run (reading,
rewriting, scheduling, planning, writing, verifying). *rewrite / bounded s* are, from the
same run's report, the rewrite search (its error checks included: `rewrite_seconds`) and
everything `--time-limit` bounds (shapes, rewrites, scheduling, planning:
`search_seconds`, which must stay ≤ 1.5 × the limit in brackets); *stopped* = the limit
cut the rewrite search short (the best choice measured so far was kept; the sites never
built or priced are rejected as *not tried*). *most rejections* counts the
commonest reasons a site was left (all of them are in `--json` and the text summary).

What the rewrites are (see `src/tflite_reorder/rewrites/`): channel-wise partitioning of
a CONV_2D / FULLY_CONNECTED over a channel concatenation (inexact in int8: partial sums
are requantised), kernel-wise partitioning of DEPTHWISE_CONV_2D and distribution of
per-channel ops (exact), flattening of nested concatenations (exact), *partial
dissolution* (the consumers that can run per piece do, the concat stays for those that
need it whole: a MEAN over the channels, a model output), H/W concatenations dissolved
through 1×1 convolutions, element-wise ops and window-equals-stride pools (exact),
concatenations along the rows of a `[1, rows, values]` tensor (detection heads) through
element-wise and last-axis ops (exact), output splits of a CONV_2D whose consumers work
channel by channel (exact) or, for a bottleneck feeding a 3×3 conv, in two halves with
the 3×3 conv partitioned over them and the batch norm recomputed per half (inexact in
int8), the 1×1 conv → average pool of a transition run pool first (inexact in int8),
unread padding trimmed (exact), subsample folding and ADD chains. Without
`--calibration` int8 partial sums get their guaranteed range (interval bounds: they
never saturate) and an inexact rewrite is kept only when the measured error is within
`--max-error` (2 LSB unless the row says otherwise). Sites are tried where the arena
peaks first (`rewrites/focus.py`).

Time: one deadline covers the whole rewrite search (the reference run of the input,
building each site's variants, pricing candidate sets, the error checks): 1.3 ×
`--time-limit` for the search, and scheduling the result gets what is left of 1.5 × the
limit (the rewritten model comes stored in the best order the search found), planning a
tenth. Variants are built hot
sites first for half of the search's time; sites not built or priced in time are
rejected as *not tried*, and the report says the limit stopped the search. Where one
error check alone costs seconds (DenseNet121: 310 ops at 64×64 on the reference kernels,
28–44 cases, in a child process because its 1000-class int8 SOFTMAX may abort), the
default limit leaves no time to choose: its rows name `--time-limit 30`.
A model LiteRT refuses but TFLM runs (int8 SVDF state, `models/real/`) has its rewrite
error measured with TFLM, which matches the reference kernels bit for bit
(`rewrite_error.runtime`), and is verified with TFLM alone.
"""


NOTES = """
## What limits the DenseNets

* **Stem.** Keras' DenseNet stem is a 7×7/2 convolution, `ZeroPadding2D`, 3×3/2 max pool:
  the convolution's output and its padded copy are live together. The output split
  (`rewrites/split.py`) runs the convolution in four slices of output channels, each padded
  and pooled on its own (bit-exact). The padding trim (`rewrites/trim.py`) drops the last
  padded row and column, which neither the 7×7/2 convolution (reads 69 of 70) nor the
  3×3/2 pool (33 of 34) reads (bit-exact). On `densenet_keras_int8` the floor is then the
  input and its trimmed padding (64×64×3 + 69×69×3).
* **Dense blocks.** After each concat, a dense layer's batch norm (MUL, ADD + ReLU) and
  1×1 bottleneck run per piece (`partition.py`: per-channel constants sliced, the conv
  partitioned, partial products summed by in-place ADDs). That alone keeps every piece
  (later layers read them) plus a normalised piece, a partial product and the running sum,
  both as wide as the bottleneck: on DenseNet121 at 64×64 that is 131,072 B at block 1's
  last layer. The bottleneck split (`split.py`, `contract`) runs the bottleneck in two
  halves, the 3×3 convolution partitioned over them and the batch norm recomputed for the
  second half, which halves the partial product and the running sum. Only the layers where
  the arena peaks are rewritten (`focus.py`): on DenseNet121 block 1's layers 4–6 and its
  transition, whose pieces are block 1's second concatenation (128 channels, kept whole)
  and the new 32-channel outputs; every piece costs ops, tensors and per-channel
  multipliers in TFLM's tail.
* **Transition.** BN → ReLU → 1×1 conv → 2×2 average pool becomes BN → ReLU → pool → conv
  (`pool_first.py`): per piece, the pool runs on the normalised piece and the partial
  products are pooled-size (8×8 instead of 16×16 on DenseNet121).
* **What it costs.** On DenseNet121 the full rewrite (9 sites, 310 → 405 ops) takes the
  head from 147,456 B to 106,496 B and adds ops, tensors and per-channel multipliers to
  TFLM's tail: head + tail still falls (table), so the choice, which minimises head +
  tail, keeps it. With the compiled search core the scheduler proves the order of the
  partitioned model optimal in under 2 s.
* **int8 error.** Without `--calibration`, partial sums are quantised to their guaranteed
  range (interval bounds from the input's range and the weights), which no input can
  saturate but which is coarse. The calibrated rows use the converter's representative
  data; ranges seen there are widened by a quarter and kept inside the guaranteed ones,
  and the error is measured on the calibration samples too. DenseNet121 has random
  weights and 100+ layers after block 1, which amplify every requantisation: one
  partitioned layer alone gives 2–4 LSB at the logits, pool-first alone 3 LSB, the full
  rewrite 5 LSB (worst on constant images), over the default 2 LSB: it is applied with
  `--max-error 5` only, and needs `--time-limit 30` (at the default limit the error checks
  alone, a few seconds each, leave no time to build and price the sites).

## Why the remaining concatenations were left

Every rejected site and its reason is in `--json` (`rewrites_rejected`) and the text
summary; the commonest per model are in the table. The recurring ones: *does not lower
head + TFLM tail* (the concat is not where the arena peaks, or partitioning it adds more
tail than it saves head: most concats of DARTS, RandWire, SwiftNet, Inception); *not
tried* (the time limit ran out before the site's variants were built or a set with it
was priced: sites away from the peak are built last, e.g. DenseNet121's blocks 2–4 at
8×8 and below, whose concats never come near the peak); H/W concatenations whose
consumer reads across the seam (a 3×3 convolution, a MEAN over the axis: *is not 1x1
stride 1*, *cannot be split along H/W*). Detection heads (`dethead_*`): the class
scores' concat along the flattened anchor axis dissolves through its LOGISTIC
(bit-exact) but that *does not lower head + TFLM tail* (the LOGISTIC runs in place
either way); the boxes' concat is a model output that nothing reads (*concatenation
output is a subgraph input or output*: it must exist whole). What would lower them is
writing each level's conv output straight into its slice of the concat (aliasing, not a
graph rewrite): not done.

## Partial dissolution

`partial_concat_float32` (`tools/make_concat_models.py`): a dense layer's concat is read
by a MEAN over the channels (needs it whole) and by batch norm → ReLU → 1×1 conv, and
its pieces are read again at the end. The 1×1 conv runs on the pieces and the concat
stays for the MEAN only: the optimal-order peak goes 110,592 B → 76,064 B with both
rewrites applied, 82,944 B when the first concat is left whole (measured with the site
disabled); an exhaustive search over all orders agrees on both peaks
(`tests/test_rewrites.py`). In int8 (`partial_concat_int8`) the partitioned conv's
requantisation error exceeds 2 LSB and the exact variant does not lower head + tail.

## NASNet

`nasnet_int8` (NASNet-Mobile topology, 96×96) is limited by its stem: the 3×3/2
convolution's input (96×96×3) and output (47×47×16) are live together, 62,992 B, and
the output is read by six operators up to the second cell, so neither a channel split nor
a partition frees it earlier. 1.3× below the optimal order (76,240 B) would need
58,646 B, below that floor: it would take row tiling of the stem (not tried here). The
subsample folds (bit-exact) take it to the floor.
"""



def write_markdown(path: Path, rows: list[dict]) -> None:
    import platform

    stamp = f"{platform.machine()} / Python {platform.python_version()}, " + time.strftime(
        "%Y-%m-%d")
    loads = [r["load"] for r in rows if "load" in r]
    if loads:
        stamp += (f", {os.cpu_count()} cores, 1-minute load average {min(loads):.1f}–"
                  f"{max(loads):.1f} during the rows")
    path.write_text(INTRO.format(stamp=stamp) + "\n" + markdown(rows) + "\n" + NOTES)
    path.with_suffix(".json").write_text(json.dumps(rows, indent=1))
