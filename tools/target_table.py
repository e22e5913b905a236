"""Host TFLM vs the target (TFLM for a Cortex-M, CMSIS-NN, under QEMU) on every model.

For each model in ``models/``: the input as stored on the host (``tflite_micro``) and on the
target (head, tail, outputs bit-identical on random inputs); the optimizer's output with
its host plan on the target (is the planned head exceeded?); and ``optimize(target=...)``,
which orders and plans with the kernels' scratch buffers and verifies on the target: planned
head, lower bound (scratch included), measured head, outputs. Writes a Markdown table.

    python tools/target_table.py [--arch cortex-m4] [--kernels cmsis_nn] [--out docs/x.md]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from tflite_reorder import optimize, target, tflm  # noqa: E402
from tflite_reorder.runtimes import structured_inputs  # noqa: E402
from tflite_reorder.target.pipeline import Target  # noqa: E402


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(
        x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
        for x, y in zip(a, b, strict=True)
    )


def max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64))))
               for x, y in zip(a, b, strict=True))


def row(path: Path, arch: str, kernels: str) -> dict:
    data = path.read_bytes()
    inputs = structured_inputs(data, seed=0)
    host = tflm.measure_arena(data)
    host_out = tflm.run_tflm(data, inputs)
    started = time.monotonic()
    on = target.invoke(data, inputs, arch, kernels)
    r = {
        "model": path.stem, "host_head": host.head, "host_tail": host.tail,
        "t_head": on.arena.head, "t_tail": on.arena.tail, "t_total": on.arena.total,
        "qemu_s": on.seconds, "wall_s": time.monotonic() - started,
        "identical": same(host_out, on.outputs),
        "diff": 0.0 if same(host_out, on.outputs) else max_diff(host_out, on.outputs),
    }
    opt = optimize(data, time_limit=2.0, verify=False)
    r["planned"] = opt.report.arena_planned
    r["opt_t_head"] = target.measure(opt.data, arch, kernels).head
    try:
        aware = optimize(data, time_limit=2.0, verify=False,
                         target=Target(arch, kernels))
    except Exception as exc:  # a model the target cannot run: say so in the table
        r["note"] = f"{type(exc).__name__}: {exc}"
        return r
    t = aware.report.target
    r.update(tplan=aware.report.arena_planned, tmeas=t["head"], tlower=aware.report.peak_after,
             tsame=bool(t["verified"]), ttotal=t["total"], twarn="; ".join(aware.report.warnings))
    return r


def table(rows: list[dict]) -> str:
    head = ("| model | host head / tail | target head / tail / total | outputs vs host | QEMU s "
            "| host plan → on target | --target: planned / lower bound / measured head "
            "| verified on target |")
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        out = "identical" if r["identical"] else f"differ (max {r['diff']:.3g})"
        if "tplan" in r:
            ok = "" if r["tmeas"] == r["tplan"] else " ✗"
            tp = f"{r['tplan']:,} / {r['tlower']:,} / {r['tmeas']:,}{ok}"
            ver = "bit-identical" if r["tsame"] else "NO"
        else:
            tp, ver = r.get("note", ""), ""
        lines.append(
            f"| {r['model']} | {r['host_head']:,} / {r['host_tail']:,} | {r['t_head']:,} / "
            f"{r['t_tail']:,} / {r['t_total']:,} | {out} | {r['qemu_s']:.2f} | "
            f"{r['planned']:,} → {r['opt_t_head']:,} | {tp} | {ver} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="cortex-m4")
    ap.add_argument("--kernels", default="cmsis_nn")
    ap.add_argument("--out", type=Path)
    ap.add_argument("models", nargs="*", type=Path)
    args = ap.parse_args()
    models = args.models or sorted((ROOT / "models").glob("*.tflite"))
    rows = []
    for m in models:
        rows.append(row(m, args.arch, args.kernels))
        print(rows[-1], file=sys.stderr, flush=True)
    text = table(rows)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
