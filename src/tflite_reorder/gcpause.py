"""Fewer garbage collections while a model is worked on.

Reading a 50,000-operator model makes about a million Python objects (tables, numpy views,
graph nodes, lifetimes) that all stay alive until the run ends. CPython's cyclic collector
runs after every 700 net allocations and, every hundred runs, walks every object alive:
about 2.5 s of a 50,000-operator run (``tools/limits.py``'s ``chain50k``) went to walks
that found nothing to free. Inside :func:`fewer_collections` the first threshold is
``THRESHOLD0`` allocations instead, so the collector still runs (cyclic garbage is still
freed, memory stays bounded) but about 140 times less often.

The thresholds are process state: the first of any number of nested or concurrent blocks
(threads, ``optimize`` calling itself) raises them, the last one out restores what was
set before.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

THRESHOLD0 = 100_000  # allocations between collections of the youngest generation

_lock = threading.Lock()
_depth = 0
_saved: tuple[int, ...] = ()


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Run the block with the collector's first threshold at ``THRESHOLD0`` (or higher, if
    it already is); never raises."""
    global _depth, _saved
    with _lock:
        if _depth == 0:
            _saved = gc.get_threshold()
            if _saved[0] and _saved[0] < THRESHOLD0:  # 0: collection is off; leave it
                gc.set_threshold(THRESHOLD0, *_saved[1:])
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                gc.set_threshold(*_saved)
