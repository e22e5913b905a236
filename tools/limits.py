"""Check that every stage holds ``--time-limit`` and a memory bound on huge models.

    python tools/limits.py                 # the table (a few minutes, up to ~2 GB RAM)
    python tools/limits.py --time-limit 5 --write docs/limits.md   # the table, in place

Models (built in memory by ``tools/make_bad_inputs.py``, written to a temp dir):

* ``chain10k``, ``chain50k``: one chain of 10,000 / 50,000 ADD and RELU ops on [1, 4].
* ``fanout5k_concat``: 5,000 RELUs of one input joined by one CONCATENATION.
* ``fanout5k_add``: the same 5,000 RELUs joined by a balanced tree of ADDs.
* ``dangling100k``: a 10-op chain plus 100,000 activation tensors nothing touches (TFLM
  gives them the lifetime [-1, -1]).
* ``nested_if1500``, ``nested_if3000``: IFs nested 1,500 / 3,000 deep, every level's else
  branch one shared leaf (one subgraph per level; at 3,000 more buffer pairs are alive
  together than the offline planner holds, so TFLM plans that arena online).

Each run is the real CLI (``tflite-reorder IN OUT --time-limit 5 --no-verify --json``) in a
subprocess; peak RSS and CPU time come from ``os.wait4``'s rusage of that child (on a
shared machine the CPU time is what the wall time would be when idle). A run passes when its
wall time is within 1.1 x the limit + 3 s and its peak RSS under 2 GB, and the written
model keeps the input's operator count.
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

TIME_LIMIT = 5.0
ALLOWANCE = 3.0  # seconds beyond 1.1 x --time-limit for reading, checking and writing
MAX_RSS_MB = 2048
MODELS = {
    "chain10k": lambda: mb.long_chain(10_000),
    "chain50k": lambda: mb.long_chain(50_000),
    "fanout5k_concat": lambda: mb.fan_out(5_000, "concat"),
    "fanout5k_add": lambda: mb.fan_out(5_000, "add"),
    "dangling100k": lambda: mb.dangling_tensors(100_000),
    "nested_if1500": lambda: mb.nested_ifs(1_500),
    "nested_if3000": lambda: mb.nested_ifs(3_000),
}


def run_cli(src: Path, time_limit: float, tmp: Path) -> dict:
    """One CLI run in a child process: exit code, JSON report, wall time, peak RSS."""
    dst = tmp / f"out_{src.stem}.tflite"
    cmd = [sys.executable, "-c", "from tflite_reorder.cli import main; main()", str(src),
           str(dst), "--no-verify", "--json", "--time-limit", str(time_limit)]
    t0 = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    code = os.waitstatus_to_exitcode(status)
    report = json.loads(stdout) if code == 0 and stdout.strip() else {}
    return {"code": code, "error": stderr.strip()[:200], "report": report, "wall": wall,
            "cpu": usage.ru_utime + usage.ru_stime,  # the wall time on an idle machine
            "rss_mb": usage.ru_maxrss / 1024}  # kB on Linux


def table(rows: list[tuple[str, int, dict]], time_limit: float) -> list[str]:
    bound = 1.1 * time_limit + ALLOWANCE
    lines = [
        f"| model | ops | tensors | wall s (bound {bound:g}) | CPU s | search s | peak RSS MB "
        f"(bound {MAX_RSS_MB}) | peak after B | optimal | stopped | check |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for name, tensors, r in rows:
        rep = r["report"]
        sub = (rep.get("per_subgraph") or [{}])[0]
        ok = r["code"] == 0 and r["wall"] <= bound and r["rss_mb"] < MAX_RSS_MB
        status = "ok" if ok else (f"exit {r['code']}: {r['error']}" if r["code"] else "OVER")
        lines.append(
            f"| {name} | {rep.get('ops', '-')} | {tensors} | {r['wall']:.2f} | {r['cpu']:.2f} | "
            f"{rep.get('schedule_seconds', 0):.2f} | {r['rss_mb']:.0f} | "
            f"{rep.get('peak_after', '-')} | {rep.get('optimal', '-')} | "
            f"{sub.get('stopped') or '-'} | {status} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--time-limit", type=float, default=TIME_LIMIT)
    ap.add_argument("--only", default=None, help="comma-separated model names")
    ap.add_argument("--write", type=Path, default=None, help="also write the table here")
    args = ap.parse_args(argv)
    names = args.only.split(",") if args.only else list(MODELS)
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name in names:
            src = tmp / f"{name}.tflite"
            data = MODELS[name]()
            src.write_bytes(data)
            from tflite_reorder.fastread import read_lite

            tensors = sum(len(sg.tensors) for sg in read_lite(data).subgraphs)
            r = run_cli(src, args.time_limit, tmp)
            rows.append((name, tensors, r))
            print(table([rows[-1]], args.time_limit)[-1], flush=True)
    lines = table(rows, args.time_limit)
    print("\n".join(lines))
    if args.write:
        _write(args.write, lines, args.time_limit, (load_before, os.getloadavg()[0]))
    bound = 1.1 * args.time_limit + ALLOWANCE
    bad = [n for n, _, r in rows
           if r["code"] != 0 or r["wall"] > bound or r["rss_mb"] >= MAX_RSS_MB]
    return 1 if bad else 0


def _write(path: Path, lines: list[str], time_limit: float, load: tuple[float, float]
           ) -> None:
    """Replace the table between the markers in ``path`` (appended when there are none),
    saying how it was made: command, commit, cores and the machine's load (1-minute load
    average before and after: on a shared machine wall times grow with it, CPU times less)."""
    text = path.read_text() if path.exists() else ""
    start, end = "<!-- limits-table -->", "<!-- /limits-table -->"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=Path(__file__).resolve().parent).stdout.strip()
    how = (f"`python tools/limits.py --time-limit {time_limit:g} --write docs/limits.md` "
           f"(commit {commit or 'unknown'}, {os.cpu_count()} cores, load average "
           f"{load[0]:.1f} before and {load[1]:.1f} after the run):")
    block = "\n".join([start, "", how, "", *lines, "", end])
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
