"""NAS-loop throughput of ``api.peak_memory``, before and after (``bench.py --nas docs/nas.md``).

*Before* is the package as it was at a baseline commit (``--nas-base``, default the commit
the NAS issue measured), extracted with ``git archive`` into a temporary directory; *after*
is this tree. Both run the same call, ``api.peak_memory(raw_bytes)``, on every shipped model
in a fresh child process each, so neither warms the other's caches. The reading part is
also timed on its own in this tree: the object-API path (``parse_model`` + true-shape
graph) against ``candidate.read_graph`` (flatbuffer tables read directly), and a graph
description (``GraphSpec``) of the same model, which a search loop can build without any
flatbuffer.

Per-call times are medians over repeats for about ``--nas-seconds`` per model and form;
candidates/s = 1 / median.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BASE_REV = "e59ccf7"  # main when the NAS issue measured peak_memory (0.63 s on 229 ops)


def median_seconds(fn: Callable[[], object], seconds: float, at_least: int = 3) -> float:
    times: list[float] = []
    t_end = time.perf_counter() + seconds
    while len(times) < at_least or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(paths: list[Path], seconds: float, time_limit: float, parts: bool) -> dict:
    """Per model: peak_memory seconds per call (and, with ``parts``, the reading split)."""
    from tflite_reorder import api

    out = {}
    for p in paths:
        raw = p.read_bytes()
        row = {"peak_memory": median_seconds(
            lambda raw=raw: api.peak_memory(raw, time_limit=time_limit), seconds)}
        if parts:
            row.update(_parts(raw, seconds, time_limit))
        out[p.stem] = row
    return out


def _parts(raw: bytes, seconds: float, time_limit: float) -> dict:
    from tflite_reorder import api
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
    row = {
        "ops": graph.n_ops,
        "read_object_api": median_seconds(old_read, seconds / 3),
        "read_tables": median_seconds(lambda: read_graph(raw), seconds / 3),
        "search": median_seconds(lambda: schedule_model(graph, False, time_limit), seconds / 3),
    }
    try:
        spec = describe_graph(graph)
    except ModelError:  # several subgraphs: no description
        return row
    row["peak_memory_spec"] = median_seconds(
        lambda: api.peak_memory(spec, time_limit=time_limit), seconds / 3)
    return row


def _child(src: Path, paths: list[Path], seconds: float, time_limit: float,
           parts: bool) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src), TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--seconds", str(seconds),
           "--time-limit", str(time_limit), *(["--parts"] if parts else []),
           *map(str, paths)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"nasbench child failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _baseline_src(root: Path, rev: str, into: Path) -> Path:
    """The package sources at ``rev`` (``git archive``), unpacked under ``into``."""
    tar = into / "base.tar"
    with tar.open("wb") as fh:
        subprocess.run(["git", "-C", str(root), "archive", rev, "src"], stdout=fh, check=True)
    with tarfile.open(tar) as tf:
        tf.extractall(into, filter="data")
    return into / "src"


def run(root: Path, paths: list[Path], seconds: float, time_limit: float,
        base_rev: str = BASE_REV) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base_src = _baseline_src(root, base_rev, Path(tmp))
        for p in paths:
            before = _child(base_src, [p], seconds, time_limit, False)[p.stem]
            after = _child(root / "src", [p], seconds, time_limit, True)[p.stem]
            row = {"model": p.stem, "base_rev": base_rev, "before": before["peak_memory"],
                   **{k: v for k, v in after.items()}}
            row["after"] = row.pop("peak_memory")
            rows.append(row)
            print(f"  {p.stem}: {1 / row['before']:.1f} -> {1 / row['after']:.1f} cand/s",
                  file=sys.stderr, flush=True)
    return rows


def _rate(s: float | None) -> str:
    return "-" if s is None else f"{1 / s:,.1f}"


def _ms(s: float | None) -> str:
    return "-" if s is None else f"{s * 1e3:.2f}"


def markdown(rows: list[dict], seconds: float, time_limit: float, header: str) -> str:
    lines = [
        "# NAS-loop throughput of `peak_memory`", "", header, "",
        "| model | ops | before cand/s | after cand/s | speed-up | read: object API ms | "
        "read: tables ms | read speed-up | search ms | description cand/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['ops']} | {_rate(r['before'])} | {_rate(r['after'])} | "
            f"{r['before'] / r['after']:.1f}x | {_ms(r['read_object_api'])} | "
            f"{_ms(r['read_tables'])} | {r['read_object_api'] / r['read_tables']:.1f}x | "
            f"{_ms(r['search'])} | {_rate(r.get('peak_memory_spec'))} |")
    base = rows[0]["base_rev"] if rows else BASE_REV
    lines += [
        "",
        f"*before* = `api.peak_memory(raw_bytes)` as of commit `{base}`; *after* = the same "
        "call in this tree (both in fresh processes, median of repeats over "
        f"~{seconds:g} s, scheduler time limit {time_limit:g} s). The reading columns "
        "split this tree's time: *object API* = `parse_model` + `build_graph` with "
        "inferred shapes (what `peak_memory` did before), *tables* = "
        "`candidate.read_graph` (the same graph, read straight from the flatbuffer "
        "tables, checked equal on each model before timing); *search* = "
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
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("paths", nargs="+", type=Path)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--time-limit", type=float, default=10.0)
    ap.add_argument("--parts", action="store_true")
    args = ap.parse_args(argv)
    print(json.dumps(measure(args.paths, args.seconds, args.time_limit, args.parts)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
