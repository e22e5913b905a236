"""Many models at once: ``tflite-reorder batch DIR_OR_GLOB --out DIR``.

Each model runs the full ``api.optimize`` pipeline in a worker process (spawned, not
forked: forking a process that may already hold native runtimes and their threads is
unsafe, and spawn is what macOS and Windows do anyway), so all cores are used and one
model's failure is just a row in the results. A worker that dies
outright (a native crash) breaks the whole pool; the models that were in flight are then
re-run one at a time in a fresh single-worker pool so the culprit is named and the
innocent ones still finish.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from .flatbuffer_io import ModelError
from .results import EXIT_OK, KIND_EXIT, VerificationError, classify


@dataclass(frozen=True)
class Task:
    """One model to optimise; plain data so it pickles into a spawned worker."""

    src: str
    dst: str
    time_limit: float = 10.0
    verify: bool = True


Worker = Callable[[Task], dict]


# --- inputs ------------------------------------------------------------------------------


def _has_magic(spec: str) -> bool:
    return any(c in spec for c in "*?[")


def collect_inputs(specs: Iterable[str]) -> list[Path]:
    """Models named by directories (their ``*.tflite``), glob patterns or file paths.

    A spec that matches nothing is bad input (``ModelError``): silently optimising fewer
    models than asked for is how firmware ships an unoptimised model.
    """
    found: list[Path] = []
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            hits = sorted(q for q in p.glob("*.tflite") if q.is_file())
            if not hits:
                raise ModelError(f"{spec}: directory has no .tflite files")
        elif _has_magic(spec):
            hits = sorted(Path(h) for h in glob.glob(spec, recursive=True)
                          if Path(h).is_file())
            if not hits:
                raise ModelError(f"{spec}: pattern matches no files")
        elif p.is_file():
            hits = [p]
        else:
            raise ModelError(f"{spec}: no such file or directory")
        found += hits
    unique = list(dict.fromkeys(found))
    if not unique:
        raise ModelError("no input models given")
    return unique


def make_tasks(
    inputs: Sequence[Path], out_dir: Path, time_limit: float = 10.0, verify: bool = True
) -> list[Task]:
    """``OUT/<stem>.tflite`` per input; refuses name clashes and overwriting an input."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ModelError(f"{out_dir}: output path exists and is not a directory")
    by_name: dict[str, Path] = {}
    tasks = []
    sources = {q.resolve() for q in inputs}
    for src in inputs:
        name = f"{src.stem}.tflite"
        if name in by_name:
            raise ModelError(f"{src} and {by_name[name]} would both be written to "
                             f"{out_dir / name}")
        by_name[name] = src
        dst = out_dir / name
        if dst.resolve() in sources:
            raise ModelError(f"{dst}: output would overwrite an input model; choose another "
                             f"--out directory")
        tasks.append(Task(str(src), str(dst), time_limit, verify))
    return tasks


# --- one model (runs in a worker) --------------------------------------------------------


def _worker_init() -> None:
    """Quiet native libraries and keep the parent's stdout for its own (JSON) lines."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.dup2(2, 1)  # anything a native library prints goes to stderr, never into the JSON


def _error(task: Task, kind: str, message: str, report: dict | None = None) -> dict:
    row = dict(report) if report else {}
    row.update(input=task.src, output=None, status="error", error=message, error_kind=kind,
               exit_code=KIND_EXIT[kind])
    return row


def process_one(task: Task) -> dict:
    """Optimise one model and write it atomically; every failure becomes a result row.

    The row's ``error_kind`` and ``exit_code`` come from ``results.classify``, as the CLI's.
    """
    from .api import optimize  # looked up per call: tests replace it
    from .flatbuffer_io import write_atomic

    try:
        result = optimize(task.src, time_limit=task.time_limit, verify=task.verify,
                          output_name=task.dst)
        write_atomic(task.dst, result.data)
    except Exception as exc:  # a bug of ours included: reported, never stops the batch
        failure = classify(exc)
        report = exc.report.to_dict() if isinstance(exc, VerificationError) else None
        where = "" if failure.kind in ("input", "verification") else f"{task.src}: "
        return _error(task, failure.kind, where + failure.message, report)
    row = result.report.to_dict()
    row.update(input=task.src, output=task.dst, status="ok", error=None, error_kind=None,
               exit_code=EXIT_OK)
    return row


# --- the pool ----------------------------------------------------------------------------


def default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _pool(jobs: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"),
                               initializer=_worker_init)


def _crashed(task: Task) -> dict:
    return _error(task, "internal", f"{task.src}: worker process crashed while optimising "
                                    f"this model")


def run_batch(
    tasks: Sequence[Task], jobs: int | None = None, worker: Worker = process_one
) -> Iterator[dict]:
    """Yield one result row per task, in completion order.

    ``worker`` must be a module-level function (it is pickled by name into the workers).
    """
    if not tasks:
        return
    jobs = max(1, min(jobs or default_jobs(), len(tasks)))
    suspects: list[Task] = []
    pool = _pool(jobs)
    try:
        futures: dict[Future, Task] = {pool.submit(worker, t): t for t in tasks}
        for fut in as_completed(futures):
            try:
                row = fut.result()
            except BrokenProcessPool:
                suspects.append(futures[fut])
                continue
            yield row
    finally:  # also when the caller stops early (Ctrl-C): drop what has not started
        pool.shutdown(wait=True, cancel_futures=True)
    yield from _isolate(sorted(suspects, key=tasks.index), worker)


def _isolate(tasks: Sequence[Task], worker: Worker) -> Iterator[dict]:
    """Re-run tasks from a broken pool one by one; a task that breaks its own pool crashed."""
    pool = None
    try:
        for task in tasks:
            pool = pool or _pool(1)
            try:
                yield pool.submit(worker, task).result()
            except BrokenProcessPool:
                pool.shutdown(wait=False, cancel_futures=True)
                pool = None
                yield _crashed(task)
    finally:
        if pool is not None:
            pool.shutdown()


def exit_code(rows: Iterable[dict]) -> int:
    """0 all ok; else the worst failure: 3 internal > 2 bad input > 1 verification."""
    return max((r.get("exit_code", EXIT_OK) for r in rows), default=EXIT_OK)


# --- presentation ------------------------------------------------------------------------


def summary_table(rows: Sequence[dict]):
    """The end-of-run table, one row per model in input order."""
    from rich.table import Table

    ok = sum(r["status"] == "ok" for r in rows)
    table = Table(title=f"tflite-reorder batch: {ok} of {len(rows)} model(s) optimised")
    for col in ("model", "ops", "peak before", "peak after", "ratio", "optimal",
                "planned arena", "status"):
        table.add_column(col, justify="left" if col in ("model", "status") else "right",
                         no_wrap=col == "model")
    for r in rows:
        if r.get("ops"):
            nums = [str(r["ops"]), str(r["peak_before"]), str(r["peak_after"]),
                    f"{r['ratio']:.2f}x", "yes" if r["optimal"] else f"no (gap {r['gap']})",
                    "-" if r.get("arena_planned") is None else str(r["arena_planned"])]
        else:
            nums = ["-"] * 6
        status = "ok" if r["status"] == "ok" else f"FAILED ({r['error_kind']})"
        table.add_row(Path(r["input"]).stem, *nums, status)
    return table


def print_table(table, console=None) -> None:
    """Print ``table``; off a terminal (a file, CI log) never squeeze it to 80 columns."""
    from rich.console import Console

    console = console or Console()
    if not console.is_terminal and console.width < 140:
        console = Console(file=console.file, width=140, color_system=None)
    console.print(table)


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Callable[[], None]]:
    """A transient progress bar on stderr, only when stderr is a terminal."""
    from rich.console import Console

    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield lambda: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress("optimising", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("models", total=total)
        yield lambda: bar.advance(task)


def run_command(
    specs: Sequence[str],
    out_dir: Path,
    *,
    jobs: int | None = None,
    time_limit: float = 10.0,
    verify: bool = True,
    json_out: bool = False,
    emit: Callable[[str], None] = print,
    console=None,
    report_error: Callable[[str], None] | None = None,
) -> int:
    """The CLI command's body: returns the exit code.

    ``emit`` prints one JSON line per model (as each finishes) with ``json_out``; otherwise
    the table is printed on ``console`` at the end and ``report_error`` gets one line per
    failure as it happens.
    """
    import json

    tasks = make_tasks(collect_inputs(specs), out_dir, time_limit, verify)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    with _progress(len(tasks), enabled=not json_out) as advance:
        for row in run_batch(tasks, jobs):
            rows.append(row)
            advance()
            if json_out:
                emit(json.dumps(row))
            elif row["status"] != "ok" and report_error:
                report_error(row["error"])
    order = {t.src: i for i, t in enumerate(tasks)}
    rows.sort(key=lambda r: order.get(r["input"], len(order)))
    if not json_out:
        print_table(summary_table(rows), console)
    return exit_code(rows)
