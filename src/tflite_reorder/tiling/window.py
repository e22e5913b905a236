"""Receptive-field arithmetic: which input rows (columns) an output range of an op reads.

An output pixel of a convolution, depthwise convolution or pool depends only on its
receptive field, so a tile of the output is computed exactly from the matching window of
the input, provided the window carries the same values the whole input had there —
including the padding outside the border, which a tile gets as an explicit ``PAD``. All
ranges here are half-open ``[lo, hi)`` along one spatial axis, in the coordinates of the
untiled tensor; a window may reach outside ``[0, size)``: that part is padding.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """A half-open range ``[lo, hi)`` along one axis."""

    lo: int
    hi: int

    @property
    def size(self) -> int:
        return self.hi - self.lo

    def clip(self, size: int) -> Span:
        """The part inside a tensor of ``size`` rows (may be empty)."""
        return Span(max(self.lo, 0), min(self.hi, size))

    def hull(self, other: Span | None) -> Span:
        return self if other is None else Span(min(self.lo, other.lo), max(self.hi, other.hi))

    def pads(self, size: int) -> tuple[int, int]:
        """Rows of padding before and after the part inside ``[0, size)``."""
        return max(0, -self.lo), max(0, self.hi - size)


@dataclass(frozen=True)
class AxisGeometry:
    """One axis of a sliding window: ``out[i]`` reads ``in[i*stride - pad + j*dilation]``.

    ``pad`` is the padding before the first row (TFLite's SAME puts the odd row after).
    Elementwise ops are ``AxisGeometry(1, 1, 1, 0)``; a PAD op is a 1-wide window with
    ``pad`` = its leading padding.
    """

    kernel: int
    stride: int
    dilation: int
    pad: int

    @property
    def extent(self) -> int:
        """Rows one output row reads (the dilated kernel)."""
        return (self.kernel - 1) * self.dilation + 1

    def window(self, out: Span) -> Span:
        """Input rows (unclipped) that output rows ``out`` read."""
        if out.size <= 0:
            raise ValueError(f"empty output range {out}")
        lo = out.lo * self.stride - self.pad
        return Span(lo, (out.hi - 1) * self.stride - self.pad + self.extent)

    def out_rows(self, window_rows: int) -> int:
        """Output rows a VALID op produces from ``window_rows`` input rows."""
        return (window_rows - self.extent) // self.stride + 1


def same_pad(size: int, kernel: int, stride: int, dilation: int) -> int:
    """Leading padding of TFLite's SAME: half the total, the odd row at the end."""
    out = (size + stride - 1) // stride
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2


def same_total_pad(size: int, kernel: int, stride: int, dilation: int) -> int:
    """All rows of SAME padding on one axis (0: SAME equals VALID there)."""
    out = (size + stride - 1) // stride
    return max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)


def split(size: int, parts: int) -> list[Span]:
    """``size`` rows in ``parts`` contiguous spans as equal as possible (larger first)."""
    if not 1 <= parts <= size:
        raise ValueError(f"cannot split {size} rows into {parts} parts")
    base, extra = divmod(size, parts)
    spans, lo = [], 0
    for i in range(parts):
        hi = lo + base + (1 if i < extra else 0)
        spans.append(Span(lo, hi))
        lo = hi
    return spans
