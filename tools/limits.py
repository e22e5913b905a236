"""Check that ``--time-limit`` and the search's state cap hold on huge and adversarial graphs.

    python tools/limits.py              # the full table (about 3 minutes, up to ~1 GB RAM)
    python tools/limits.py --quick      # skip the long state-cap run

Models (built in memory by ``tools/make_bad_inputs.py``, written to a temp dir):

* ``chains20k``: 100 parallel chains of 200 ops (CONCATENATION, ADD/RELU, MEAN), one
  CONCATENATION joining them: 20,001 operators.
* ``wide_concat``: 200 two-op branches joined by one CONCATENATION (401 ops).
* ``wide_add``: the same 200 branches joined by a tree of ADDs (599 ops).

Each run is the real CLI (``tflite-reorder IN OUT --no-verify --json --time-limit T``) in a
subprocess; peak RSS comes from ``os.wait4``'s rusage of that child. The first table is the
whole run; ``search`` is the scheduler's own time (``schedule_seconds``), which must stay
within 10 % of the limit plus a fixed allowance for its precomputation. The second table
splits one in-process ``api.optimize`` into its stages (``on_stage``), to show where the
time that the limit does not govern goes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import make_bad_inputs as mb  # noqa: E402 (tools/ is not a package)

from tflite_reorder import api  # noqa: E402

ALLOWANCE = 0.5  # seconds of precomputation the limit does not cover (graph size dependent)


def build(tmp: Path) -> dict[str, Path]:
    models = {
        "chains20k": mb.synthetic_chains(),
        "wide_concat": mb.wide_branches(join="concat"),
        "wide_add": mb.wide_branches(join="add"),
    }
    paths = {}
    for name, data in models.items():
        paths[name] = tmp / f"{name}.tflite"
        paths[name].write_bytes(data)
    return paths


def run_cli(src: Path, time_limit: float, tmp: Path) -> dict:
    """One CLI run in a child process: its JSON report, wall time and peak RSS."""
    dst = tmp / f"out_{src.stem}.tflite"
    cmd = [sys.executable, "-c", "from tflite_reorder.cli import main; main()", str(src),
           str(dst), "--no-verify", "--json", "--time-limit", str(time_limit)]
    t0 = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        raise SystemExit(f"{src.name}: exit {proc.returncode}: {stderr.strip()}")
    report = json.loads(stdout)
    report["wall"] = wall
    report["rss_mb"] = usage.ru_maxrss / 1024  # kB on Linux
    return report


def stages(src: Path, time_limit: float) -> dict[str, float]:
    """Seconds per stage of one in-process ``api.optimize`` (no verification)."""
    marks: list[tuple[str, float]] = []
    t0 = time.monotonic()
    api.optimize(src, verify=False, time_limit=time_limit,
                 on_stage=lambda s: marks.append((s, time.monotonic())))
    marks.append(("end", time.monotonic()))
    out, prev = {}, ("read", t0)
    for name, t in marks:
        out[prev[0]] = t - prev[1]
        prev = (name, t)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="skip the long state-cap run")
    args = ap.parse_args(argv)
    runs = [("chains20k", 1.0), ("chains20k", 5.0), ("wide_concat", 0.2), ("wide_concat", 2.0),
            ("wide_add", 0.2), ("wide_add", 2.0)]
    if not args.quick:
        runs.append(("wide_concat", 120.0))  # stopped by max_states, not by time
    failures = 0
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        paths = build(tmp)
        print("| model | ops | --time-limit s | wall s | search s | search/limit | optimal | "
              "peak_after | lower_bound | gap | states | stopped | peak RSS MB | check |")
        print("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---:|---|")
        for name, tl in runs:
            r = run_cli(paths[name], tl, tmp)
            sub = r["per_subgraph"][0]
            search = r["schedule_seconds"]
            capped = sub["stopped"] == "state limit"
            ok = (search <= 1.1 * tl + ALLOWANCE or capped) and not r["optimal"] \
                and r["lower_bound"] <= r["peak_after"]
            failures += not ok
            print(f"| {name} | {r['ops']} | {tl:g} | {r['wall']:.2f} | {search:.2f} | "
                  f"{search / tl:.2f} | {r['optimal']} | {r['peak_after']} | "
                  f"{r['lower_bound']} | {r['gap']} | {sub['states']} | "
                  f"{sub['stopped'] or '-'} | {r['rss_mb']:.0f} | {'ok' if ok else 'OVER'} |")
        print()
        print("| model | --time-limit s | read | shapes | schedule | plan | write | total |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, tl in [("chains20k", 1.0), ("wide_add", 0.2)]:
            st = stages(paths[name], tl)
            cols = " | ".join(f"{st.get(k, 0.0):.2f}"
                              for k in ("read", "shapes", "schedule", "plan", "write"))
            print(f"| {name} | {tl:g} | {cols} | {sum(st.values()):.2f} |")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
