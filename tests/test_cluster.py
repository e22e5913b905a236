"""The Dask backend: ``batch --cluster`` and ``peak_memory_many(client=...)`` give the local
pool's results on a local cluster of several worker processes; failures stay per model."""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import cloudpickle
import dask
import pytest
from conftest import BATCH_MODELS as GOOD
from conftest import run_cli
from distributed import Client, LocalCluster

from tflite_reorder import batch, cluster, peak_memory_many
from tflite_reorder.candidate import describe_graph, read_graph

# Fields that measure time, not the result (the arena plan, counted in work rather than
# time, is the same under any load, so ``plan_method`` and the offsets are compared too).
TIMING = {"seconds", "schedule_seconds", "search_seconds", "rewrite_seconds",
          "per_subgraph", "verification"}


@contextmanager
def _local_cluster():
    """Two worker processes; a task that kills a worker is given up after one more try."""
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                         dashboard_address=":0", silence_logs=40) as lc, Client(lc) as c:
        yield c


@pytest.fixture(scope="module", autouse=True)
def _by_value():
    """The workers lack tests/: this module's functions travel by value."""
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def client():
    """One cluster for the tests whose workers stay alive."""
    with _local_cluster() as c:
        yield c


@pytest.fixture
def doomed_client():
    """A cluster of its own for a test that kills its workers: on a loaded machine their
    restart can outlast the test, and a shared cluster left without workers makes every
    later test wait for ever."""
    with _local_cluster() as c:
        yield c


# Fields that follow from the arena plan: compared only when neither run's planning was cut
# short by the wall clock (``plan_clock_cut``: on a loaded machine the guard can stop a
# stage before its counted work is spent, and the row says so).
PLANNED = {"arena_planned", "plan_method", "plan_optimal", "plan_clock_cut", "tflm_head",
           "tflm_after"}


def _result(row: dict, clock_cut: bool = False) -> dict:
    skip = TIMING | {"output"} | (PLANNED if clock_cut else set())
    out = {k: v for k, v in row.items() if k not in skip}
    if row.get("verification"):
        out["verified"] = row["verification"]["ok"]
    return out


def test_batch_cluster_equals_local_pool(client, model_dir, tmp_path, capsys):
    address = client.scheduler.address
    code, stdout, stderr = run_cli(["batch", model_dir, "--out", tmp_path / "c", "--json",
                                    "--cluster", address], capsys)
    assert code == 2, stderr  # the corrupt model; the others are fine
    remote = {Path(r["input"]).stem: r for r in map(json.loads, stdout.splitlines())}
    code_local, stdout, _ = run_cli(["batch", model_dir, "--out", tmp_path / "l", "--json",
                                     "--jobs", "2"], capsys)
    local = {Path(r["input"]).stem: r for r in map(json.loads, stdout.splitlines())}
    assert code_local == code
    assert set(remote) == set(local) == {*GOOD, "corrupt"}
    for name in remote:
        cut = bool(remote[name].get("plan_clock_cut") or local[name].get("plan_clock_cut"))
        assert _result(remote[name], cut) == _result(local[name], cut), name
    assert remote["corrupt"]["error_kind"] == "input"
    assert "corrupt.tflite" in remote["corrupt"]["error"]
    for name in GOOD:
        assert remote[name]["verification"]["ok"]
        # Written by the client: the same operator order (plan offsets may differ when
        # the planner's time limit bites; its head is compared above).
        written = read_graph(tmp_path / "c" / f"{name}.tflite")
        assert written == read_graph(tmp_path / "l" / f"{name}.tflite")
    assert not (tmp_path / "c" / "corrupt.tflite").exists()


def test_batch_cluster_table_and_client_object(client, model_dir, tmp_path):
    tasks = batch.make_tasks(batch.collect_inputs([str(model_dir)]), tmp_path / "o", 10.0,
                             False)
    (tmp_path / "o").mkdir()
    rows = list(batch.run_batch_cluster(tasks, client))  # a Client is used and left open
    assert sorted(r["status"] for r in rows) == ["error", "ok", "ok", "ok"]
    assert batch.exit_code(rows) == 2
    assert client.status == "running"


def killer(item):
    """Stands in for ``batch.remote_one``: kills its worker process on one model."""
    task, _data = item
    if "corrupt" in task.src:
        os._exit(7)
    return {"input": task.src, "status": "ok", "exit_code": 0}, None


def test_a_model_that_kills_its_workers_is_one_failed_row(doomed_client, model_dir,
                                                          tmp_path):
    tasks = batch.make_tasks(batch.collect_inputs([str(model_dir)]), tmp_path / "o")
    items = [(t, b"") for t in tasks]
    rows = list(cluster.map_rows(doomed_client, killer, items,
                                 lambda item, exc: (batch._crashed(item[0]), None)))
    by = {Path(r["input"]).stem: r for r, _ in rows}
    assert set(by) == {*GOOD, "corrupt"}
    assert by["corrupt"]["error_kind"] == "internal" and "crashed" in by["corrupt"]["error"]
    assert all(by[n]["status"] == "ok" for n in GOOD)


def _peaks(results) -> list:
    return [(r.index, r.model, r.error_kind, r.exit_code,
             None if r.peak is None else (r.peak.stored, r.peak.optimal, r.peak.lower_bound,
                                          r.peak.is_optimal)) for r in results]


def test_peak_memory_many_on_a_cluster_equals_local(client, model_dir):
    spec = describe_graph(read_graph(model_dir / "concat_dw_int8.tflite"))
    raw = (model_dir / "multi_output_int8.tflite").read_bytes()
    models = [*sorted(model_dir.iterdir()), raw, spec, b"not a model"]
    seen = []
    remote = peak_memory_many(models, client=client, on_result=seen.append)
    here = peak_memory_many(models)
    pool = peak_memory_many(models, jobs=2)
    assert _peaks(remote) == _peaks(here) == _peaks(pool)
    assert sorted(r.index for r in seen) == list(range(len(models)))
    bad = [r for r in remote if not r.ok]
    assert [Path(r.model).name for r in bad] == ["corrupt.tflite", "<candidate 6>"]
    assert all(r.error_kind == "input" and r.exit_code == 2 for r in bad)
    assert "corrupt.tflite" in bad[0].error
    assert remote[5].peak.optimal == here[0].peak.optimal  # the description of model 0
    d = remote[0].to_dict()
    assert d["status"] == "ok" and json.loads(json.dumps(d)) == d


def test_unreachable_scheduler_is_bad_usage(model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", "1s")
    code, stdout, stderr = run_cli(["batch", model_dir, "--out", tmp_path / "o",
                                    "--cluster", "tcp://127.0.0.1:9"], capsys)
    assert code == 2 and stdout == ""
    assert stderr.startswith("tflite-reorder: error: --cluster tcp://127.0.0.1:9: cannot "
                             "connect") and len(stderr.splitlines()) == 1


def test_missing_extra_names_the_install_command(model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import fails as if absent
    code, _, stderr = run_cli(["batch", model_dir, "--out", tmp_path / "o", "--cluster",
                               "tcp://127.0.0.1:9"], capsys)
    assert code == 2 and 'pip install "tflite-reorder[cluster]"' in stderr


@contextmanager
def _bare_cluster(n_workers: int):
    """A cluster of its own (its workers are taken away by the test)."""
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                      dashboard_address=":0", silence_logs=40) as lc, Client(lc) as c:
        yield lc, c


def test_a_cluster_without_workers_is_one_line_exit_2(model_dir, tmp_path, capsys,
                                                      monkeypatch):
    """Dask would keep the tasks waiting for ever: no worker within WORKER_WAIT s is
    refused before any work, like a scheduler that does not answer."""
    monkeypatch.setattr(cluster, "WORKER_WAIT", 1.0)
    with _bare_cluster(0) as (lc, c):
        code, stdout, stderr = run_cli(["batch", model_dir, "--out", tmp_path / "o",
                                        "--cluster", lc.scheduler_address], capsys)
        assert code == 2 and stdout == "", stderr
        assert len(stderr.splitlines()) == 1 and "has no workers (none joined within 1 s)" \
            in stderr, stderr
        with pytest.raises(cluster.ModelError, match="has no workers"):
            peak_memory_many([model_dir / "concat_dw_int8.tflite"], client=c)
    assert not list((tmp_path / "o").glob("*.tflite"))


def slow_row(item):
    """Stands in for ``batch.remote_one``: a row that takes a while."""
    import time

    time.sleep(0.3)
    return {"input": item[0].src, "status": "ok", "exit_code": 0}, None


def test_rows_fail_once_every_worker_is_gone(model_dir, tmp_path, monkeypatch):
    """The only worker leaves after the first row: the rows not done fail (internal, one
    line, exit 3) after WORKER_WAIT s without a worker, instead of waiting for ever."""
    import time

    monkeypatch.setattr(cluster, "WORKER_WAIT", 2.0)
    tasks = batch.make_tasks(batch.collect_inputs([str(model_dir)]), tmp_path / "o")
    items = [(t, b"") for t in tasks]
    with _bare_cluster(1) as (lc, c):
        rows = cluster.map_rows(c, slow_row, items,
                                lambda item, exc: (batch._crashed(item[0], exc), None))
        first, _ = next(rows)
        assert first["status"] == "ok"
        lc.scale(0)
        t0 = time.monotonic()
        while cluster._workers(c) and time.monotonic() - t0 < 30:
            time.sleep(0.1)
        assert not cluster._workers(c)
        rest = [r for r, _ in rows]
        waited = time.monotonic() - t0
    assert len(rest) == len(items) - 1 and {r["input"] for r in [first, *rest]} == {
        t.src for t in tasks}
    failed = [r for r in rest if r["status"] != "ok"]
    assert failed and all(r["error_kind"] == "internal" and r["exit_code"] == 3 for r in failed)
    assert all("no workers for 2 s" in r["error"] and "\n" not in r["error"] for r in failed)
    assert batch.exit_code([first, *rest]) == 3
    assert waited < 30
