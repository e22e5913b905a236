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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CALIBRATED = {"densenet_keras_int8", "densenet_bc_int8", "densenet_int8", "densenet121"}
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


def measure(model: Path, tmp: Path, calibration: Path | None) -> dict:
    from tflite_reorder import tflm

    name = model.stem
    plain_out, rw_out = tmp / f"{name}.plain.tflite", tmp / f"{name}.rw.tflite"
    plain, _, err = run_cli(["optimize", str(model), str(plain_out)])
    args = ["optimize", "--rewrite", str(model), str(rw_out)]
    if calibration is not None:
        args += ["--calibration", str(calibration)]
    rw, wall, err2 = run_cli(args)
    row = {"model": name + (" (calibrated)" if calibration else ""), "wall_s": wall}
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
    )
    if tflm.available():
        a, b = tflm.measure_arena(plain_out.read_bytes()), tflm.measure_arena(
            rw_out.read_bytes())
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
    jobs = [(p, False) for p in models] + [(p, True) for p in models if p.stem in CALIBRATED]
    if densenet121 is not None:
        jobs += [(densenet121, False), (densenet121, True)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for path, calibrated in jobs:
            name = "densenet121" if path == densenet121 else path.stem
            cal = calibration_file(name, path, Path(tmp)) if calibrated else None
            row = measure(path, Path(tmp), cal)
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
    ("verified", lambda r: "yes" if r.get("verified") else r.get("error", "no")),
    ("--rewrite wall s", lambda r: f"{r['wall_s']:.1f}"), ("most rejections", "reasons"),
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

Each row runs the command line twice in a fresh process with the default `--time-limit 10`:
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
rewriting, scheduling, planning, writing, verifying). *most rejections* counts the
commonest reasons a site was left (all of them are in `--json` and the text summary).

What the rewrites are (see `src/tflite_reorder/rewrites/`): channel-wise partitioning of a
CONV_2D / FULLY_CONNECTED over a channel concatenation (inexact in int8: partial sums are
requantised), kernel-wise partitioning of DEPTHWISE_CONV_2D and distribution of
per-channel ops (exact), flattening of nested concatenations (exact), output splits of a
CONV_2D whose consumers work channel by channel (exact), subsample folding and ADD chains.
Without `--calibration` int8 partial sums get their guaranteed range (interval bounds:
they never saturate) and an inexact rewrite is kept only when the measured error is within
`--max-error` (2 LSB).
"""


NOTES = """
## What limits the DenseNets

* **Stem.** Keras' DenseNet stem is a 7×7/2 convolution, `ZeroPadding2D`, 3×3/2 max pool:
  the convolution's output and its padded copy are live together. The output split
  (`rewrites/split.py`) runs the convolution in four slices of output channels, each padded
  and pooled on its own (bit-exact). On `densenet_keras_int8` that is the peak, and the
  rewrite takes it down to the next floor, the input and its 7×7 padding (70×70×3) live
  together.
* **Dense blocks.** Channel-wise partitioning of the BN → 1×1 conv after each concat keeps
  every piece of the concat (later layers read them) plus one BN'd piece, one partial
  product and the running sum, both as wide as the bottleneck (4 × growth). The copy it
  removes (the concat and its BN'd copy) is as large as what it adds until the concat is
  about twice the bottleneck, so early layers and short blocks gain nothing
  (`densenet_bc_int8`); on DenseNet121 at 64×64 block 1 reaches that point only at its last
  layers, and its floor after partitioning (pieces + 2 × 128 channels at 16×16) is within
  6 % of the optimal-order peak. Every partial product also adds an op, tensors and a
  requantisation: the choice counts TFLM's tail (an estimate per op, tensor and output
  channel), so on DenseNet121 the partitions cost more tail than they save head and none
  is applied.
* **int8 error.** Without `--calibration`, partial sums are quantised to their guaranteed
  range (interval bounds from the input's range and the weights), which no input can
  saturate but which is coarse: with many partials per conv the output error exceeds
  2 LSB and the partition is refused (`error over the bound`). The calibrated rows use the
  converter's representative data; ranges seen there are widened by a quarter and kept
  inside the guaranteed ones, and the error is measured on the calibration samples too.

What is not done: a bottleneck split by output channels with the BN'd pieces recomputed
per half (the only way found to go below the partitioned floor of a dense block), pooling
moved before the transition's 1×1 conv, concatenations along H/W or a flattened axis
(they are reported, "concatenation is not along the channel (last) axis"; the H-concat
model gains from the output split of a branch instead).
"""


def write_markdown(path: Path, rows: list[dict]) -> None:
    import platform

    stamp = f"{platform.machine()} / Python {platform.python_version()}, " + time.strftime(
        "%Y-%m-%d")
    path.write_text(INTRO.format(stamp=stamp) + "\n" + markdown(rows) + "\n" + NOTES)
    path.with_suffix(".json").write_text(json.dumps(rows, indent=1))
