#!/usr/bin/env python3
"""Run every command of the CLI on a folder of real ``.tflite`` files; write a markdown table.

Usage::

    python tools/real_models.py DIR --json rows.json --markdown docs/real_models.md

``DIR`` holds the models (for instance the ones public PyPI packages ship) and, optionally,
``SOURCES.tsv`` (``file<TAB>package version<TAB>path in the package<TAB>licence``), which
fills the table's source column. Per model, each in a fresh process with a ``--timeout``:
``tflite-reorder IN OUT --json`` (default), ``check --json``, ``arena --json``, ``--rewrite
--json``, ``--tile --json`` and ``inspect``. Every exit code, traceback and time-out is
recorded. Every written model is then checked here, independently of the tool's own
verification: TFLM's measured head of the written file (against the head the tool claims
and against the input's head: never worse), and its outputs against the input's on fresh
random inputs under LiteRT (reference kernels) and TFLM, where each runs the input.
``--rerender rows.json`` rewrites the markdown from saved rows without running anything.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src")]

MODES = {"default": [], "rewrite": ["--rewrite"], "tile": ["--tile"]}
# Only for a model TFLM cannot run as it is (float16 or sparse weights): folded, TFLM may.
COMPAT = {"compat": ["--tflm-compat"]}
_CLI = "import sys; from tflite_reorder.cli import main; main(sys.argv[1:])"


@dataclass
class Run:
    """One CLI invocation: exit code (None after a time-out), seconds, parsed JSON."""

    args: list[str]
    code: int | None
    seconds: float
    stderr: str
    data: dict | None = None
    traceback: bool = False


@dataclass
class Written:
    """An independent look at one written model."""

    tflm_head: int | None = None  # TFLM's head of the written file as it is
    claimed: int | None = None  # the head the tool's JSON says TFLM will use
    litert: str = "not run"  # "identical", "max diff X" or why it did not run
    tflm: str = "not run"


@dataclass
class Row:
    """Everything measured for one model."""

    file: str
    source: str = ""
    size: int = 0
    ops: int | None = None
    op_types: list[str] = field(default_factory=list)
    tflm_head_in: int | None = None  # TFLM's measured head of the input as it is
    runs: dict[str, Run] = field(default_factory=dict)
    written: dict[str, Written] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def run_cli(args: list[str], timeout: float) -> Run:
    """``tflite-reorder ARGS`` in a fresh interpreter; stdout parsed as JSON when it is."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", _CLI, *args], capture_output=True,
                              text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        return Run(args, None, time.perf_counter() - start, err[-2000:])
    run = Run(args, proc.returncode, time.perf_counter() - start, proc.stderr[-2000:],
              traceback="Traceback (most recent call last)" in proc.stderr)
    try:
        run.data = json.loads(proc.stdout)
    except ValueError:
        run.data = None
    return run


def op_types(data: bytes) -> tuple[int, list[str]]:
    """Operator count and the sorted set of operator names, all subgraphs."""
    from tflite_reorder.flatbuffer_io import load_model
    from tflite_reorder.graph import build_graph

    graph = build_graph(load_model(data).model)
    ops = [op for sg in graph.subgraphs for op in sg.ops]
    return len(ops), sorted({op.opcode for op in ops})


def _case_inputs(data: bytes) -> list[list]:
    """Two input sets read from the flatbuffer alone (no runtime needed to make them)."""
    from tflite_reorder.runtimes import structured_inputs

    return [structured_inputs(data, seed) for seed in (20261201, 20261202)]


def _compare(run, original: bytes, written: bytes, cases: list[list]) -> str:
    """``identical``, ``max diff X`` or ``input: <error>``/``output: <error>``."""
    import numpy as np

    try:
        ref = [run(original, case) for case in cases]
    except Exception as exc:  # the runtime does not run the input: nothing to compare
        return f"input not run ({type(exc).__name__})"
    try:
        new = [run(written, case) for case in cases]
    except Exception as exc:
        return f"OUTPUT FAILED: {str(exc).splitlines()[0][:120] if str(exc) else type(exc)}"
    worst = 0.0
    for a_outs, b_outs in zip(ref, new, strict=True):
        for a, b in zip(a_outs, b_outs, strict=True):
            if a.shape != b.shape or a.dtype != b.dtype:
                return f"OUTPUT SHAPE/TYPE DIFFERS {a.shape}{a.dtype} vs {b.shape}{b.dtype}"
            if not np.array_equal(a, b, equal_nan=True):
                worst = max(worst, float(np.max(np.abs(a.astype(np.float64)
                                                       - b.astype(np.float64)))))
    return "identical" if worst == 0.0 else f"max diff {worst:g}"


def _tflm_head(data: bytes) -> int | None:
    from tflite_reorder import tflm

    try:
        return tflm.measure_arena(data).head
    except Exception:
        return None


def check_written(original: bytes, path: Path, claimed: int | None) -> Written:
    """TFLM's head of the written file and its outputs against the input's."""
    from tflite_reorder import runtimes, tflm

    written = path.read_bytes()
    seen = Written(tflm_head=_tflm_head(written), claimed=claimed)
    try:
        cases = _case_inputs(original)
    except Exception as exc:
        seen.litert = seen.tflm = f"no inputs ({type(exc).__name__})"
        return seen
    seen.litert = _compare(runtimes.run_litert, original, written, cases)
    seen.tflm = _compare(tflm.run_tflm, original, written, cases)
    return seen


def _problems(row: Row) -> list[str]:
    """What is wrong, one line each: crashes, exit 3, time-outs, lies, regressions."""
    found = []
    for name, run in row.runs.items():
        if run.code is None:
            found.append(f"{name}: timed out after {run.seconds:.0f} s")
        elif run.code < 0:
            found.append(f"{name}: killed by signal {-run.code} "
                         f"({run.stderr.strip()[-80:] or 'no message'})")
        elif run.traceback:
            found.append(f"{name}: traceback on stderr")
        if run.code == 3:
            found.append(f"{name}: exit 3: {run.stderr.strip()[:200]}")
        verification = (run.data or {}).get("verification") or {}
        if verification.get("ok") and not verification.get("ran"):
            found.append(f"{name}: verification ok with no runtime run")
    for name, seen in row.written.items():
        exact = name != "rewrite"  # rewrites may change numerics within a bound
        for runtime, verdict in (("litert", seen.litert), ("tflm", seen.tflm)):
            if verdict.startswith("OUTPUT") or (exact and verdict.startswith("max diff")):
                found.append(f"{name}: {runtime} {verdict}")
        if seen.tflm_head is not None and seen.claimed is not None \
                and seen.tflm_head != seen.claimed:
            found.append(f"{name}: claimed head {seen.claimed} B, TFLM reports "
                         f"{seen.tflm_head} B")
        if seen.tflm_head is not None and row.tflm_head_in is not None \
                and seen.tflm_head > row.tflm_head_in:
            found.append(f"{name}: written head {seen.tflm_head} B > input's "
                         f"{row.tflm_head_in} B (never-worse violated)")
        if seen.tflm_head is None and row.tflm_head_in is not None:
            found.append(f"{name}: TFLM runs the input but not the written model")
    return found


def sources(folder: Path) -> dict[str, str]:
    """``SOURCES.tsv``: file → "package version, path (licence)"."""
    table = folder / "SOURCES.tsv"
    found = {}
    if table.exists():
        for line in table.read_text().splitlines():
            cells = line.split("\t")
            if len(cells) >= 3 and not line.startswith("#"):
                lic = f" ({cells[3]})" if len(cells) > 3 and cells[3] else ""
                found[cells[0]] = f"{cells[1]}, `{cells[2]}`{lic}"
    return found


def measure(path: Path, source: str, out_dir: Path, timeout: float) -> Row:
    """Every command on one model, then the independent checks of what was written."""
    data = path.read_bytes()
    row = Row(path.name, source, len(data), tflm_head_in=_tflm_head(data))
    try:
        row.ops, row.op_types = op_types(data)
    except Exception as exc:
        row.problems.append(f"graph not read: {type(exc).__name__}: {exc}"[:200])
    stem = path.stem
    modes = dict(MODES, **(COMPAT if row.tflm_head_in is None else {}))
    for mode, flags in modes.items():
        out = out_dir / f"{stem}.{mode}.tflite"
        run = run_cli([str(path), str(out), "--json", *flags], timeout)
        row.runs[mode] = run
        if run.code == 0 and out.exists():
            d = run.data or {}
            claimed = d.get("tflm_head") or (d.get("tflm_after") or {}).get("head")
            row.written[mode] = check_written(data, out, claimed)
    row.runs["check"] = run_cli(["check", str(path), "--json"], timeout)
    row.runs["arena"] = run_cli(["arena", str(path), "--json"], timeout)
    row.runs["inspect"] = run_cli(["inspect", str(path)], timeout)
    row.problems += _problems(row)
    return row


def _b(n: int | None) -> str:
    return "–" if n is None else f"{n:,}"


def _mode_cell(row: Row, mode: str) -> str:
    """Planned head → TFLM's head of the written file, or the exit code when none was written.

    Bytes; ``n/r`` where TFLM does not run the written model.
    """
    run = row.runs.get(mode)
    if run is None:
        return "–"
    if run.code != 0:
        return "timeout" if run.code is None else f"exit {run.code}"
    d = run.data or {}
    planned = d.get("arena_planned")
    seen = row.written.get(mode)
    measured = seen.tflm_head if seen else None
    return f"{_b(planned)} / {'n/r' if measured is None else _b(measured)}"


def _verified(row: Row) -> str:
    run = row.runs.get("default")
    ran = ((run.data or {}).get("verification") or {}).get("ran") if run else None
    return "+".join(ran) if ran else "none"


def _short_error(run: Run | None) -> str:
    if run is None or run.code == 0:
        return ""
    text = run.stderr.strip().splitlines()[-1] if run.stderr.strip() else ""
    text = text.replace("tflite-reorder: error: ", "")
    if run.args and text.startswith(run.args[0] + ": "):  # the file is the row's own
        text = text[len(run.args[0]) + 2:]
    return text[:220]


def _stored(row: Row) -> str:
    """The stored order's peak as the tool counts it (``peak_input``)."""
    for mode in ("default", "arena"):
        d = (row.runs.get(mode) or Run([], None, 0, "")).data or {}
        if "peak_input" in d:
            return _b(d["peak_input"])
        if "stored_order_peak" in d:
            return _b(d["stored_order_peak"])
    return "–"


HEADER = """# Real models from public packages

Every command of `tflite-reorder` on `.tflite` files exactly as public packages ship them,
by `python tools/real_models.py DIR --json rows.json --markdown docs/real_models.md` (the
folder's `SOURCES.tsv` names each file's package, version, path and licence). Per model, each
command in a fresh process with a 300 s limit: the default run, `--rewrite`, `--tile`,
`check`, `arena` and `inspect`, and `--tflm-compat` for a model TFLM cannot run as it is.
Then, independently of the tool's own verification, every written model is loaded by TFLM
(`tflite-micro`'s Python interpreter, reference kernels) for its measured head, and run
against the input on two input sets made from the flatbuffer under LiteRT's reference
kernels and TFLM, where each runs the input.

Columns: *TFLM head in* is TFLM's measured arena head (bytes of activations) of the input as
it is (*n/r*: TFLM does not run it); *stored peak* is the tool's count for the stored order;
each mode shows the head the tool planned and TFLM's measured head of the file it wrote;
*proven* is the default run's optimality certificate; *verified by* the runtimes the default
run compared outputs with; *s* its wall time on a shared 2-core machine (other jobs running);
the exit codes are of the default run, `check`, `arena`, `--rewrite`, `--tile`, `inspect`
(negative: killed by that signal). *notes* lists what the checks above found wrong, else
the default run's error line.

"""
FINDINGS = "<!-- findings: kept when the table is regenerated -->"


def markdown(rows: list[Row], keep: str = "") -> str:
    """The header, the table and totals (arena heads in bytes), then ``keep`` unchanged."""
    lines = [
        "| model | source | ops | TFLM head in | stored peak | default: planned / TFLM "
        "| proven | --rewrite: planned / TFLM | --tile: planned / TFLM "
        "| --tflm-compat: planned / TFLM | verified by | s | exit opt/chk/arena/rw/tile/insp "
        "| notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        d = r.runs.get("default")
        dd = (d.data or {}) if d else {}
        proven = "yes" if dd.get("optimal") else ("no" if dd else "–")
        codes = "/".join("T" if r.runs[m].code is None else str(r.runs[m].code)
                         for m in ("default", "check", "arena", "rewrite", "tile", "inspect"))
        notes = "; ".join(r.problems) or _short_error(d)
        head_in = "n/r" if r.tflm_head_in is None else _b(r.tflm_head_in)
        lines.append(
            f"| {r.file} | {r.source} | {r.ops if r.ops is not None else '–'} | {head_in} "
            f"| {_stored(r)} | {_mode_cell(r, 'default')} | {proven} "
            f"| {_mode_cell(r, 'rewrite')} | {_mode_cell(r, 'tile')} "
            f"| {_mode_cell(r, 'compat')} | {_verified(r)} "
            f"| {d.seconds:.1f} | {codes} | {notes.replace('|', '/')} |")
    body = "\n".join(lines) + "\n\n" + totals(rows) + "\n"
    return HEADER + body + ("\n" + keep if keep else "")


def _gain(row: Row, mode: str) -> int | None:
    seen = row.written.get(mode)
    if seen is None or seen.tflm_head is None or row.tflm_head_in is None:
        return None
    return row.tflm_head_in - seen.tflm_head


def totals(rows: list[Row]) -> str:
    """One paragraph: per mode, how many models TFLM measured, how many gained, how much."""
    parts = [f"{len(rows)} models."]
    for mode in (*MODES, *COMPAT):
        if mode in COMPAT:
            ran = sum(1 for r in rows if mode in r.runs)
            measured = sum(1 for r in rows if (r.written.get(mode) or Written()).tflm_head)
            parts.append(f"`--tflm-compat` (run on the {ran} models TFLM cannot run as they "
                         f"are): TFLM runs {measured} of the results.")
            continue
        gains = [(r, g) for r in rows if (g := _gain(r, mode)) is not None]
        better = sorted(100 * g / r.tflm_head_in for r, g in gains if g > 0)
        codes = [r.runs[mode].code for r in rows if mode in r.runs]
        failed = {c: codes.count(c) for c in sorted(set(codes), key=str) if c != 0}
        text = (f"`{mode}`: exit codes other than 0: {failed or 'none'}; TFLM measured the "
                f"input and the output of {len(gains)}, smaller head for {len(better)}")
        if better:
            text += (f" (median −{better[len(better) // 2]:.1f} %, best −{better[-1]:.1f} %)")
        parts.append(text + ".")
    bad = sum(1 for r in rows if r.problems)
    parts.append(f"Models with a problem listed in the notes: {bad}.")
    return " ".join(parts)


def _row_from_dict(d: dict) -> Row:
    row = Row(**{k: v for k, v in d.items() if k not in ("runs", "written")})
    row.runs = {k: Run(**v) for k, v in d["runs"].items()}
    row.written = {k: Written(**v) for k, v in d["written"].items()}
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, nargs="?")
    parser.add_argument("--json", type=Path, help="write every row (re-render with --rerender)")
    parser.add_argument("--markdown", type=Path, help="write the table here (else stdout)")
    parser.add_argument("--rerender", type=Path, help="rows JSON from an earlier --json")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per command")
    parser.add_argument("--only", nargs="*", default=None, help="file names to run")
    args = parser.parse_args(argv)
    if args.rerender:
        rows = [_row_from_dict(d) for d in json.loads(args.rerender.read_text())]
    else:
        if args.folder is None:
            parser.error("a folder of .tflite files (or --rerender) is needed")
        names = sources(args.folder)
        rows = []
        with tempfile.TemporaryDirectory() as out_dir:
            for path in sorted(args.folder.glob("*.tflite")):
                if args.only and path.name not in args.only:
                    continue
                row = measure(path, names.get(path.name, ""), Path(out_dir), args.timeout)
                print(f"{path.name}: {len(row.problems)} problem(s)", file=sys.stderr,
                      flush=True)
                rows.append(row)
                if args.json:
                    args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    keep = ""
    if args.markdown and args.markdown.exists():
        text = args.markdown.read_text()
        keep = text[text.index(FINDINGS):] if FINDINGS in text else ""
    table = markdown(rows, keep)
    if args.markdown:
        args.markdown.write_text(table)
    else:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
