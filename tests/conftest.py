from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ALL_MODELS = sorted((ROOT / "models").glob("*.tflite"))
# The inplace_* models are one-op probes for tests/test_inplace.py; the rest are networks.
MODELS = [m for m in ALL_MODELS if not m.stem.startswith("inplace_")]
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return ROOT / "models"


# Batch mode's inputs (tests/test_batch.py, tests/test_cluster.py): three small shipped
# models and one truncated file.
BATCH_MODELS = ("concat_dw_int8", "multi_output_int8", "inception_int8")


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A directory of the batch models and ``corrupt.tflite`` (a truncated mobilenet)."""
    d = tmp_path / "models"
    d.mkdir()
    for name in BATCH_MODELS:
        shutil.copy(ROOT / "models" / f"{name}.tflite", d)
    raw = (ROOT / "models" / "mobilenet_int8.tflite").read_bytes()
    (d / "corrupt.tflite").write_bytes(raw[:3000])
    return d


def run_cli(args, capsys) -> tuple[int, str, str]:
    """The CLI on ``args``: exit code, stdout, stderr."""
    from tflite_reorder.cli import main

    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err
