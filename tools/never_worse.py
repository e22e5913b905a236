#!/usr/bin/env python3
"""Never worse, measured: every model in ``models/`` and 300 random graphs at a tight limit.

Usage::

    python tools/never_worse.py --markdown docs/never_worse.md   # the shipped table
    python tools/never_worse.py --time-limit 0                   # harsher, to stdout

Per model: ``api.optimize`` with ``--time-limit`` (default 0.05 s) and verification (LiteRT
and TFLM where they run the model; ``--no-verify`` for the model no runtime runs), the
stored order's peak, the written order's peak (replayed from the written bytes), the proven
bound, and which runtimes verified it. Random graphs: ``tests/randgraphs.py``'s 40-80-op
graphs (a third with DEQUANTIZE-like sources), model-level ``schedule_model`` +
``never_worse``. The same guarantees are asserted by ``tests/test_models.py`` and
``tests/test_scheduling.py``.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]


def model_rows(time_limit: float) -> list[dict]:
    from tflite_reorder import api
    from tflite_reorder.flatbuffer_io import ModelError, load_model
    from tflite_reorder.graph import build_graph
    from tflite_reorder.memory import simulate

    rows = []
    for path in sorted((ROOT / "models").glob("*.tflite")):
        try:
            result = api.optimize(path, time_limit=time_limit)
            ran = ", ".join(result.report.verification["ran"])
        except ModelError:  # no runtime runs it: written unverified, as --no-verify does
            result = api.optimize(path, time_limit=time_limit, verify=False)
            ran = "none (no runtime runs it)"
        r = result.report
        graph = build_graph(load_model(result.data).model)
        written = simulate(graph, graph.stored_orders(), inplace=True).lower_bound
        rows.append(dict(model=path.stem, ops=r.ops, stored=r.peak_before, written=written,
                         bound=r.lower_bound, optimal=r.optimal, verified=ran,
                         ok=written <= r.peak_before))
    return rows


def random_rows(time_limit: float, n: int = 300) -> dict:
    from randgraphs import model_of, random_subgraph

    from tflite_reorder.memory import simulate
    from tflite_reorder.scheduling import never_worse, schedule_model, stored_peak

    rng = random.Random(77)
    worse = improved = proven = 0
    for case in range(n):
        graph = model_of(random_subgraph(rng, rng.randint(40, 80),
                                         source_share=rng.choice([0.0, 0.0, 0.3])))
        inplace = case % 2 == 0
        orders, results = schedule_model(graph, inplace, time_limit)
        orders, _ = never_worse(graph, orders, inplace)
        after, before = simulate(graph, orders, inplace=inplace).lower_bound, stored_peak(graph)
        worse += after > before
        improved += after < before
        proven += results[0].optimal
    return dict(graphs=n, worse=worse, improved=improved, proven=proven)


def markdown(rows: list[dict], rand: dict, time_limit: float) -> str:
    lines = [
        "# Never worse: written peak <= stored peak",
        "",
        f"Measured by `python tools/never_worse.py --markdown docs/never_worse.md` "
        f"(`--time-limit {time_limit}`). *stored* = the input's order (made safe in TFLM), "
        "*written* = the written model's order replayed from its bytes (in-place sharing on), "
        "*bound* = the proven lower bound. Asserted by `tests/test_models.py` "
        "(`test_never_worse_under_a_tight_time_limit`) and `tests/test_scheduling.py`.",
        "",
        "| model | ops | stored peak | written peak | bound | optimal | verified with | "
        "written <= stored |",
        "|---|--:|--:|--:|--:|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['ops']} | {r['stored']} | {r['written']} | "
                     f"{r['bound']} | {'yes' if r['optimal'] else 'no'} | {r['verified']} | "
                     f"{'yes' if r['ok'] else '**NO**'} |")
    lines += [
        "",
        f"Random graphs (40-80 ops, `tests/randgraphs.py`, same limit): {rand['graphs']} "
        f"graphs, {rand['worse']} worse than their stored order, {rand['improved']} improved, "
        f"{rand['proven']} proven optimal.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=float, default=0.05)
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args(argv)
    rows = model_rows(args.time_limit)
    rand = random_rows(args.time_limit)
    text = markdown(rows, rand, args.time_limit)
    if args.markdown:
        args.markdown.write_text(text)
    print(text)
    return 0 if all(r["ok"] for r in rows) and not rand["worse"] else 1


if __name__ == "__main__":
    sys.exit(main())
