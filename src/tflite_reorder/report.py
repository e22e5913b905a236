"""What firmware engineers read: summaries, the per-operator table, a C header, a plot."""

from __future__ import annotations

import re
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .dtypes import align
from .memory import ArenaUse
from .results import OpRow, Report
from .version import __version__


def kib(n: int | None) -> str:
    return "-" if n is None else f"{n / 1024:.1f} KiB"


def peak_line(r: Report) -> str:
    """Before -> after in one line; a run that could not improve says so, "lower" only
    ever describes a fall (never-worse makes a rise a bug, reported as one)."""
    status = "optimal" if r.optimal else f"not proven optimal (gap {r.gap} B)"
    bound = f"{status}; lower bound {r.lower_bound} B"
    if r.peak_after < r.peak_before:
        return (f"peak before {r.peak_before} B ({kib(r.peak_before)}) -> after "
                f"{r.peak_after} B ({kib(r.peak_after)}), {r.ratio:.2f}x lower; {bound}")
    if r.peak_after == r.peak_before and r.optimal:
        return (f"peak {r.peak_after} B ({kib(r.peak_after)}) unchanged: the stored order is "
                f"already optimal")
    if r.peak_after == r.peak_before:
        return (f"peak {r.peak_after} B ({kib(r.peak_after)}) unchanged: no order found needs "
                f"less than the stored one; {bound}")
    return (f"peak ROSE from {r.peak_before} B to {r.peak_after} B (a bug: please report "
            f"it); {bound}")


def summary_lines(r: Report) -> list[str]:
    """The main command's human output: a few lines, the numbers that matter first."""
    lines = [f"{r.input} -> {r.output}: {r.ops} ops in {r.subgraphs} subgraph(s)",
             peak_line(r)]
    if r.arena_planned is not None:
        lines.append(
            f"arena plan head {r.arena_planned} B ({kib(r.arena_planned)}) by {r.plan_method}"
            f"; TFLM's own planner on this order: {r.tflm_greedy_head} B"
        )
        if r.plan_clock_cut:
            lines.append("arena planning was cut short by the wall clock (a loaded machine): "
                         "an idle machine may find a lower plan")
    if r.shape_fixes:
        n_shape = sum(1 for f in r.shape_fixes if f["kind"] == "shape")
        missing = sum(f["bytes_missing"] for f in r.shape_fixes if f["kind"] == "shape")
        n_pad = sum(1 for f in r.shape_fixes if f["kind"] == "uninitialized_padding")
        lines.append(
            f"input is unsafe in TFLM: {n_shape} stored shape(s) smaller than what kernels "
            f"write ({missing} B missing), {n_pad} SPACE_TO_BATCH_ND padding with an "
            f"uninitialised value; wrote true shapes and {len(r.repairs)} explicit PAD(s) "
            f"(input as it was: {r.peak_input} B)"
        )
    lines += rewrite_lines(r)
    if r.tflm_compat:
        lines.append(tflm_compat_line(r.tflm_compat))
    lines += tile_lines(r)
    if r.verification:
        for c in r.verification["comparisons"]:
            verdict = "bit-identical" if c["identical"] else f"max diff {c['max_abs_diff']:g}"
            lines.append(f"verified with {c['runtime']} against {c['reference']}: {verdict} "
                         f"({c['cases']} random inputs)")
        lines += [f"not verified with {n['runtime']}: {n['why']}"
                  for n in r.verification["not_run"]]
    lines += [f"warning: {w}" for w in r.warnings]
    lines.append(f"time {r.seconds:.2f} s (scheduling {r.schedule_seconds:.2f} s)")
    return lines


def tflm_compat_line(c: dict) -> str:
    """``--tflm-compat``: what was folded, the flash it costs, the arena it saves."""
    ops = ", ".join(f"{sum(f['opcode'] == k for f in c['folded'])} {k}"
                    for k in ("DEQUANTIZE", "DENSIFY") if any(f["opcode"] == k
                                                             for f in c["folded"]))
    left = f"; {len(c['skipped'])} left (TFLM cannot run them)" if c["skipped"] else ""
    return (f"tflm-compat: folded {ops or 'nothing'} into constants{left}; constants "
            f"{c['flash_before']} B -> {c['flash_after']} B of flash "
            f"({c['flash_after'] - c['flash_before']:+d} B); best-order arena "
            f"{c['arena_best_before']} B -> {c['arena_best_after']} B "
            f"({c['arena_saved']} B saved; stored order {c['arena_stored_before']} B -> "
            f"{c['arena_stored_after']} B)")


MAX_REWRITE_LINES = 12  # per list (applied, rejected); the rest is counted, all in --json


def rewrite_lines(r: Report) -> list[str]:
    """Rewrites applied (bytes saved, error) and rejected (grouped by reason)."""
    if not r.rewrites and not r.rewrites_rejected:
        return []
    lines = []
    if r.rewrites:
        err = r.rewrite_error or {}
        worst = f" (worst on {err['worst_input']} inputs)" if err.get("worst_input") else ""
        what = ("bit-identical" if err.get("identical") else
                f"max {err.get('max_error_lsb', 0):g} LSB, relative {err.get('max_rel_error', 0):g}"
                f"{worst}")
        runtime = {"tflm": " (TFLM: LiteRT cannot run the model)"}.get(err.get("runtime"), "")
        lines.append(f"rewrites: {len(r.rewrites)} applied; optimal peak "
                     f"{r.peak_without_rewrites} B without them; error vs input on "
                     f"{err.get('cases', '?')} inputs{runtime}: {what}")
        for a in r.rewrites[:MAX_REWRITE_LINES]:
            saved = "-" if a.get("saved_bytes") is None else f"{a['saved_bytes']} B"
            saved += " (head + tail)"
            local = a.get("local_max_error")
            exact = "exact" if a.get("exact") else (
                f"local error {local:g}" if local is not None else "inexact")
            lines.append(f"  applied {a['kind']} at op {a['op']} ({a['opcode']}, "
                         f"{a['variant']}): saves {saved}, {exact}")
        if len(r.rewrites) > MAX_REWRITE_LINES:
            lines.append(f"  … and {len(r.rewrites) - MAX_REWRITE_LINES} more applied")
    else:
        lines.append(f"rewrites: none applied (optimal peak {r.peak_without_rewrites} B)")
    if r.rewrite_out_of_time:
        lines.append(f"  the time limit stopped the rewrite search after "
                     f"{r.rewrite_seconds:.1f} s: kept the best choice measured so far "
                     "(sites not tried are listed)")
    by_reason: dict[str, list[str]] = {}
    for e in r.rewrites_rejected:
        where = f"{e['kind']}@{e['op']}" if "op" in e else e["kind"]
        by_reason.setdefault(e["reason"], []).append(where)
    for reason, sites in sorted(by_reason.items(), key=lambda kv: -len(kv[1]))[
            :MAX_REWRITE_LINES]:
        shown = ", ".join(sites[:4]) + (f", … ({len(sites)} sites)" if len(sites) > 4 else "")
        lines.append(f"  rejected {shown}: {reason}")
    if len(by_reason) > MAX_REWRITE_LINES:
        lines.append(f"  … and {len(by_reason) - MAX_REWRITE_LINES} more reasons (--json)")
    return lines


def tile_lines(r: Report) -> list[str]:
    """Each tiled region and its saving, the MACs, and TFLM's arena before and after."""
    if r.tiles is None:
        return []
    if not r.tiles:
        return ["tiling: no region pays (nothing tiled)"]
    lines = []
    for t in r.tiles:
        out_name = t["output"].split(";")[0][-48:]
        lines.append(
            f"tiled ops {t['ops'][0]}-{t['ops'][1] - 1} ({t['first']} … -> {out_name}) as "
            f"{t['grid'][0]}x{t['grid'][1]} tiles, halo {t['halo'][0]}x{t['halo'][1]}: "
            f"{t['peak_before']} B -> {t['peak_after']} B "
            f"(saves {t['bytes_saved']} B, {t['ops_before']} -> {t['ops_after']} ops)")
    extra = (r.macs_after or 0) / r.macs_before - 1 if r.macs_before else 0.0
    lines.append(f"MACs {r.macs_before} -> {r.macs_after} (+{100 * extra:.1f} %)")
    b, a = r.tflm_before or {}, r.tflm_after or {}
    if a:
        lines.append(
            f"TFLM arena ({a['source']}): head {b.get('head')} -> {a['head']} B, tail "
            f"{b.get('tail')} -> {a['tail']} B, total {b.get('total')} -> {a['total']} B")
    u = r.tflm_untiled
    if u:
        lines.append(f"untiled, same run: total {u['total']} B (head {u['head']} B)")
    return lines


def op_table(rows: list[OpRow], title: str) -> Table:
    peak = max((r.live for r in rows), default=0)
    table = Table(title=title)
    for col in ("#", "sg", "op index", "op", "output shape", "live bytes", ""):
        table.add_column(col, justify="right" if col in ("#", "live bytes") else "left")
    for r in rows:
        mark = "<- peak" if r.live == peak else ""
        table.add_row(str(r.position), str(r.subgraph), str(r.index), r.opcode, r.shapes,
                      f"{r.live}", mark)
    return table


def print_lines(lines: list[str], console: Console | None = None) -> None:
    console = console or Console()
    for line in lines:
        console.print(line, highlight=False, markup=False)


def c_header(name: str, source: str, figures: dict[str, int], margin: float = 0.0) -> str:
    """A header that firmware includes to size its tensor arena.

    Raises ``KeyError`` when ``figures`` has no ``head``.
    """
    stem = re.sub(r"[^A-Za-z0-9]", "_", Path(name).stem).upper() or "MODEL"
    guard = f"{stem}_ARENA_H_"
    head, tail = figures["head"], figures.get("tail", 0)
    # TFLM needs more than head + tail while it plans (its planner's buffer table sits in
    # the arena's free space): the bisected minimum, when measured, is the true floor.
    size = align(int(max(head + tail, figures.get("min_arena", 0)) * (1 + margin)))
    lines = [
        f"/* Generated by tflite-reorder {__version__} from {Path(source).name}. Do not edit. */",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        f"/* Planned arena head (activations), bytes: */\n#define {stem}_ARENA_HEAD {head}",
        f"/* Persistent tail (TFLM bookkeeping), bytes: */\n#define {stem}_ARENA_TAIL {tail}",
        f"/* Arena size to allocate (head + tail, +{margin:.0%} margin, 16-byte multiple): */",
        f"#define {stem}_ARENA_SIZE {size}",
    ]
    if isinstance(figures.get("target"), dict):
        t = figures["target"]
        lines.insert(4, f"/* Sized for TFLM on {t['arch']} ({t['kernels']} kernels); tail "
                        f"{figures.get('tail_source', '')}. */")
    if "min_arena" in figures:
        lines.append(f"/* Smallest arena TFLM accepted (bisection): */\n"
                     f"#define {stem}_ARENA_MIN {figures['min_arena']}")
    lines += ["", f"#endif /* {guard} */", ""]
    return "\n".join(lines)


def plot_memory(
    path: str | Path,
    before: ArenaUse,
    after: ArenaUse,
    offsets: dict[tuple[int, int], int] | None,
    title: str,
) -> None:
    """Live bytes per scope, before and after, and the plan's buffers as offset x time.

    Raises ``ImportError`` without matplotlib (the ``plot`` extra).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    fig, axes = plt.subplots(2 if offsets else 1, 1, figsize=(11, 8 if offsets else 4),
                             squeeze=False)
    ax = axes[0][0]
    for use, label in ((before, "stored order"), (after, "optimised order")):
        prof = use.profile()
        ax.step(range(len(prof)), [p / 1024 for p in prof], where="mid", label=label)
        top = max(prof)
        ax.axhline(top / 1024, linestyle=":", linewidth=0.8)
        ax.annotate(f"peak {top / 1024:.1f} KiB", (prof.index(top), top / 1024),
                    textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("operator scope (execution order)")
    ax.set_ylabel("live arena bytes (KiB)")
    ax.set_title(title)
    ax.legend()
    if offsets:
        ax2 = axes[1][0]
        top = 0
        for b in after.buffers:
            off = offsets.get(b.tensors[0])
            if off is None or b.first < 0:
                continue
            ax2.add_patch(Rectangle((b.first - 0.45, off / 1024), b.last - b.first + 0.9,
                                    b.size / 1024, alpha=0.6, edgecolor="black", linewidth=0.3))
            top = max(top, off + b.size)
        ax2.set_xlim(-1, after.n_scopes)
        ax2.set_ylim(0, top / 1024 * 1.05 or 1)
        ax2.set_xlabel("operator scope")
        ax2.set_ylabel("arena offset (KiB)")
        ax2.set_title(f"arena plan: each buffer at its offset over its lifetime "
                      f"(head {top / 1024:.1f} KiB)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
