"""Tasks in local worker processes, one result per task, a crashing task isolated.

Workers are spawned, not forked: forking a process that may already hold native runtimes
and their threads is unsafe, and spawn is what macOS and Windows do anyway. A worker that
dies outright (a native crash) breaks the whole pool; the tasks that were in flight are
then re-run one at a time in a fresh single-worker pool so the culprit is named and the
innocent ones still finish. Used by ``batch`` (optimise many models) and ``sweep``
(``peak_memory`` of many candidates).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Any


def default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _worker_init() -> None:
    """Quiet native libraries and keep the parent's stdout for its own (JSON) lines."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.dup2(2, 1)  # anything a native library prints goes to stderr, never into the JSON


def _pool(jobs: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"),
                               initializer=_worker_init)


def run_pool(
    tasks: Sequence[Any],
    jobs: int | None,
    worker: Callable[[Any], Any],
    crashed: Callable[[Any, BaseException], Any],
) -> Iterator[Any]:
    """Yield ``worker(task)`` per task, in completion order; ``crashed(task, exc)`` for a
    task whose worker process died.

    ``worker`` must be a module-level function (it is pickled by name into the workers).
    """
    if not tasks:
        return
    jobs = max(1, min(jobs or default_jobs(), len(tasks)))
    suspects: list[int] = []
    pool = _pool(jobs)
    try:
        futures: dict[Future, int] = {pool.submit(worker, t): i for i, t in enumerate(tasks)}
        for fut in as_completed(futures):
            try:
                result = fut.result()
            except BrokenProcessPool:
                suspects.append(futures[fut])
                continue
            yield result
    finally:  # also when the caller stops early (Ctrl-C): drop what has not started
        pool.shutdown(wait=True, cancel_futures=True)
    yield from _isolate([tasks[i] for i in sorted(suspects)], worker, crashed)


def _isolate(tasks: Sequence[Any], worker: Callable, crashed: Callable) -> Iterator[Any]:
    """Re-run tasks from a broken pool one by one; a task that breaks its own pool crashed."""
    pool = None
    try:
        for task in tasks:
            pool = pool or _pool(1)
            try:
                yield pool.submit(worker, task).result()
            except BrokenProcessPool as exc:
                pool.shutdown(wait=False, cancel_futures=True)
                pool = None
                yield crashed(task, exc)
    finally:
        if pool is not None:
            pool.shutdown()
