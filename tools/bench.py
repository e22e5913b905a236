#!/usr/bin/env python3
"""Benchmark tflite-reorder on the shipped models and on growing RandWire stages.

Usage::

    python tools/bench.py                                  # model table (stdout)
    python tools/bench.py --markdown docs/results.md --plot docs/arena.png \\
        --scaling docs/scaling.png                         # everything, as shipped in docs/

Model table (one fresh subprocess per model, so peak RSS is that model's alone): ops, peak
live bytes of the stored order and of our order (TFLM lifetimes, in-place sharing on),
ratio, optimality certificate and lower bound, scheduling seconds, the planned arena head,
TFLM's measured head/total for the input model (TFLM's own planner) and for our output,
the tool's peak RSS (read + schedule + plan + write + verify) and NAS throughput
(``api.peak_memory`` calls per second on that model).

Scaling (``--scaling``): RandWire stages built directly as ``memory.Problem``s (Watts-
Strogatz k=4, p=0.75, edges oriented low -> high; a node = ADD chain over its inputs -> one
op; sinks summed by ADDs into the stage output; every tensor the same size; no in-place
sharing). Our ``scheduler.schedule`` against an exhaustive memoised search over executed-op
sets (tflite-tools style), both in this process, each stopped at a time (and, for the
baseline, memory) limit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

try:
    from wsgraph import ws_graph  # tools/ is on sys.path when run as a script
except ImportError:  # imported as tools.bench (tests/test_searchcore.py)
    from tools.wsgraph import ws_graph

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parent.parent
SIZES = "8,12,16,24,32,48,64,80,96,128,16x2,32x2,48x2"  # nodes[xstages]
TENSOR = 9216  # bytes of every synthetic tensor (24x24x16 int8)


# =============================================================================================
# Per-model measurements (run in a child process: ``bench.py --one MODEL``)


def measure_model(path: Path, time_limit: float, nas_seconds: float) -> dict:
    """Everything the model table shows, for one model, in this (fresh) process."""
    from tflite_reorder import api, tflm

    raw = path.read_bytes()
    verified = True
    try:
        result = api.optimize(path, time_limit=time_limit, verify=True)
    except api.VerificationError:
        verified = False
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    if not verified:  # still measure what we would have written
        result = api.optimize(path, time_limit=time_limit, verify=False)
    r = result.report
    row = {
        "model": path.stem, "ops": r.ops, "subgraphs": r.subgraphs,
        "peak_before": r.peak_before, "peak_after": r.peak_after, "ratio": r.ratio,
        "optimal": r.optimal, "lower_bound": r.lower_bound,
        "schedule_seconds": r.schedule_seconds, "arena_planned": r.arena_planned,
        "tflm_greedy_head_our_order": r.tflm_greedy_head, "verified": verified,
        "shape_fixes": len(r.shape_fixes), "rss_mib": rss_mib,
    }
    if tflm.available():
        before, after = tflm.measure_arena(raw), tflm.measure_arena(result.data)
        row.update(tflm_head_before=before.head, tflm_total_before=before.total,
                   tflm_head_after=after.head, tflm_total_after=after.total)
    rewritten = api.optimize(path, rewrite=True, time_limit=time_limit, verify=False)
    if rewritten.report.rewrites and tflm.available():
        row["tflm_head_rewrite"] = tflm.measure_arena(rewritten.data).head
    row["nas_per_second"] = nas_throughput(raw, time_limit, nas_seconds)
    return row


def nas_throughput(raw: bytes, time_limit: float, seconds: float) -> float:
    """Candidates per second a NAS loop gets from ``api.peak_memory`` on this model."""
    from tflite_reorder import api

    n, t0 = 0, time.perf_counter()
    while n == 0 or time.perf_counter() - t0 < seconds:
        api.peak_memory(raw, time_limit=time_limit)
        n += 1
    return n / (time.perf_counter() - t0)


def run_child(path: Path, time_limit: float, nas_seconds: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", str(path),
           "--time-limit", str(time_limit), "--nas-seconds", str(nas_seconds)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30 * time_limit + 300)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"model": path.stem, "error": tail}
    return json.loads(lines[-1])


def bench_models(models: list[Path], time_limit: float, nas_seconds: float) -> list[dict]:
    rows = []
    for path in models:
        t0 = time.perf_counter()
        row = run_child(path, time_limit, nas_seconds)
        print(f"  {path.stem}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def pick_models(models_dir: Path, only: list[str] | None) -> list[Path]:
    """The main models: everything but the one-op ``inplace_*`` kernel-check models."""
    found = sorted(p for p in models_dir.glob("*.tflite") if not p.stem.startswith("inplace_"))
    if only:
        found = [p for p in found if p.stem in only]
    return found


# =============================================================================================
# Synthetic RandWire stages and the exhaustive baseline


def randwire_problem(n_nodes: int, seed: int = 1, size: int = TENSOR, stages: int = 1):
    """RandWire stages as one ``memory.Problem``: tensor 0 is the network input.

    ``stages`` > 1 chains stages (seeds ``seed``, ``seed + 1``, ...), each stage's output
    feeding the next one's nodes that have no predecessor.
    """
    from tflite_reorder.memory import Problem

    op_in: list[tuple[int, ...]] = []
    op_out: list[tuple[int, ...]] = []
    n_tensors = 1

    def op(*inputs: int) -> int:
        nonlocal n_tensors
        op_in.append(inputs)
        op_out.append((n_tensors,))
        n_tensors += 1
        return n_tensors - 1

    def add_chain(ts: list[int]) -> int:
        h = ts[0]
        for t in ts[1:]:
            h = op(h, t)  # ADD
        return h

    out = 0
    for k in range(stages):
        preds: dict[int, list[int]] = {v: [] for v in range(n_nodes)}
        has_succ = set()
        for a, b in ws_graph(n_nodes, 4, 0.75, seed + k):
            preds[b].append(a)
            has_succ.add(a)
        node_out: dict[int, int] = {}
        for v in range(n_nodes):
            ins = [node_out[u] for u in preds[v]] or [out]
            node_out[v] = op(add_chain(ins))  # the node's op (ReLU-conv-BN in RandWire)
        out = add_chain([node_out[v] for v in range(n_nodes) if v not in has_succ])
    producer = [-1] * n_tensors
    consumers: list[list[int]] = [[] for _ in range(n_tensors)]
    for i, (ins, outs) in enumerate(zip(op_in, op_out, strict=True)):
        for t in outs:
            producer[t] = i
        for t in dict.fromkeys(ins):
            consumers[t].append(i)
    n = len(op_in)
    return Problem(
        n_ops=n, size=(size,) * n_tensors, producer=tuple(producer),
        consumers=tuple(tuple(c) for c in consumers),
        pinned=tuple(t == out for t in range(n_tensors)), inputs=(0,),
        op_in=tuple(op_in), op_out=tuple(op_out),
        preds=tuple(tuple(sorted({producer[t] for t in ins if producer[t] >= 0}))
                    for ins in op_in),
        extra=(0,) * n, alias=((),) * n,
    )


class _Stop(Exception):
    pass


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass
class BaselineResult:
    status: str  # "optimal", "time limit", "memory limit"
    peak: int | None
    states: int
    seconds: float
    memo_mib: float  # the memo's own size (dict + keys + values) when it stopped


def exhaustive_baseline(p, time_limit: float = 60.0, mem_limit: float = 4e9) -> BaselineResult:
    """Minimum peak by memoised recursion over executed-op sets (no pruning, no bounds).

    The value of a set S is the best max-step-cost of any completion from S, so the memo
    holds one entry per downset reached: exact, and exponential in the graph's width.
    """
    from tflite_reorder.memory import initial_live, peak, resident_after_inputs

    n = p.n_ops
    full = (1 << n) - 1
    pred_mask = [sum(1 << u for u in p.preds[v]) for v in range(n)]
    step_out = [sum(p.size[t] for t in p.op_out[v]) + p.extra[v] for v in range(n)]
    kept = [sum(p.size[t] for t in p.op_out[v] if p.consumers[t] or p.pinned[t])
            for v in range(n)]
    dying = [[(sum(1 << c for c in p.consumers[t]), p.size[t]) for t in dict.fromkeys(p.op_in[v])
              if not p.pinned[t] and p.size[t]] for v in range(n)]
    memo: dict[int, int] = {}
    calls = [0]
    t0, rss0 = time.perf_counter(), _rss_bytes()
    rss_seen = [rss0]

    def check() -> None:
        rss_seen[0] = max(rss_seen[0], _rss_bytes())
        if time.perf_counter() - t0 > time_limit:
            raise _Stop("time limit")
        if rss_seen[0] - rss0 > mem_limit:
            raise _Stop("memory limit")

    def rec(S: int, mem: int) -> int:
        if S == full:
            return 0
        hit = memo.get(S)
        if hit is not None:
            return hit
        calls[0] += 1
        if not calls[0] & 0x3FFF:
            check()
        best = 1 << 62
        for v in range(n):
            bit = 1 << v
            if S & bit or pred_mask[v] & ~S:
                continue
            S2 = S | bit
            freed = sum(sz for cm, sz in dying[v] if not cm & ~S2)
            val = max(mem + step_out[v], rec(S2, mem + kept[v] - freed))
            best = min(best, val)
        memo[S] = best
        return best

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 4 * n + 1000))
    try:
        value = max(initial_live(p), rec(0, resident_after_inputs(p)))
        status = "optimal"
    except _Stop as stop:
        value, status = None, str(stop)
    finally:
        sys.setrecursionlimit(limit)
    seconds = time.perf_counter() - t0
    states = len(memo)
    memo_bytes = sys.getsizeof(memo) + sum(map(sys.getsizeof, memo)) \
        + sum(map(sys.getsizeof, memo.values()))
    if value is not None:  # the memo's answer must be an order with that peak
        order = _baseline_order(p, memo, pred_mask, full)
        assert peak(p, order) == value, "baseline order does not reach its own value"
    memo.clear()
    return BaselineResult(status, value, states, seconds, memo_bytes / 2**20)


def _baseline_order(p, memo: dict[int, int], pred_mask: list[int], full: int) -> list[int]:
    """Follow the memo: at each set take an op whose completion achieves the set's value."""
    from tflite_reorder.memory import step_costs

    order: list[int] = []
    S = 0
    while S != full:
        ready = [v for v in range(p.n_ops) if not S >> v & 1 and not pred_mask[v] & ~S]
        target = memo[S]

        def total(v: int, S: int = S) -> int:
            S2 = S | 1 << v
            return max(step_costs(p, order + [v])[-1], memo.get(S2, 0) if S2 != full else 0)

        v = next(v for v in ready if total(v) <= target)
        order.append(v)
        S |= 1 << v
    return order


@dataclass
class ScalingRow:
    nodes: int
    stages: int
    ops: int
    ours_seconds: float
    ours_peak: int
    ours_optimal: bool
    ours_lower_bound: int
    ours_states: int
    ours_rss_mib: float  # peak RSS of the child process after our scheduler ran
    base_status: str
    base_seconds: float | None
    base_peak: int | None
    base_states: int | None
    base_memo_mib: float | None

    @property
    def gap(self) -> float:
        return self.ours_peak / self.ours_lower_bound - 1.0


def scaling_one(n: int, stages: int, seed: int, time_limit: float, base_limit: float | None,
                base_mem: float) -> ScalingRow:
    """One network in this (fresh) process: ours first (its RSS), then the baseline."""
    from tflite_reorder.scheduler import schedule

    p = randwire_problem(n, seed, stages=stages)
    ours = schedule(p, time_limit=time_limit, max_states=10**9)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if base_limit is None:
        base = BaselineResult("not run (stopped at a smaller size)", None, 0, 0.0, 0.0)
    else:
        base = exhaustive_baseline(p, base_limit, base_mem)
    if base.peak is not None and ours.optimal and base.peak != ours.peak:
        raise AssertionError(f"{n} nodes: baseline {base.peak} != scheduler {ours.peak}")
    ran = not base.status.startswith("not run")
    return ScalingRow(
        n, stages, p.n_ops, ours.seconds, ours.peak, ours.optimal, ours.lower_bound,
        ours.states, rss, base.status, base.seconds if ran else None, base.peak,
        base.states if ran else None, base.memo_mib if ran else None)


def bench_scaling(sizes, seed: int, time_limit: float, base_limit: float, base_mem: float,
                  skip_after_timeout: bool) -> list[ScalingRow]:
    """Every ``(nodes, stages)`` in ``sizes`` in a child process of its own (so the RSS
    column is that network's alone), ours and the exhaustive baseline in the same one."""
    rows: list[ScalingRow] = []
    gave_up: set[int] = set()  # stage counts whose baseline stopped at a smaller size
    for n, stages in sizes:
        skip = skip_after_timeout and stages in gave_up
        cmd = [sys.executable, str(Path(__file__).resolve()), "--scaling-one",
               f"{n}x{stages}", "--seed", str(seed), "--time-limit", str(time_limit),
               "--baseline-seconds", str(-1.0 if skip else base_limit),
               "--baseline-gb", str(base_mem / 1e9)]
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=3 * (time_limit + base_limit) + 120)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise SystemExit(f"scaling {n}x{stages}: {proc.stderr.strip()[-500:]}")
        row = ScalingRow(**json.loads(lines[-1]))
        if row.base_status != "optimal" and not row.base_status.startswith("not run"):
            gave_up.add(stages)
        rows.append(row)
        print(f"  {n} nodes x {stages} / {row.ops} ops: ours {row.ours_seconds:.2f} s "
              f"({'optimal' if row.ours_optimal else f'gap {100 * row.gap:.1f} %'}), "
              f"{row.ours_rss_mib:.0f} MiB; baseline {row.base_status}",
              file=sys.stderr, flush=True)
    return rows


# =============================================================================================
# Tables and plots


def _b(n) -> str:
    """Exact bytes: KiB with one decimal hides the 16-byte wins."""
    return "-" if n is None else str(n)


MODEL_COLUMNS = [
    ("model", lambda r: r["model"]),
    ("ops", lambda r: str(r["ops"])),
    ("peak before B", lambda r: _b(r["peak_before"])),
    ("peak after B", lambda r: _b(r["peak_after"])),
    ("ratio", lambda r: f"{r['ratio']:.2f}x"),
    ("optimal", lambda r: "yes" if r["optimal"] else "no"),
    ("lower bound B", lambda r: _b(r["lower_bound"])),
    ("sched s", lambda r: f"{r['schedule_seconds']:.3f}"),
    ("arena planned B", lambda r: _b(r["arena_planned"])),
    ("TFLM head before B", lambda r: _b(r.get("tflm_head_before"))),
    ("TFLM total before B", lambda r: _b(r.get("tflm_total_before"))),
    ("TFLM head after B", lambda r: _b(r.get("tflm_head_after"))),
    ("TFLM total after B", lambda r: _b(r.get("tflm_total_after"))),
    ("verified", lambda r: "yes" if r["verified"] else "FAILED"),
    ("peak RSS MiB", lambda r: f"{r['rss_mib']:.0f}"),
    ("NAS cand/s", lambda r: f"{r['nas_per_second']:.1f}"),
]


def model_columns(rows: list[dict]) -> list:
    """The model table's columns; the rewrites column only when some model was rewritten."""
    cols = list(MODEL_COLUMNS)
    if any(r.get("tflm_head_rewrite") is not None for r in rows):
        cols.insert(13, ("TFLM head rewrites B", lambda r: _b(r.get("tflm_head_rewrite"))))
    return cols


def _scaling_columns(limit: float) -> list:
    def base_time(r) -> str:
        if r["base_seconds"] is None:
            return "-"
        mark = "" if r["base_status"] == "optimal" else ">"
        return f"{mark}{r['base_seconds']:.2f}"

    def gap(r) -> str:
        return f"{100 * (r['ours_peak'] / r['ours_lower_bound'] - 1):.1f}"

    return [
        ("nodes", lambda r: str(r["nodes"]) if r["stages"] == 1
         else f"{r['stages']} x {r['nodes']}"),
        ("ops", lambda r: str(r["ops"])),
        ("ours s", lambda r: f"{r['ours_seconds']:.3f}"),
        ("ours peak B", lambda r: _b(r["ours_peak"])),
        ("proven bound B", lambda r: _b(r["ours_lower_bound"])),
        ("gap %", gap),
        ("proven", lambda r: "yes" if r["ours_optimal"] else "no"),
        ("ours states", lambda r: str(r["ours_states"])),
        ("ours RSS MiB", lambda r: f"{r['ours_rss_mib']:.0f}"),
        ("baseline s", base_time),
        ("baseline result", lambda r: r["base_status"]),
        ("baseline peak B", lambda r: _b(r["base_peak"])),
        ("baseline states", lambda r: "-" if r["base_states"] is None else str(r["base_states"])),
        ("baseline memo MiB", lambda r: "-" if r["base_memo_mib"] is None
         else f"{r['base_memo_mib']:.1f}"),
    ]


def _cells(rows: list[dict], columns) -> list[list[str]]:
    out = []
    for r in rows:
        if "error" in r:
            out.append([r["model"], f"error: {r['error']}"] + [""] * (len(columns) - 2))
        else:
            out.append([f(r) for _, f in columns])
    return out


def text_table(rows: list[dict], columns) -> str:
    head = [c for c, _ in columns]
    body = _cells(rows, columns)
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    fmt = lambda cells: "  ".join(  # noqa: E731
        c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths,
                                                                             strict=True)))
    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *map(fmt, body)])


def markdown_table(rows: list[dict], columns) -> str:
    head = [c for c, _ in columns]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in _cells(rows, columns)]
    return "\n".join(lines)


def plot_arena(rows: list[dict], path: Path) -> None:
    """Per model: TFLM-measured head of the converter's order, of ours (+ rewrites if any)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = [r for r in rows if "tflm_head_before" in r]
    series = [("converter order, TFLM planner", "tflm_head_before"),
              ("our order + offline plan", "tflm_head_after")]
    if any(r.get("tflm_head_rewrite") is not None for r in rows):
        series.append(("with rewrites", "tflm_head_rewrite"))
    x = np.arange(len(rows))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(8, 0.75 * len(rows) + 2), 5))
    for i, (label, key) in enumerate(series):
        pos = x + (i - (len(series) - 1) / 2) * width
        vals = [r.get(key) for r in rows]
        ax.bar(pos, [(v or 0) / 1024 for v in vals], width, label=label)
        for xi, v, r in zip(pos, vals, rows, strict=True):
            saved = 1 - v / r["tflm_head_before"] if i and v else 0
            if saved >= 0.01:  # each bar's cut against the converter's order
                ax.annotate(f"-{saved:.0%}", (xi, v / 1024), ha="center", va="bottom",
                            fontsize=7)
    top = max(r["tflm_head_before"] for r in rows) / 1024
    ax.set_ylim(0, top * 1.3)
    names = [r["model"] + (" *" if r.get("shape_fixes") else "") for r in rows]
    ax.set_xticks(x, names, rotation=45, ha="right", fontsize=8)
    if any(r.get("shape_fixes") for r in rows):
        fig.text(0.01, 0.01, "* stored shapes smaller than what the kernels write: TFLM "
                 "under-allocates the input model; our output stores the true shapes",
                 fontsize=7)
    ax.set_ylabel("TFLM arena head (KiB), measured")
    ax.set_title("TFLite Micro arena (activations) per model: measured by TFLM")
    ax.legend(loc="upper left", ncols=len(series), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_scaling(rows: list[dict], path: Path, limit: float) -> None:
    """Seconds (ours and the baseline) and our gap to the proven bound, against ops."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, gx) = plt.subplots(1, 2, figsize=(11, 4.5))
    for stages, marker in ((1, "o"), (2, "D")):
        mine = [r for r in rows if r["stages"] == stages]
        if not mine:
            continue
        label = "one stage" if stages == 1 else f"{stages} stages"
        ax.plot([r["ops"] for r in mine], [r["ours_seconds"] for r in mine], marker + "-",
                color="C0", label=f"tflite-reorder, {label}")
        open_ = [r for r in mine if not r["ours_optimal"]]
        if open_:
            ax.plot([r["ops"] for r in open_], [r["ours_seconds"] for r in open_], marker,
                    mfc="white", color="C0", ms=9, mew=2, zorder=5)
        gx.plot([r["ops"] for r in mine],
                [100 * (r["ours_peak"] / r["ours_lower_bound"] - 1) for r in mine],
                marker + "-", color="C0", label=label)
        for r in mine:
            ax.annotate(str(r["nodes"]), (r["ops"], r["ours_seconds"]),
                        textcoords="offset points", xytext=(0, -12), ha="center", fontsize=7)
    done = [r for r in rows if r["base_status"] == "optimal"]
    stopped = [r for r in rows if r["base_seconds"] is not None and r["base_status"] != "optimal"]
    ax.plot([r["ops"] for r in done], [r["base_seconds"] for r in done], "s", color="C1",
            label="exhaustive memoised search (baseline)")
    if stopped:
        ax.plot([r["ops"] for r in stopped], [r["base_seconds"] for r in stopped], "x",
                color="C1", ms=10, mew=2, label="baseline stopped (time/memory limit)")
    ax.axhline(limit, ls=":", color="gray", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("operators (RandWire WS k=4 p=0.75; nodes per stage in labels)")
    ax.set_ylabel("seconds (hollow: stopped at the time limit, not proven)")
    ax.set_title("Scheduling time")
    ax.legend(fontsize=8)
    gx.axhline(5, ls=":", color="gray", lw=0.8)
    gx.set_xlabel("operators")
    gx.set_ylabel("best peak above the proven lower bound, %")
    gx.set_title("Gap (0 = proven optimal)")
    gx.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_markdown(path: Path, models: list[dict], scaling: list[dict] | None,
                   args: argparse.Namespace, plots: dict[str, Path | None]) -> None:
    from tflite_reorder import __version__

    parts = [
        "# Benchmark results",
        "",
        f"Generated by `python tools/bench.py` (tflite-reorder {__version__}) on "
        f"{platform.machine()} / Python {platform.python_version()} / {os.cpu_count()} "
        f"cores, {time.strftime('%Y-%m-%d')}. Do not edit by hand.",
        "",
    ]
    if models:
        parts += [
            "## Models (`models/*.tflite`, except the one-op `inplace_*` kernel checks)", "",
            markdown_table(models, model_columns(models)), "",
            "Peaks are live arena bytes under TFLM's lifetime rules (16-byte rounded, true "
            "shapes): *before* = stored (converter) order, no sharing; *after* = our order "
            "with in-place sharing. *arena planned* is the head of the offline plan written "
            "into the model. *TFLM head/total before* = TFLM (`print_allocations`) on the "
            "input model with its own greedy planner; *after* = TFLM on our output (head = "
            "activations, total = head + persistent tail). Models with SPACE_TO_BATCH_ND "
            "(darts_*, dilated_int8) store shapes smaller than what the kernels write, so "
            "TFLM's *before* head under-allocates them (README: TFLM hazard); our output stores "
            "the true shapes. *peak RSS* is the whole tool run (read, schedule, plan, "
            "write, verify with LiteRT and TFLM) in a fresh process. *NAS cand/s* = "
            f"`api.peak_memory` calls per second on that model (~{args.nas_seconds:g} s of "
            "repeats).", "",
        ]
        if plots.get("arena"):
            parts += [f"![TFLM-measured arena per model]({plots['arena'].name})", ""]
    if scaling:
        parts += [
            "## Scheduling time vs graph size (synthetic RandWire stages)", "",
            markdown_table(scaling, _scaling_columns(args.baseline_seconds)), "",
            f"Watts-Strogatz k=4, p=0.75 stages (seed {args.seed}) as synthetic problems: "
            "a node is an ADD chain over its inputs followed by one op; sinks are summed "
            f"into the stage output; every tensor {TENSOR} B; no in-place sharing. *ours* = "
            f"`scheduler.schedule` (time limit {args.time_limit:g} s). *baseline* = "
            "exhaustive memoised recursion over executed-op sets (tflite-tools style), same "
            f"process, stopped after {args.baseline_seconds:g} s or "
            f"{args.baseline_gb:g} GB of RSS growth ('>' = stopped, not finished); "
            "*states* = memo entries (downsets evaluated), *memo MiB* = the memo's size."
            + (" After the baseline is stopped once, larger sizes are not run."
               if args.baseline_skip else ""), "",
        ]
        if plots.get("scaling"):
            parts += [f"![Scheduling time vs graph size]({plots['scaling'].name})", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts))


def write_scaling_md(path: Path, rows: list[dict], args: argparse.Namespace) -> None:
    from tflite_reorder import __version__

    parts = [
        "# Exact scheduling at scale (synthetic RandWire networks)", "",
        f"Generated by `python tools/bench.py --no-models --time-limit {args.time_limit:g} "
        f"--baseline-seconds {args.baseline_seconds:g}"
        + (" --baseline-skip" if args.baseline_skip else "")
        + f" --scaling {args.scaling} --scaling-md {path}` (tflite-reorder {__version__}, "
        f"{platform.machine()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}; "
        f"1-minute load average {args.load_before:.1f} before, {os.getloadavg()[0]:.1f} "
        "after: on a shared machine times are inflated and the limited searches do less). "
        "Do not edit by hand.", "",
        markdown_table(rows, _scaling_columns(args.baseline_seconds)), "",
        f"Watts-Strogatz k=4, p=0.75 stages (seed {args.seed}; stage i of a multi-stage "
        "network uses seed + i) as synthetic problems: a node is an ADD chain over its "
        "inputs followed by one op; sinks are summed into the stage output, which feeds the "
        f"next stage; every tensor {TENSOR} B; no in-place sharing. *ours* = "
        f"`scheduler.schedule` with a {args.time_limit:g} s limit; *proven bound* = its "
        "certified lower bound, *gap* = best peak over that bound (0 = proven optimal); "
        "*RSS* = peak resident memory of the process after our scheduler ran (each network "
        "in a fresh process). *baseline* = exhaustive memoised recursion over executed-op "
        f"sets in the same process, stopped after {args.baseline_seconds:g} s or "
        f"{args.baseline_gb:g} GB ('>' = stopped)."
        + (" Once it is stopped, larger networks of that kind are not run."
           if args.baseline_skip else ""), "",
        f"![Scheduling time and gap vs size]({args.scaling.name})", "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts))


def schedule_times(models: list[Path], repeat_seconds: float = 0.5) -> dict[str, dict]:
    """``scheduler.schedule`` seconds per model (all subgraphs, as ``peak_memory`` calls it:
    no in-place sharing), the fastest of repeats (the machine is shared: the minimum is the
    least disturbed run); works on older versions of the package."""
    from tflite_reorder import shapes
    from tflite_reorder.flatbuffer_io import load_model
    from tflite_reorder.graph import build_graph
    from tflite_reorder.memory import build_problem, nested_extra
    from tflite_reorder.scheduler import schedule

    infer = getattr(shapes, "true_shapes", None) or shapes.infer_shapes
    out = {}
    for path in models:
        model = load_model(path).model
        graph = build_graph(model, infer(model))
        orders = graph.stored_orders()
        probs = [build_problem(sg, nested_extra(graph, orders, s, False), False)
                 for s, sg in enumerate(graph.subgraphs)]
        runs, t0 = [], time.perf_counter()
        while not runs or time.perf_counter() - t0 < repeat_seconds:
            t = time.perf_counter()
            res = [schedule(p, time_limit=60) for p in probs]
            runs.append(time.perf_counter() - t)
        out[path.stem] = {"ops": sum(p.n_ops for p in probs), "seconds": min(runs),
                          "optimal": all(r.optimal for r in res),
                          "states": sum(r.states for r in res)}
    return out


def _sched_child(src: Path | None, args: argparse.Namespace) -> dict[str, dict]:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--sched-one",
           "--models", str(args.models)] + (["--only", *args.only] if args.only else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"schedule times ({src or 'this tree'}): {proc.stderr[-500:]}")
    return json.loads(lines[-1])


def write_sched_speed(args: argparse.Namespace) -> None:
    """Before/after table of ``schedule`` seconds per shipped model (alternating runs)."""
    from tflite_reorder import __version__

    after = _sched_child(None, args)
    before = _sched_child(args.sched_baseline, args) if args.sched_baseline else {}
    for name, again in _sched_child(None, args).items():  # a second round, interleaved
        after[name]["seconds"] = min(after[name]["seconds"], again["seconds"])
    if args.sched_baseline:
        for name, again in _sched_child(args.sched_baseline, args).items():
            before[name]["seconds"] = min(before[name]["seconds"], again["seconds"])
    rows = []
    for name, a in after.items():
        b = before.get(name)
        rows.append("| {} | {} | {} | {:.4f} | {} | {} | {} |".format(
            name, a["ops"], f"{b['seconds']:.4f}" if b else "-", a["seconds"],
            f"{b['seconds'] / a['seconds']:.2f}x" if b else "-",
            "yes" if a["optimal"] else "no", a["states"]))
    text = "\n".join([
        "# Scheduler speed on the shipped models", "",
        f"Generated by `python tools/bench.py --no-models --sched-speed {args.sched_speed}"
        + (" --sched-baseline OLD/src" if args.sched_baseline else "") + "` (tflite-reorder "
        f"{__version__}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}). "
        "Do not edit by hand.", "",
        "`scheduler.schedule` seconds per model (every subgraph, no in-place sharing, as "
        "`peak_memory` calls it; the fastest of repeats over ~0.5 s, in two interleaved "
        "rounds, because the machine is shared; reading the model is not included). "
        "*before* = the package at the baseline source tree, *after* = this tree; both in "
        "fresh processes on the same machine.", "",
        "| model | ops | before s | after s | speed-up | proven | states |",
        "|---|---:|---:|---:|---:|---|---:|", *rows, ""])
    args.sched_speed.parent.mkdir(parents=True, exist_ok=True)
    args.sched_speed.write_text(text)
    print(text)


# =============================================================================================


def bench_nas(args: argparse.Namespace) -> None:
    """``--nas``: candidates/s of ``api.peak_memory`` per model, baseline commit vs now."""
    import nasbench

    print("nas:", file=sys.stderr)
    limit = min(args.time_limit, 10.0)  # peak_memory's default: what a NAS loop passes
    rows = nasbench.run(ROOT, pick_models(args.models, args.only), args.nas_seconds, limit,
                        args.nas_base or nasbench.BASE_REV)
    header = (f"Generated by `python tools/bench.py --no-models --nas {args.nas}` on "
              f"{platform.machine()} / Python {platform.python_version()} / {os.cpu_count()} "
              f"cores (shared with other jobs: expect noise), {time.strftime('%Y-%m-%d')}. "
              "Do not edit by hand.")
    args.nas.parent.mkdir(parents=True, exist_ok=True)
    args.nas.write_text(nasbench.markdown(rows, args.nas_seconds, limit, header))
    if args.json:
        args.json.with_suffix(".nas.json").write_text(json.dumps(rows, indent=1))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, default=ROOT / "models")
    ap.add_argument("--only", nargs="*", help="model names (stems) to run")
    ap.add_argument("--no-models", action="store_true", help="skip the model table")
    ap.add_argument("--time-limit", type=float, default=60.0, help="scheduler time limit (s)")
    ap.add_argument("--nas-seconds", type=float, default=1.0)
    ap.add_argument("--markdown", type=Path)
    ap.add_argument("--plot", type=Path, help="grouped bar chart of TFLM-measured arenas")
    ap.add_argument("--scaling", type=Path, help="run the scaling study and plot it here")
    ap.add_argument("--sizes", default=SIZES, help="nodes per stage, NxK for K stages")
    ap.add_argument("--scaling-md", type=Path, help="write the scaling table here")
    ap.add_argument("--scaling-one", help=argparse.SUPPRESS)
    ap.add_argument("--sched-speed", type=Path,
                    help="write schedule() seconds per shipped model here (markdown)")
    ap.add_argument("--sched-baseline", type=Path,
                    help="src/ of an older tflite-reorder to compare --sched-speed against")
    ap.add_argument("--sched-one", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--baseline-seconds", type=float, default=60.0)
    ap.add_argument("--baseline-gb", type=float, default=4.0)
    ap.add_argument("--baseline-skip", action="store_true",
                    help="do not run the baseline at larger sizes once it was stopped")
    ap.add_argument("--json", type=Path, help="also dump the raw numbers as JSON")
    ap.add_argument("--nas", type=Path, help="NAS throughput of peak_memory before/after "
                    "(tools/nasbench.py), written as markdown here (e.g. docs/nas.md)")
    ap.add_argument("--nas-base", default=None, help="baseline commit for --nas")
    ap.add_argument("--rewrites", type=Path, help="run the rewrite benchmark, write it here")
    ap.add_argument("--densenet121", type=Path,
                    help="with --rewrites: also Keras DenseNet121 (make_densenet_models.py)")
    ap.add_argument("--set-bounds", type=Path, help="time the bounds over sets of ops "
                    "(tools/setbench.py, Python against C) and write the table here")
    ap.add_argument("--set-sizes", default="64,80,96,128", help="stages for --set-bounds")
    ap.add_argument("--set-seconds", type=float, default=10.0,
                    help="seconds per --set-bounds run")
    ap.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one:
        print(json.dumps(measure_model(args.one, args.time_limit, args.nas_seconds)))
        return 0
    if args.scaling_one:
        n, _, k = args.scaling_one.partition("x")
        base = None if args.baseline_seconds < 0 else args.baseline_seconds
        row = scaling_one(int(n), int(k or 1), args.seed, args.time_limit, base,
                          args.baseline_gb * 1e9)
        print(json.dumps(asdict(row)))
        return 0
    if args.sched_one:
        print(json.dumps(schedule_times(pick_models(args.models, args.only))))
        return 0
    if args.sched_speed:
        write_sched_speed(args)
    t0 = time.perf_counter()
    models: list[dict] = []
    if not args.no_models:
        print("models:", file=sys.stderr)
        models = bench_models(pick_models(args.models, args.only), args.time_limit,
                              args.nas_seconds)
        print(text_table(models, model_columns(models)), "\n", flush=True)
    if args.nas:
        bench_nas(args)
    if args.set_bounds:
        import setbench

        print("set bounds:", file=sys.stderr)
        command = (f"python tools/bench.py --no-models --set-bounds {args.set_bounds} "
                   f"--set-sizes {args.set_sizes} --set-seconds {args.set_seconds:g}")
        setbench.bench(args.set_bounds, [int(x) for x in args.set_sizes.split(",")],
                       args.set_seconds, command)
        print(args.set_bounds.read_text(), flush=True)
    scaling = None
    if args.scaling:
        args.load_before = os.getloadavg()[0]
        print("scaling:", file=sys.stderr)
        sizes = [(int(a), int(b or 1)) for a, _, b in
                 (x.partition("x") for x in args.sizes.split(","))]
        scaling = [asdict(r) for r in bench_scaling(
            sizes, args.seed, args.time_limit, args.baseline_seconds,
            args.baseline_gb * 1e9, args.baseline_skip)]
        print(text_table(scaling, _scaling_columns(args.baseline_seconds)), "\n", flush=True)
        plot_scaling(scaling, args.scaling, args.baseline_seconds)
        if args.scaling_md:
            write_scaling_md(args.scaling_md, scaling, args)
    if args.rewrites:
        from rewrite_bench import bench as bench_rewrites
        from rewrite_bench import markdown as rewrite_table
        from rewrite_bench import write_markdown as write_rewrites

        print("rewrites:", file=sys.stderr)
        rw_rows = bench_rewrites(args.models, args.densenet121, args.only)
        print(rewrite_table(rw_rows), "\n", flush=True)
        write_rewrites(args.rewrites, rw_rows)
    if args.plot and models:
        plot_arena(models, args.plot)
    if args.markdown:
        write_markdown(args.markdown, models, scaling, args,
                       {"arena": args.plot, "scaling": args.scaling})
    if args.json:
        args.json.write_text(json.dumps({"models": models, "scaling": scaling}, indent=1))
    print(f"total {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
