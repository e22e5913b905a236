from __future__ import annotations

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
