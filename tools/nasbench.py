"""NAS-loop throughput of ``api.peak_memory``, before and after (``bench.py --nas docs/nas.md``).

*Before* is the package as it was at a baseline commit (``--nas-base``, default the commit
the NAS issue measured), extracted with ``git archive`` and imported under another name
(``tflite_reorder_base``: the package imports itself only relatively), so both versions run
in **one process** on the same machine, their calls interleaved round by round: load from
other jobs falls on both alike. Every call is timed in CPU seconds of this process
(``time.process_time``, the stable figure on a shared machine) and in wall seconds,
and every call's answer is checked (``check_answers``): the same stored and optimal peaks,
except where the baseline did not prove its answer (then after is proven and no larger)
or answered a different question on purpose (SPACE_TO_BATCH_ND padding made TFLM-safe
first since round 2: the baseline is then asked about the repaired model too, and must
agree).

Nothing is kept across calls in either version (no cache, no memo), so repeating one
model costs what a new candidate of that model costs.

Per-call times are medians over rounds for about ``--nas-seconds`` per model; candidates/s =
1 / median. The reading part is also timed on its own in this tree: the object-API path
(``parse_model`` + true-shape graph) against ``candidate.read_graph`` (flatbuffer tables
read directly), and a graph description (``GraphSpec``) of the same model, which a search
loop can build without any flatbuffer.
"""

from __future__ import annotations

import importlib
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BASE_REV = "e59ccf7"  # main when the NAS issue measured peak_memory (0.63 s on 229 ops)
BASE_NAME = "tflite_reorder_base"


def cpu_seconds(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.process_time()
    out = fn()
    return time.process_time() - t0, out


def both_seconds(fn: Callable[[], object]) -> tuple[float, float, object]:
    """(wall, CPU) seconds of one call, and its result."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w0, time.process_time() - c0, out


def median_seconds(fn: Callable[[], object], seconds: float, at_least: int = 3) -> float:
    times: list[float] = []
    t_end = time.process_time() + seconds
    while len(times) < at_least or time.process_time() < t_end:
        times.append(cpu_seconds(fn)[0])
    return statistics.median(times)


def load_baseline(root: Path, rev: str, into: Path):
    """The package at ``rev`` imported as ``tflite_reorder_base`` (its ``api`` module)."""
    tar = into / "base.tar"
    with tar.open("wb") as fh:
        subprocess.run(["git", "-C", str(root), "archive", rev, "src/tflite_reorder"],
                       stdout=fh, check=True)
    with tarfile.open(tar) as tf:
        tf.extractall(into, filter="data")
    (into / "src" / "tflite_reorder").rename(into / "src" / BASE_NAME)
    sys.path.insert(0, str(into / "src"))
    return importlib.import_module(f"{BASE_NAME}.api")


def _answer(r) -> tuple[int, int, bool]:
    return r.stored, r.optimal, r.is_optimal


def check_answers(model: str, before, after, before_safe=None) -> str:
    """Assert ``after`` answers what ``before`` answered; returns a note ('' when equal).

    ``before_safe`` is the baseline's answer for the model made TFLM-safe (padding
    repaired), the question ``peak_memory`` answers since round 2.
    """
    ref = before if before_safe is None else before_safe
    note = "" if before_safe is None else "padding repaired (baseline asked of the repaired model)"
    if ref.is_optimal:
        assert (after.stored, after.optimal) == (ref.stored, ref.optimal), \
            f"{model}: after {_answer(after)} != before {_answer(ref)}"
        return note
    assert after.stored == ref.stored and after.optimal <= ref.optimal and after.is_optimal, \
        f"{model}: after {_answer(after)} not a proven improvement on before {_answer(ref)}"
    return "baseline not proven (time limit); after proven and no larger"


def measure(base_api, raw: bytes, model: str, seconds: float, time_limit: float) -> dict:
    """Interleaved rounds of one baseline call and one call of this tree, CPU-timed."""
    from tflite_reorder import api

    def after_call():
        return api.peak_memory(raw, time_limit=time_limit)

    times: dict[str, list[float]] = {"before": [], "after": [], "before_wall": [],
                                     "after_wall": []}
    notes = set()
    safe = _repaired(raw)
    before_safe = None if safe is None else base_api.peak_memory(safe, time_limit=time_limit)
    t_end = time.process_time() + 2 * seconds
    while len(times["before"]) < 3 or time.process_time() < t_end:
        wb, tb, b = both_seconds(lambda: base_api.peak_memory(raw, time_limit=time_limit))
        wa, ta, a = both_seconds(after_call)
        notes.add(check_answers(model, b, a, before_safe))
        for key, value in (("before", tb), ("after", ta), ("before_wall", wb),
                           ("after_wall", wa)):
            times[key].append(value)
        if tb > 2 * seconds:  # a baseline call at its time limit: once is enough
            break
    return {**{k: statistics.median(v) for k, v in times.items()},
            "rounds": len(times["before"]), "stored": a.stored, "optimal": a.optimal,
            "proven": a.is_optimal, "note": "; ".join(n for n in sorted(notes) if n),
            **_parts(raw, seconds, time_limit)}


def _repaired(raw: bytes) -> bytes | None:
    """The model with SPACE_TO_BATCH_ND padding made explicit, or None when it has none."""
    from tflite_reorder.flatbuffer_io import load_model, serialize_model
    from tflite_reorder.rewrites.padding import repair_model

    m = load_model(raw).model
    return serialize_model(m) if repair_model(m) else None


def _parts(raw: bytes, seconds: float, time_limit: float) -> dict:
    from tflite_reorder import api, fastpeak
    from tflite_reorder.candidate import describe_graph, read_graph
    from tflite_reorder.flatbuffer_io import ModelError, parse_model
    from tflite_reorder.graph import build_graph
    from tflite_reorder.scheduling import schedule_model
    from tflite_reorder.shapes import true_shapes

    def old_read():
        model = parse_model(raw).model
        return build_graph(model, true_shapes(model))

    graph = read_graph(raw)
    assert graph == old_read(), "fast reader disagrees with the object-API reader"
    fast = fastpeak.answer(raw, time_limit)
    row = {
        "ops": graph.n_ops,
        "compiled_path": fast if isinstance(fast, str) else "yes",
        "read_object_api": median_seconds(old_read, seconds / 4),
        "read_tables": median_seconds(lambda: read_graph(raw), seconds / 4),
        "search": median_seconds(lambda: schedule_model(graph, False, time_limit), seconds / 4),
    }
    try:
        spec = describe_graph(graph)
    except ModelError:  # several subgraphs: no description
        return row
    row["peak_memory_spec"] = median_seconds(
        lambda: api.peak_memory(spec, time_limit=time_limit), seconds / 4)
    return row


def run(root: Path, paths: list[Path], seconds: float, time_limit: float,
        base_rev: str = BASE_REV) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base_api = load_baseline(root, base_rev, Path(tmp))
        for p in paths:
            row = {"model": p.stem, "base_rev": base_rev,
                   **measure(base_api, p.read_bytes(), p.stem, seconds, time_limit)}
            rows.append(row)
            print(f"  {p.stem}: CPU {1 / row['before']:.1f} -> {1 / row['after']:.1f} cand/s "
                  f"({row['before'] / row['after']:.1f}x), wall "
                  f"{row['before_wall'] / row['after_wall']:.1f}x", file=sys.stderr, flush=True)
    return rows


def _rate(s: float | None) -> str:
    return "-" if s is None else f"{1 / s:,.1f}"


def _ms(s: float | None) -> str:
    return "-" if s is None else f"{s * 1e3:.2f}"


def markdown(rows: list[dict], seconds: float, time_limit: float, header: str) -> str:
    lines = [
        "# NAS-loop throughput of `peak_memory`", "", header, "",
        "| model | ops | stored / optimal B (checked equal) | before cand/s (CPU) | "
        "after cand/s (CPU) | speed-up (CPU) | before cand/s (wall) | after cand/s (wall) | "
        "speed-up (wall) | compiled path | read: object API ms | read: tables ms | "
        "search ms | description cand/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    notes: dict[str, int] = {}
    for r in rows:
        mark = ""
        if r["note"]:
            mark = " " + "*" * notes.setdefault(r["note"], len(notes) + 1)
        lines.append(
            f"| {r['model']}{mark} | {r['ops']} | {r['stored']:,} / {r['optimal']:,} | "
            f"{_rate(r['before'])} | {_rate(r['after'])} | "
            f"**{r['before'] / r['after']:.1f}x** | {_rate(r['before_wall'])} | "
            f"{_rate(r['after_wall'])} | {r['before_wall'] / r['after_wall']:.1f}x | "
            f"{r.get('compiled_path', '-')} | "
            f"{_ms(r['read_object_api'])} | {_ms(r['read_tables'])} | "
            f"{_ms(r['search'])} | {_rate(r.get('peak_memory_spec'))} |")
    base = rows[0]["base_rev"] if rows else BASE_REV
    lines += [""] + [f"{'*' * k} {note}." for note, k in notes.items()]
    from tflite_reorder import fastpeak, searchcore

    why, why_fast = searchcore.unavailable(), fastpeak.unavailable()
    lines += ["", "*After* answered by `peak_memory`'s compiled path (`fastpeak`: the "
              "flatbuffer read, graph built and searched in C) where the *compiled path* "
              "column says yes, and by the general path where it gives the reason the "
              "compiled path declined" + ("" if not why_fast else f" (not run: {why_fast})")
              + "; the general path ran the exact search's loop " + (
                  "compiled (`searchcore`)." if not why else f"in Python ({why}).")]
    for what, suffix in (("CPU", ""), ("wall", "_wall")):
        ratios = [r["before" + suffix] / r["after" + suffix] for r in rows]
        if ratios:
            lines += ["", f"Speed-up ({what}): {min(ratios):.1f}x to {max(ratios):.1f}x "
                          f"(median {statistics.median(ratios):.1f}x) over {len(rows)} "
                          f"models; {sum(x >= 10 for x in ratios)} of them at 10x or more."]
    lines += [
        "",
        f"*before* = `api.peak_memory(raw_bytes)` as of commit `{base}`, imported under "
        "another name into the process that runs *after*, the same call in this tree; "
        "their calls alternate, each timed both in CPU seconds of the process and in wall "
        f"seconds, median over ~{2 * seconds:g} s of rounds, scheduler time limit "
        f"{time_limit:g} s. The CPU figure is the stable one: on this shared machine a "
        "call's wall time runs up to several times its CPU time, unevenly (the baseline's "
        "object-API unpacking most: e.g. 10 ms wall for 2.4 ms CPU on add_tree_int8, with "
        "no voluntary waits), so wall-clock ratios swing with other jobs' load. Every "
        "round's answers "
        "are compared (the stored / optimal "
        "column is after's, equal to before's unless a note says otherwise). Neither "
        "version keeps anything across calls (no cache, no memo), so repeating one model "
        "costs what a new candidate costs. The reading columns split this tree's time: *object "
        "API* = `parse_model` + `build_graph` with inferred shapes (what `peak_memory` did "
        "before), *tables* = `candidate.read_graph` (the same graph, read straight from "
        "the flatbuffer tables, checked equal on each model before timing); *search* = "
        "`schedule_model` alone. *description* = `peak_memory` of a `GraphSpec` of the "
        "model (no flatbuffer; one-subgraph models only).",
        "",
        "## Using it in a search loop",
        "",
        "```python",
        "import tflite_reorder as tr",
        "",
        "pm = tr.peak_memory(candidate_bytes)          # or a path, or a graph description:",
        "spec = {\"tensors\": [{\"shape\": [1, 32, 32, 3]}, {\"shape\": [8, 3, 3, 3], "
        "\"constant\": True},",
        "                    {\"shape\": [1, 32, 32, 8]}],",
        "        \"ops\": [{\"opcode\": \"CONV_2D\", \"inputs\": [0, 1], \"outputs\": [2]}],",
        "        \"inputs\": [0], \"outputs\": [2]}",
        "pm = tr.peak_memory(spec)                     # tr.GraphSpec / TensorSpec / OpSpec too",
        "results = tr.peak_memory_many(candidates, jobs=2)   # or client=<dask Client>",
        "```",
        "",
        "A graph description (one subgraph, true shapes, dtype names, builtin opcode names; "
        "see `tflite_reorder/candidate.py`) goes through the same graph builder as a "
        "`.tflite`, so the in-place rule and stateful-op ordering are the same. "
        "`candidate.describe_graph(read_graph(seed))` gives the description of a seed "
        "model to mutate; a `ModelGraph` passed back to `peak_memory` is reused as is. "
        "`peak_memory_many` returns one `PeakResult` per candidate in input order, a "
        "failing candidate as an entry with `error`, `error_kind` and `exit_code` (as "
        "`batch`); see `docs/cluster.md` for the Dask backend.",
        "",
        "## The compiled path",
        "",
        "`peak_memory` of `.tflite` bytes or a path with `inplace=False` (the default) first "
        "asks `fastpeak`: one C call reads the flatbuffer tables into flat arrays, builds "
        "the operator graph and the scheduling problem on them (the same lifetimes, "
        "stateful-op ordering, type sizes and alignment, passed in as tables from their "
        "Python homes) and finds the minimum peak by an exact best-first search (cut "
        "points, free moves, the floor raised by closure bounds when a segment needs "
        "more than a few states). A model with an op that has a shape rule is first read "
        "and its shapes inferred by the general path's reader and inference; the C call "
        "then counts the inferred sizes where stored shapes are wrong, and adds the PAD "
        "operators and tensors of the SPACE_TO_BATCH_ND padding repair the general path "
        "makes (planned by `rewrites.padding.plan_repairs`, the repair's one home). "
        "Control flow (IF, WHILE, CALL_ONCE) is answered in the same call when its calls "
        "form a tree (subgraph 0 calls the others, each called by one operator, once): "
        "each subgraph is searched after the subgraphs it nests, each control-flow "
        "operator carrying the largest peak of its callees (what `memory._NestedPeaks` "
        "composes when no callee is placed again elsewhere), the stored peak their "
        "stored orders' peaks; such a model is answered when inference changes no stored "
        "shape and nothing needs the padding repair. The compiled path answers only with "
        "a proven minimum, so its answer is the general path's; it declines (and the "
        "general path answers, or raises the same one-line error) for control flow that "
        "shares or skips subgraphs, several subgraphs with shapes to correct or padding "
        "to repair, external data, dynamic dimensions, anything malformed, and searches "
        "past its state limit (150,000 states per subgraph) or half the time limit. "
        "`tests/test_fastpeak.py` compares it with the general path on every shipped "
        "model, random graphs (SPACE_TO_BATCH_ND chains, wrong stored shapes and trees "
        "of IF / WHILE / CALL_ONCE among them, shared callees too), mutated bytes and the "
        "bad-input corpus.",
        "",
    ]
    return "\n".join(lines)
