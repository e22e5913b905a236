"""Many models at once: ``tflite-reorder batch DIR_OR_GLOB --out DIR``.

Each model runs the full ``api.optimize`` pipeline in a worker process (``pool``), so all
cores are used and one model's failure is just a row in the results; a worker that dies on
a model is isolated and named. With ``--cluster ADDRESS`` the models run on a Dask cluster
instead (``cluster``): same rows, same exit codes.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .cluster import NoWorkers
from .flatbuffer_io import ModelError
from .pool import run_pool
from .results import EXIT_OK, KIND_EXIT, NotVerified, VerificationError, classify


@dataclass(frozen=True)
class Task:
    """One model to optimise; plain data so it pickles into a spawned worker."""

    src: str
    dst: str
    time_limit: float = 10.0
    verify: bool = True
    verify_timeout: float | None = None  # seconds per runtime run (None: the default)


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
    inputs: Sequence[Path], out_dir: Path, time_limit: float = 10.0, verify: bool = True,
    verify_timeout: float | None = None,
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
        tasks.append(Task(str(src), str(dst), time_limit, verify, verify_timeout))
    return tasks


# --- one model (runs in a worker) --------------------------------------------------------


def _error(task: Task, kind: str, message: str, report: dict | None = None) -> dict:
    row = dict(report) if report else {}
    row.update(input=task.src, output=None, status="error", error=message, error_kind=kind,
               exit_code=KIND_EXIT[kind])
    return row


def _failed(task: Task, exc: BaseException) -> dict:
    """The row of a failure; ``error_kind`` and ``exit_code`` from ``results.classify``."""
    failure = classify(exc)
    report = exc.report.to_dict() if isinstance(exc, VerificationError | NotVerified) and \
        exc.report is not None else None
    # Every line names its file: graph checks past reading (a cycle, ...) do not.
    where = "" if failure.message.startswith(task.src) else f"{task.src}: "
    return _error(task, failure.kind, where + failure.message, report)


def optimize_task(task: Task, data: bytes | None = None) -> tuple[dict, bytes | None]:
    """Optimise one model, from ``data`` (its bytes: a cluster worker may not see the file)
    or from its file; returns the result row and the bytes to write (None on failure)."""
    from .api import optimize  # looked up per call: tests replace it
    from .flatbuffer_io import parse_model

    try:
        model = task.src if data is None else parse_model(data, task.src)
        result = optimize(model, time_limit=task.time_limit, verify=task.verify,
                          output_name=task.dst, verify_timeout=task.verify_timeout)
    except Exception as exc:  # a bug of ours included: reported, never stops the batch
        return _failed(task, exc), None
    row = result.report.to_dict()
    row.update(input=task.src, output=task.dst, status="ok", error=None, error_kind=None,
               exit_code=EXIT_OK)
    return row, result.data


def write_result(task: Task, row: dict, data: bytes | None) -> dict:
    """Write the optimised model atomically (where the batch runs); the final row."""
    from .flatbuffer_io import write_atomic

    if data is None:
        return row
    try:
        write_atomic(task.dst, data)
    except Exception as exc:
        return _failed(task, exc)
    return row


def process_one(task: Task) -> dict:
    """Optimise one model and write it atomically; every failure becomes a result row."""
    return write_result(task, *optimize_task(task))


def remote_one(item: tuple[Task, bytes]) -> tuple[dict, bytes | None]:
    """``optimize_task`` on a cluster worker: the model comes as bytes, its output goes back."""
    return optimize_task(*item)


# --- local pool or cluster ---------------------------------------------------------------


def _crashed(task: Task, exc: BaseException | None = None) -> dict:
    if isinstance(exc, NoWorkers):
        return _error(task, "internal", f"{task.src}: {exc}")
    return _error(task, "internal", f"{task.src}: worker process crashed while optimising "
                                    f"this model")


def run_batch(
    tasks: Sequence[Task], jobs: int | None = None, worker: Worker = process_one
) -> Iterator[dict]:
    """Yield one result row per task, in completion order, from local worker processes.

    ``worker`` must be a module-level function (it is pickled by name into the workers).
    """
    yield from run_pool(tasks, jobs, worker, _crashed)


def run_batch_cluster(tasks: Sequence[Task], cluster) -> Iterator[dict]:
    """``run_batch`` on a Dask cluster (a scheduler address or a ``distributed.Client``).

    Models are read here and sent as bytes; outputs come back and are written here.
    Raises ``ModelError`` when Dask is not installed or the scheduler does not answer.
    """
    from . import cluster as dask_cluster
    from .flatbuffer_io import read_bytes

    items = []
    with dask_cluster.connect(cluster) as client:
        for task in tasks:
            try:
                items.append((task, read_bytes(task.src)))
            except ModelError as exc:
                yield _failed(task, exc)
        by_src = {task.src: task for task, _ in items}
        for row, data in dask_cluster.map_rows(
                client, remote_one, items, lambda item, exc: (_crashed(item[0], exc), None)):
            yield write_result(by_src[row["input"]], row, data)


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
    verify_timeout: float | None = None,
    json_out: bool = False,
    cluster=None,
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

    tasks = make_tasks(collect_inputs(specs), out_dir, time_limit, verify, verify_timeout)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    with _progress(len(tasks), enabled=not json_out) as advance:
        rows_in = run_batch(tasks, jobs) if cluster is None else run_batch_cluster(tasks, cluster)
        for row in rows_in:
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
