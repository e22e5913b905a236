"""Patch-based (tiled) execution emitted as a plain ``.tflite``.

``region`` finds runs of ops between single-tensor cuts that hold the peak, ``window`` and
``spatial`` say which input window each output tile reads, ``rewrite`` emits the tiles
(slice, pad, VALID ops, concatenate) with the model editor, ``cost`` counts MACs and TFLM
bytes, and ``search`` chooses regions and tile grids.
"""

from .search import TileResult, tile_model

__all__ = ["TileResult", "tile_model"]
