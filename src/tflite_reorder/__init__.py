"""tflite-reorder: memory-optimal operator order and arena plan for TFLite Micro models."""

from .api import optimize, peak_memory, peak_memory_many
from .candidate import GraphSpec, OpSpec, TensorSpec
from .flatbuffer_io import LoadedModel, ModelError, load_model
from .results import Optimized, PeakMemory, Report, VerificationError
from .version import __version__

__all__ = [
    "GraphSpec", "LoadedModel", "ModelError", "OpSpec", "Optimized", "PeakMemory", "Report",
    "TensorSpec", "VerificationError", "load_model", "optimize", "peak_memory",
    "peak_memory_many", "__version__",
]
