"""Running many models on a Dask cluster (``pip install "tflite-reorder[cluster]"``).

Dask distributed rather than Ray: it is pip-only and light (a ``LocalCluster`` of worker
processes starts in a couple of seconds, which the tests do), its futures API maps one to
one onto the local process pool's, and the same ``dask scheduler`` / ``dask worker``
commands (or dask-jobqueue, dask-kubernetes) run it on Slurm, PBS or Kubernetes clusters.

Work travels by value: the client reads each model file and sends its bytes; results (and
optimised model bytes) come back and are written where the client runs, so workers need
``tflite-reorder`` installed but no shared file system. A worker that dies on a model is
retried on other workers by Dask; a model that kills the workers it runs on alone becomes
one failed row, the others finish.

Dask keeps a task waiting for as long as no worker can take it, so a cluster without
workers would make a run wait for ever: ``map_rows`` waits at most ``WORKER_WAIT`` seconds
for a first worker (then ``ModelError``: nothing ran), and when every worker is gone for
that long mid-run the rows not yet done fail with ``NoWorkers`` (one line each).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .flatbuffer_io import ModelError

INSTALL_HINT = 'pip install "tflite-reorder[cluster]"'
CONNECT_TIMEOUT = "20s"
WORKER_WAIT = 60.0  # seconds a run waits while the cluster has no worker
POLL = 1.0  # seconds between looks at the worker count while waiting for results


class NoWorkers(RuntimeError):
    """The cluster has had no worker for ``WORKER_WAIT`` seconds: a row not run."""


def _distributed():
    try:
        import distributed
    except ImportError:
        raise ModelError(f"the cluster backend needs Dask distributed: {INSTALL_HINT}") \
            from None
    return distributed


@contextmanager
def connect(cluster: Any) -> Iterator[Any]:
    """A ``distributed.Client`` for a scheduler address (closed afterwards) or the client
    given (left open). Raises ``ModelError`` when Dask is missing or nobody answers."""
    distributed = _distributed()
    if isinstance(cluster, distributed.Client):
        yield cluster
        return
    try:
        client = distributed.Client(str(cluster), timeout=CONNECT_TIMEOUT,
                                    set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        why = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ModelError(f"--cluster {cluster}: cannot connect to a Dask scheduler ({why})") \
            from None
    try:
        yield client
    finally:
        client.close()


def map_rows(
    client: Any,
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    crashed: Callable[[Any, BaseException], Any],
) -> Iterator[Any]:
    """``fn(item)`` for every item on the cluster, one result per item as each finishes.

    ``fn`` must be a module-level function of an installed module (workers import it by
    name). Dask holds every task that was on a worker when it died suspect, so tasks given
    up on (``KilledWorker``) are re-run one at a time, like the local pool's isolation: one
    that kills its workers alone yields ``crashed(item, exc)``, the innocent ones finish.

    Raises ``ModelError`` when no worker joins within ``WORKER_WAIT`` seconds (before any
    work); when the cluster is left without workers that long mid-run, every row not done
    is ``crashed(item, NoWorkers(...))``.
    """
    if not items:
        return
    distributed = _distributed()
    _first_worker(client)
    futures = client.map(fn, list(items), pure=False)
    item_of = {f.key: item for f, item in zip(futures, items, strict=True)}
    suspects = []
    pending = set(futures)
    try:
        while pending:
            try:
                done = _finished(client, pending, distributed)
            except NoWorkers as exc:
                for fut in futures:  # the stored order, for a reproducible output
                    if fut in pending:
                        yield crashed(item_of[fut.key], exc)
                return
            for fut in done:
                pending.discard(fut)
                try:
                    result = fut.result()
                except Exception as exc:  # KilledWorker, or fn raised despite itself
                    if isinstance(exc, distributed.KilledWorker):
                        suspects.append(item_of[fut.key])
                        continue
                    result = crashed(item_of[fut.key], exc)
                finally:
                    fut.release()
                yield result
    finally:  # also when the caller stops early (Ctrl-C): nothing left running
        client.cancel(futures)
    for item in suspects:
        fut = client.submit(fn, item, pure=False)
        try:
            _finished(client, {fut}, distributed)
            yield fut.result()
        except Exception as exc:  # NoWorkers too: this row alone was not run
            yield crashed(item, exc)
        finally:
            fut.release()


def _workers(client: Any) -> int:
    return len(client.scheduler_info().get("workers", {}))


def _first_worker(client: Any) -> None:
    """Return once the cluster has a worker; ``ModelError`` after ``WORKER_WAIT`` s."""
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT)
    except TimeoutError:
        raise ModelError(f"the Dask cluster at {client.scheduler.address} has no workers "
                         f"(none joined within {WORKER_WAIT:g} s)") from None


def _finished(client: Any, pending: set, distributed) -> set:
    """The futures of ``pending`` that are done, once at least one is; raises
    ``NoWorkers`` once the cluster has had no worker for ``WORKER_WAIT`` s meanwhile."""
    since = None
    while True:
        try:
            return set(distributed.wait(pending, timeout=POLL,
                                        return_when="FIRST_COMPLETED").done)
        except TimeoutError:
            pass
        if _workers(client):
            since = None
        elif since is None:
            since = time.monotonic()
        elif time.monotonic() - since >= WORKER_WAIT:
            raise NoWorkers(f"not run: the Dask cluster has had no workers for "
                            f"{WORKER_WAIT:g} s")
