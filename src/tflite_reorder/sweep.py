"""``peak_memory`` over many candidates: in this process, a local process pool, or a Dask
cluster (``client=``), with each failing candidate isolated as an error entry.

Each candidate may be anything ``peak_memory`` takes: a path (read here, sent by value), raw
``.tflite`` bytes, a loaded model, a graph description or a ``ModelGraph``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from .candidate import Candidate, read_graph
from .flatbuffer_io import LoadedModel, read_bytes
from .results import EXIT_OK, PeakMemory, classify
from .scheduling import peak_of_graph


@dataclass(frozen=True)
class PeakTask:
    """One candidate as plain data (pickles into a worker process or onto a cluster)."""

    index: int
    src: str  # for messages: the path, or "<candidate N>"
    candidate: object  # bytes, graph description or ModelGraph (paths are read first)
    inplace: bool = False
    time_limit: float = 10.0


@dataclass
class PeakResult:
    """One candidate's answer (``peak``) or why there is none (``error``, one line)."""

    index: int
    model: str
    peak: PeakMemory | None = None
    error: str | None = None
    error_kind: str | None = None
    exit_code: int = EXIT_OK

    @property
    def ok(self) -> bool:
        return self.peak is not None

    def to_dict(self) -> dict:
        d = {"index": self.index, "model": self.model, "status": "ok" if self.ok else "error",
             "error": self.error, "error_kind": self.error_kind, "exit_code": self.exit_code}
        if self.peak is not None:
            d.update(vars(self.peak))
        return d


def _task(index: int, model: Candidate, inplace: bool, time_limit: float) -> PeakTask:
    if isinstance(model, str | os.PathLike):
        try:
            data: object = read_bytes(model)
        except Exception as exc:  # unreadable: the worker reports it as that row's error
            data = exc
        return PeakTask(index, str(model), data, inplace, time_limit)
    if isinstance(model, LoadedModel):
        return PeakTask(index, model.source, model.raw, inplace, time_limit)
    return PeakTask(index, f"<candidate {index}>", model, inplace, time_limit)


def peak_task(task: PeakTask) -> PeakResult:
    """Run one task (in any process); every failure becomes the result's error."""
    try:
        if isinstance(task.candidate, BaseException):
            raise task.candidate
        graph = read_graph(task.candidate, source=task.src)
        peak = peak_of_graph(graph, inplace=task.inplace, time_limit=task.time_limit)
    except Exception as exc:
        return crashed(task, exc)
    return PeakResult(task.index, task.src, peak)


def crashed(task: PeakTask, exc: BaseException) -> PeakResult:
    failure = classify(exc)
    if type(exc).__name__ == "KilledWorker":
        failure = classify(RuntimeError("worker process crashed on this model"))
    message = failure.message if failure.kind == "input" else f"{task.src}: {failure.message}"
    return PeakResult(task.index, task.src, None, message, failure.kind, failure.exit_code)


def peak_memory_many(
    models: Iterable[Candidate],
    *,
    client=None,
    jobs: int = 1,
    inplace: bool = False,
    time_limit: float = 10.0,
    on_result: Callable[[PeakResult], None] | None = None,
) -> list[PeakResult]:
    """``peak_memory`` of every candidate, in input order; a candidate that fails is an
    entry with ``error`` set, never an exception.

    ``client`` (a ``distributed.Client`` or a scheduler address) runs them on a Dask
    cluster; otherwise ``jobs`` > 1 uses that many local worker processes, and 1 runs them
    here (the fastest for small candidates: nothing is pickled). ``on_result`` is called
    as each finishes (completion order), e.g. to show progress.
    """
    tasks = [_task(i, m, inplace, time_limit) for i, m in enumerate(models)]
    results: list[PeakResult | None] = [None] * len(tasks)
    for res in _run(tasks, client, jobs):
        results[res.index] = res
        if on_result is not None:
            on_result(res)
    return [r for r in results if r is not None]


def _run(tasks: list[PeakTask], client, jobs: int) -> Iterator[PeakResult]:
    if client is not None:
        from . import cluster

        with cluster.connect(client) as c:
            yield from cluster.map_rows(c, peak_task, tasks, crashed)
    elif jobs > 1 and len(tasks) > 1:
        from .pool import run_pool

        yield from run_pool(tasks, jobs, peak_task, crashed)
    else:
        yield from map(peak_task, tasks)
