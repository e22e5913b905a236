"""What a candidate rewrite costs and gains: optimal-order peak and error vs the original.

Errors are measured, never assumed: the original and the rewritten model run on the same
inputs under LiteRT's reference kernels (which TFLM matches bit for bit): random ones,
*structured* ones (constant images at the extremes and the middle of the input range,
smooth ramps along H and W, a min/max checkerboard: real images look more like these than
like noise, and they drive activations to the ends of their ranges) and, when given, the
user's calibration samples. Integer outputs, and float outputs of a DEQUANTIZE, are
compared in LSBs of their quantisation; other float outputs by the absolute error over the
largest reference magnitude (so values near 0 do not blow the figure up). The worst case
and the input family it came from are reported.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from ..flatbuffer_io import ModelError
from ..graph import opcode_name
from ..memory import simulate
from ..runtimes import (
    input_details,
    input_specs,
    pattern_inputs,
    random_inputs,
    run_litert_cases,
)
from ..scheduling import schedule_model
from ..shapes import true_graph
from ..tensors import text
from ..tflm import graph_tail


@dataclass(frozen=True)
class ErrorStats:
    """Worst difference from the original over all cases and outputs."""

    identical: bool
    max_lsb: float  # outputs with an integer scale (int outputs, dequantised floats)
    max_rel: float  # other float outputs: max |diff| / max |reference|
    cases: int
    worst: str = ""  # the input family of the worst case ("random", "constant", ...)

    def to_dict(self) -> dict:
        return {"identical": self.identical, "max_error_lsb": self.max_lsb,
                "max_rel_error": self.max_rel, "cases": self.cases, "worst_input": self.worst}


def load_calibration(path: str, data: bytes) -> list[list[np.ndarray]]:
    """Representative inputs from an ``.npz``: one array per model input (by input name,
    else in order), shaped ``(samples, *input_shape)`` (or one sample of the input's shape).
    Float arrays for a quantised input are quantised with its scale and zero point, as the
    TFLite converter's representative data would be. Raises ValueError naming the problem.
    """
    specs = input_specs(data)
    names = [d["name"] for d in input_details(data)]
    try:
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read calibration file: {exc}") from None
    keys = list(arrays)
    if len(keys) != len(specs):
        raise ValueError(f"calibration file has {len(keys)} arrays, model has {len(specs)} "
                         f"input(s)")
    per_input = []
    for i, (shape, dtype, q) in enumerate(specs):
        arr = arrays.get(names[i], arrays[keys[i]])
        if tuple(arr.shape) == shape:
            arr = arr[None]
        if tuple(arr.shape[1:]) != shape:
            if tuple(arr.shape[1:]) == shape[1:] and shape[:1] == (1,):
                arr = arr[:, None]
            else:
                raise ValueError(f"calibration input {i}: shape {list(arr.shape)} does not "
                                 f"match {list(shape)} with a leading sample axis")
        if arr.dtype.kind == "f" and dtype.kind in "iu" and q is not None:
            info = np.iinfo(dtype)
            arr = np.clip(np.round(arr / q[0] + q[1]), info.min, info.max)
        per_input.append(arr.astype(dtype))
    n = min(len(a) for a in per_input)
    if n == 0:
        raise ValueError("calibration file has no samples")
    return [[a[k] for a in per_input] for k in range(n)]


def lsb_scales(model: schema.ModelT) -> list[float | None]:
    """Per output of subgraph 0: the value of one LSB, or None for plain float outputs."""
    sg = model.subgraphs[0]
    producers = {int(t): op for op in sg.operators or [] for t in op.outputs}
    scales: list[float | None] = []
    for t in sg.outputs if sg.outputs is not None else ():
        tensor = sg.tensors[int(t)]
        if tensor.type not in (schema.TensorType.FLOAT32, schema.TensorType.FLOAT16):
            scales.append(1.0)
            continue
        op = producers.get(int(t))
        scale = None
        if op is not None and opcode_name(model, op.opcodeIndex) == "DEQUANTIZE":
            q = sg.tensors[int(op.inputs[0])].quantization
            if q is not None and q.scale is not None and len(q.scale) == 1:
                scale = float(q.scale[0])
        scales.append(scale)
    return scales


# Errors a runtime raises for a model it cannot run (``ModelError``: refused before it
# could crash; TflmError is a RuntimeError).
REFUSED = (RuntimeError, ValueError, ModelError)


def run_cases(runtime: str, data: bytes, cases: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
    """Every case's outputs under ``runtime`` ("litert", reference kernels, or "tflm",
    which matches them bit for bit); raises what the runtime raises (``REFUSED``)."""
    if runtime == "litert":
        return run_litert_cases(data, cases)[0]
    from .. import tflm

    return tflm.run_tflm_cases(data, cases)


class Reference:
    """The original model's outputs on random, structured and calibration inputs, once.

    They are measured with LiteRT's reference kernels, or, for a model LiteRT refuses (an
    op it lacks, int8 SVDF state it would corrupt memory on), with TFLM (``runtime``
    says which; every candidate is then compared under the same runtime). Tensors inside
    the model (``local``, calibration ranges) are read with LiteRT only. Raises
    ``REFUSED`` errors when no runtime runs the model, naming each runtime's reason.
    """

    def __init__(
        self, data: bytes, model: schema.ModelT, cases: int, seed: int,
        calibration: list[list[np.ndarray]] | None = None, use_tflm: bool = True,
    ) -> None:
        self.data = data
        named = [("random", x) for x in random_inputs(data, cases, seed)]
        named += pattern_inputs(data)
        named += [("calibration", x) for x in calibration or []]
        self.kinds = [k for k, _ in named]
        self.inputs = [x for _, x in named]
        self.refusals: dict[str, str] = {}  # runtime -> why it could not run the model
        t = time.monotonic()
        self.runtime, self.outputs = self._first_runtime(use_tflm)
        self.run_seconds = time.monotonic() - t  # what one comparison's run costs
        self.scales = lsb_scales(model)

    def _first_runtime(self, use_tflm: bool) -> tuple[str, list[list[np.ndarray]]]:
        from .. import tflm

        runtimes = ["litert"] + (["tflm"] if use_tflm and tflm.available() else [])
        for runtime in runtimes:
            try:
                return runtime, run_cases(runtime, self.data, self.inputs)
            except REFUSED as exc:
                self.refusals[runtime] = str(exc).splitlines()[0] if str(exc) else type(
                    exc).__name__
        why = "; ".join(f"{k}: {v}" for k, v in self.refusals.items())
        raise RuntimeError(f"no runtime runs the model ({why})")

    def compare(self, data: bytes) -> ErrorStats:
        got = run_cases(self.runtime, data, self.inputs)
        return self.stats(self.outputs, got, self.scales, self.kinds)

    @staticmethod
    def stats(want, got, scales, kinds=None) -> ErrorStats:
        identical, lsb, rel, worst, top_err = True, 0.0, 0.0, "", 0.0
        for k, (w_case, g_case) in enumerate(zip(want, got, strict=True)):
            for w, g, scale in zip(w_case, g_case, scales, strict=True):
                if w.shape != g.shape or w.dtype != g.dtype:
                    return ErrorStats(False, float("inf"), float("inf"), len(want))
                if np.array_equal(w, g):
                    continue
                identical = False
                diff = np.abs(w.astype(np.float64) - g.astype(np.float64))
                if scale is not None:
                    err = float(diff.max()) / scale
                    lsb = max(lsb, err)
                else:
                    top = float(np.abs(w.astype(np.float64)).max())
                    err = float(diff.max()) / max(top, 1e-30)
                    rel = max(rel, err)
                if err > top_err and kinds is not None:
                    top_err, worst = err, kinds[k]
        return ErrorStats(identical, lsb, rel, len(want), worst)

    def local(self, data: bytes, pairs: list[tuple[int, int]]) -> list[float]:
        """Max difference in LSBs (or relative) at tensors: (original index, new index)."""
        if not pairs:
            return []
        _, want = run_litert_cases(self.data, self.inputs, tuple(a for a, _ in pairs))
        _, got = run_litert_cases(data, self.inputs, tuple(b for _, b in pairs))
        out = []
        for k in range(len(pairs)):
            w = [case[k] for case in want]
            g = [case[k] for case in got]
            scale = 1.0 if w[0].dtype.kind in "iu" else None
            s = self.stats([[x] for x in w], [[y] for y in g], [scale])
            out.append(s.max_lsb if scale is not None else s.max_rel)
        return out


PARTIAL_NAME = re.compile(r"/(part|sum)\d+$")
# Calibrated ranges are widened by this share of their span on each side (and at least
# two steps of the worst-case scale), so inputs unlike the random ones rarely saturate.
RANGE_MARGIN = 0.25


def observed_ranges(
    data: bytes, model: schema.ModelT, cases: list[list[np.ndarray]]
) -> dict[str, tuple[float, float]]:
    """Real ranges the int8 partial products and sums of subgraph 0 take on ``cases``."""
    sg = model.subgraphs[0]
    probes = tuple(
        i for i, t in enumerate(sg.tensors)
        if t.type == schema.TensorType.INT8 and t.buffer == 0 and t.quantization is not None
        and PARTIAL_NAME.search(text(t.name))
    )
    if not probes:
        return {}
    _, seen = run_litert_cases(data, cases, probes)
    out = {}
    for k, t in enumerate(probes):
        q = sg.tensors[t].quantization
        scale, zp = float(q.scale[0]), int(q.zeroPoint[0])
        lo = min(float(case[k].min()) for case in seen)
        hi = max(float(case[k].max()) for case in seen)
        lo, hi = (lo - zp) * scale, (hi - zp) * scale
        pad = max(RANGE_MARGIN * (hi - lo), 2 * scale)
        out[text(sg.tensors[t].name)] = (lo - pad, hi + pad)
    return out


@dataclass(frozen=True)
class Peak:
    """The best order's peak (TFLM's lifetimes) and whether the scheduler proved it."""

    peak: int
    optimal: bool
    orders: list[list[int]]
    tail: int = 0  # TFLM's persistent tail, estimated (it grows with every op and tensor)
    live: dict[tuple[int, int], int] | None = None  # (subgraph, op) -> live bytes at its scope


def optimal_peak(model: schema.ModelT, inplace: bool, time_limit: float) -> Peak:
    """The best order's peak under TFLM's lifetimes, with the sizes the kernels use, and
    the bytes live while each operator runs in that order."""
    graph = true_graph(model)
    orders, results = schedule_model(graph, inplace, time_limit)
    use = simulate(graph, orders, inplace=inplace)
    keys = list(use.op_scope)
    live = dict(zip(keys, use.live_at([use.op_scope[k] for k in keys]), strict=True))
    return Peak(use.lower_bound, all(r.optimal for r in results.values()), orders,
                graph_tail(graph), live)
