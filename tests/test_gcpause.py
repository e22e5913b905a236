"""gcpause: the collector's first threshold is raised inside the blocks (nested, concurrent
or inside ``optimize``) and restored when the last one ends."""

from __future__ import annotations

import contextlib
import gc
import threading

from conftest import model_path

from tflite_reorder import api
from tflite_reorder.gcpause import THRESHOLD0, fewer_collections


def test_raised_inside_and_restored_after() -> None:
    before = gc.get_threshold()
    with fewer_collections():
        assert gc.get_threshold()[0] == max(THRESHOLD0, before[0])
        assert gc.get_threshold()[1:] == before[1:]
        with fewer_collections():
            assert gc.get_threshold()[0] == max(THRESHOLD0, before[0])
        assert gc.get_threshold()[0] == max(THRESHOLD0, before[0])  # the outer block holds
    assert gc.get_threshold() == before


def test_restored_after_an_exception_and_collection_off_left_off() -> None:
    before = gc.get_threshold()
    with contextlib.suppress(ValueError), fewer_collections():
        raise ValueError
    assert gc.get_threshold() == before
    gc.set_threshold(0, *before[1:])
    try:
        with fewer_collections():
            assert gc.get_threshold()[0] == 0
    finally:
        gc.set_threshold(*before)


def test_concurrent_blocks_restore_once_the_last_ends() -> None:
    before = gc.get_threshold()
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with fewer_collections():
            inside.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    inside.wait(10)
    with fewer_collections():
        pass
    assert gc.get_threshold()[0] == max(THRESHOLD0, before[0])  # the thread's block holds
    release.set()
    t.join()
    assert gc.get_threshold() == before


def test_optimize_runs_with_fewer_collections() -> None:
    before = gc.get_threshold()
    seen = []
    api.optimize(model_path("inception_int8"), verify=False, time_limit=1.0,
                 on_stage=lambda _s: seen.append(gc.get_threshold()[0]))
    assert seen and all(t == max(THRESHOLD0, before[0]) for t in seen)
    assert gc.get_threshold() == before
