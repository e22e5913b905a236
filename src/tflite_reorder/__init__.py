"""tflite-reorder: memory-optimal operator order and arena plan for TFLite Micro models."""

__version__ = "0.1.0"

from .api import Optimized, PeakMemory, Report, VerificationError, optimize, peak_memory  # noqa: E402
from .flatbuffer_io import LoadedModel, ModelError, load_model  # noqa: E402

__all__ = [
    "LoadedModel", "ModelError", "Optimized", "PeakMemory", "Report", "VerificationError",
    "load_model", "optimize", "peak_memory", "__version__",
]
