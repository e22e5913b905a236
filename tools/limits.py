"""Check that ``--time-limit`` and the search's state cap hold on huge and adversarial graphs.

    python tools/limits.py              # the full table (about 3 minutes, up to ~1 GB RAM)
    python tools/limits.py --quick      # skip the long state-cap run
    python tools/limits.py --scheduler  # only the scheduler on synthetic Problems at scale

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

import make_bad_inputs as mb  # tools/ is on sys.path when run as a script

from tflite_reorder import api
from tflite_reorder.memory import Problem

ALLOWANCE = 0.5  # seconds of precomputation the limit does not cover (graph size dependent)
SCHED_ALLOWANCE = 1.0  # the scheduler's own: ``schedule`` within 1.1 x limit + this


# ---------------------------------------------------------------------------------------------
# The scheduler alone on synthetic problems (no reader, no planner): its deadline at any size


def _problem(op_in: list[tuple[int, ...]], op_out: list[tuple[int, ...]], size: list[int],
             output: int) -> Problem:
    """A subgraph with input tensor 0 and one output, as the scheduler sees it."""
    nt, n = len(size), len(op_in)
    producer = [-1] * nt
    consumers: list[list[int]] = [[] for _ in range(nt)]
    for i, (ins, outs) in enumerate(zip(op_in, op_out, strict=True)):
        for t in outs:
            producer[t] = i
        for t in dict.fromkeys(ins):
            consumers[t].append(i)
    return Problem(
        n_ops=n, size=tuple(size), producer=tuple(producer),
        consumers=tuple(map(tuple, consumers)), pinned=tuple(t == output for t in range(nt)),
        inputs=(0,), op_in=tuple(op_in), op_out=tuple(op_out),
        preds=tuple(tuple(sorted({producer[t] for t in ins if producer[t] >= 0}))
                    for ins in op_in),
        extra=(0,) * n, alias=((),) * n)


def chain_problem(n: int) -> Problem:
    """n ops in a line, 1 KiB tensors."""
    return _problem([(i,) for i in range(n)], [(i + 1,) for i in range(n)], [1024] * (n + 1), n)


def fanout_problem(width: int, join: str) -> Problem:
    """``width`` ops reading the input (sizes vary a little), joined by one concatenation
    or by a balanced tree of two-input ADDs."""
    size, op_in, op_out, heads = [1024], [], [], []
    for i in range(width):
        size.append(1024 + 16 * (i % 7))
        op_in.append((0,))
        op_out.append((len(size) - 1,))
        heads.append(len(size) - 1)
    if join == "concat":
        size.append(sum(size[h] for h in heads))
        op_in.append(tuple(heads))
        op_out.append((len(size) - 1,))
        heads = [len(size) - 1]
    while len(heads) > 1:
        nxt = []
        for j in range(0, len(heads) - 1, 2):
            size.append(1024)
            op_in.append((heads[j], heads[j + 1]))
            op_out.append((len(size) - 1,))
            nxt.append(len(size) - 1)
        heads = nxt + heads[len(heads) - len(heads) % 2:]
    return _problem(op_in, op_out, size, heads[0])


def scheduler_table(limits: tuple[float, ...] = (0.0, 1.0, 5.0)) -> int:
    """``schedule`` on 10k/50k chains and 5k-wide fan-outs: seconds against the limit."""
    from tflite_reorder.memory import peak
    from tflite_reorder.scheduler import schedule

    cases = [("chain 10k", lambda: chain_problem(10_000)),
             ("chain 50k", lambda: chain_problem(50_000)),
             ("fan-out 5k -> concat", lambda: fanout_problem(5_000, "concat")),
             ("fan-out 5k -> ADD tree", lambda: fanout_problem(5_000, "add"))]
    failures = 0
    print("| problem | ops | time_limit s | schedule s | bound s | optimal | peak | stored peak "
          "| lower bound | stopped | check |")
    print("|---|---:|---:|---:|---:|---|---:|---:|---:|---|---|")
    for name, make in cases:
        p = make()
        stored = peak(p, range(p.n_ops))
        for tl in limits:
            t0 = time.monotonic()
            r = schedule(p, time_limit=tl)
            secs = time.monotonic() - t0
            allowed = 1.1 * tl + SCHED_ALLOWANCE
            ok = secs <= allowed and r.peak <= stored and r.lower_bound <= r.peak
            failures += not ok
            print(f"| {name} | {p.n_ops} | {tl:g} | {secs:.2f} | {allowed:.2f} | {r.optimal} | "
                  f"{r.peak} | {stored} | {r.lower_bound} | {r.stopped or '-'} | "
                  f"{'ok' if ok else 'OVER'} |", flush=True)
    return failures


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
    ap.add_argument("--scheduler", action="store_true",
                    help="only the scheduler on synthetic problems at scale")
    args = ap.parse_args(argv)
    if args.scheduler:
        return 1 if scheduler_table() else 0
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
