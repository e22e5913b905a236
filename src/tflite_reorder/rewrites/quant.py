"""Quantisation arithmetic for partial convolutions (int8, no calibration data).

A partial convolution's output needs its own int8 scale. Without calibration data the only
safe range is the worst case: interval arithmetic of the real weights over the real range
its int8 input can hold (narrowed by a fused activation upstream, a RELU clamps at 0). A
linear map over a box reaches those bounds, so no input can ever saturate a partial; the
price is a coarser scale than a calibrated one, which shows up in the measured error.
"""

from __future__ import annotations

import numpy as np

from .edit import Editor, Quant

INT8_MIN, INT8_MAX = -128, 127
# Fused activation codes (schema ActivationFunctionType) -> real interval they clamp to.
ACT_RANGES = {1: (0.0, np.inf), 2: (-1.0, 1.0), 3: (0.0, 6.0)}
ACT_OPS = {"RELU": (0.0, np.inf), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0),
           "RELU_0_TO_1": (0.0, 1.0)}


def real_range(ed: Editor, t: int) -> tuple[float, float]:
    """The real values an int8 tensor can hold, narrowed by its producer's activation."""
    q = ed.quant(t)
    s, z = float(q.scale[0]), int(q.zero_point[0])
    lo, hi = s * (INT8_MIN - z), s * (INT8_MAX - z)
    prod = ed.producer(t)
    if prod is not None:
        code = ed.opcode(prod)
        act = ACT_OPS.get(code)
        opts = prod.builtinOptions
        if act is None and opts is not None:
            act = ACT_RANGES.get(getattr(opts, "fusedActivationFunction", 0))
        if act is not None:
            lo, hi = max(lo, act[0]), min(hi, act[1])
    return min(lo, 0.0), max(hi, 0.0)


def weight_reals(w: np.ndarray, q: Quant) -> np.ndarray:
    """Real weights, output channel first (per-channel scales along axis 0 or per-tensor)."""
    scale = q.scale.reshape((-1,) + (1,) * (w.ndim - 1)) if not q.per_tensor else q.scale[0]
    zp = q.zero_point.reshape((-1,) + (1,) * (w.ndim - 1)) if not q.per_tensor else (
        q.zero_point[0])
    return (w.astype(np.float64) - zp) * scale


def contraction_bounds(
    w_real: np.ndarray, lo: float, hi: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel min and max of Σ w·x over x ∈ [lo, hi] (w output-channel first)."""
    flat = w_real.reshape(w_real.shape[0], -1)
    a, b = flat * lo, flat * hi
    return np.minimum(a, b).sum(axis=1), np.maximum(a, b).sum(axis=1)


def covering_quant(lo: float, hi: float) -> Quant:
    """Per-tensor int8 quantisation whose range holds [lo, hi] (and 0)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    span = max(hi - lo, 1e-12)
    scale = span / (INT8_MAX - INT8_MIN - 1)  # one step of slack for the rounded zero point
    zp = int(np.clip(np.round(INT8_MIN - lo / scale), INT8_MIN, INT8_MAX))
    return Quant(np.array([scale]), np.array([zp]))


def requantized_bias(bias: np.ndarray, old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """int32 bias of scale ``old`` (per channel) re-expressed in scale ``new``."""
    real = bias.astype(np.float64) * old
    return np.clip(np.round(real / new), -(2**31), 2**31 - 1).astype(np.int32)
