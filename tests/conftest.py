"""Shared test helpers: the model lists, the CLI runner, batch fixtures, the ``tflm`` marker.

Test modules import the names below with ``from conftest import …`` (pytest puts this
directory on ``sys.path``); tools the tests exercise are imported as the ``tools`` package
(the repository root is on ``pythonpath`` in ``pyproject.toml``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import NamedTuple

import pytest

from tflite_reorder import tflm

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = ROOT / "models"
BAD_INPUTS_DIR = ROOT / "tests" / "bad_inputs"
ALL_MODELS = sorted(MODELS_DIR.glob("*.tflite"))
# The inplace_* models are one-op probes for tests/test_inplace.py; the rest are networks.
MODELS = [m for m in ALL_MODELS if not m.stem.startswith("inplace_")]
INPLACE_MODELS = [m for m in ALL_MODELS if m.stem.startswith("inplace_")]
# tools/make_compat_models.py: models TFLM cannot run (float16 DEQUANTIZE, DENSIFY, custom
# ops) and the one that no runtime runs. tests/test_compat.py checks these lists against
# running every model, so they cannot drift.
NO_RUNTIME = frozenset({"unknown_op"})
TFLM_CANNOT_RUN = frozenset({"tiny_fp16w", "mobilenet_deep_fp16w", "dense_sparse",
                             "audio_custom"}) | NO_RUNTIME
TFLM_MODELS = [m for m in ALL_MODELS if m.stem not in TFLM_CANNOT_RUN]
LITERT_MODELS = [m for m in ALL_MODELS if m.stem not in NO_RUNTIME]


@pytest.fixture(scope="session", autouse=True)
def _planning_by_work_alone():
    """The arena planner's wall-clock guard lifted for in-process tests: plans then follow
    from the counted work alone, as on an idle machine, so what a test asserts about a plan
    does not change when CI is loaded. ``tests/test_arena.py`` tests the guard itself, and
    runs in other processes (batch pools, clusters) keep it and say when it bit
    (``plan_clock_cut``)."""
    from tflite_reorder import arena

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(arena, "WALL_SLACK", 1e6)
        yield


def model_path(name: str) -> Path:
    """``models/<name>.tflite``."""
    return MODELS_DIR / f"{name}.tflite"


def pytest_collection_modifyitems(config, items) -> None:
    """``@pytest.mark.tflm`` tests need tflite-micro (a test extra): skipped without it."""
    if tflm.available():
        return
    skip = pytest.mark.skip(reason="tflite-micro not installed")
    for item in items:
        if "tflm" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return MODELS_DIR


# Batch mode's inputs (tests/test_batch.py, tests/test_cluster.py): three small shipped
# models and one truncated file.
BATCH_MODELS = ("concat_dw_int8", "multi_output_int8", "inception_int8")


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A directory of the batch models and ``corrupt.tflite`` (a truncated mobilenet)."""
    d = tmp_path / "models"
    d.mkdir()
    for name in BATCH_MODELS:
        shutil.copy(model_path(name), d)
    raw = model_path("mobilenet_int8").read_bytes()
    (d / "corrupt.tflite").write_bytes(raw[:3000])
    return d


class CliRun(NamedTuple):
    code: int
    out: str
    err: str


def run_cli(args, capsys) -> CliRun:
    """The CLI on ``args`` in process, as the console script runs it (it always exits):
    exit code, stdout, stderr (only this run's: earlier output is dropped first)."""
    from tflite_reorder.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return CliRun(exc.value.code, captured.out, captured.err)
