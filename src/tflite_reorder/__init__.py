"""tflite-reorder: memory-optimal operator order and arena plan for TFLite Micro models."""

from .api import optimize, peak_memory
from .flatbuffer_io import LoadedModel, ModelError, load_model
from .results import Optimized, PeakMemory, Report, VerificationError
from .version import __version__

__all__ = [
    "LoadedModel", "ModelError", "Optimized", "PeakMemory", "Report", "VerificationError",
    "load_model", "optimize", "peak_memory", "__version__",
]
