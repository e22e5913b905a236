"""tflite-reorder: memory-optimal operator order and arena plan for TFLite Micro models."""

__version__ = "0.1.0"
