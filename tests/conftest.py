from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ALL_MODELS = sorted((ROOT / "models").glob("*.tflite"))
# The inplace_* models are one-op probes for tests/test_inplace.py; the rest are networks.
MODELS = [m for m in ALL_MODELS if not m.stem.startswith("inplace_")]
# tools/make_compat_models.py: models TFLM cannot run (float16 DEQUANTIZE, DENSIFY, custom
# ops) and the one that no runtime runs. tests/test_compat.py checks these lists against
# running every model, so they cannot drift.
NO_RUNTIME = frozenset({"unknown_op"})
TFLM_CANNOT_RUN = frozenset({"tiny_fp16w", "mobilenet_deep_fp16w", "dense_sparse",
                             "audio_custom"}) | NO_RUNTIME
TFLM_MODELS = [m for m in ALL_MODELS if m.stem not in TFLM_CANNOT_RUN]
LITERT_MODELS = [m for m in ALL_MODELS if m.stem not in NO_RUNTIME]
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return ROOT / "models"
