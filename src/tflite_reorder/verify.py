"""Proof by running: the written model must compute what the input computes.

Both models get the same random inputs and run under LiteRT's reference kernels (which
match TFLM bit for bit) and, when ``tflite-micro`` is installed, under TFLM itself. Where the
input model is unsafe in TFLM (stored shapes smaller than what the kernels write, so its
outputs depend on the memory plan), the TFLM reference is the input with repaired shapes
and stock planning: a hazard-free run of the same computation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from . import preflight, tflm


@dataclass
class Comparison:
    runtime: str  # "litert" or "tflm"
    reference: str  # what the output model was compared with
    cases: int
    identical: bool
    max_abs_diff: float
    max_rel_diff: float = 0.0
    within_tolerance: bool = True


@dataclass
class Verification:
    comparisons: list[Comparison] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.within_tolerance for c in self.comparisons)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "comparisons": [asdict(c) for c in self.comparisons],
            "skipped": self.skipped,
        }


def _litert(model_bytes: bytes):
    """A LiteRT interpreter on the reference kernels (after ``preflight.check``)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    preflight.check(model_bytes)
    interp = Interpreter(
        model_content=model_bytes,
        experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
    )
    interp.allocate_tensors()
    return interp


def random_inputs(model_bytes: bytes, cases: int, seed: int = 0) -> list[list[np.ndarray]]:
    """Inputs that exercise the whole value range of each input's type."""
    details = _litert(model_bytes).get_input_details()
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(cases):
        sample = []
        for d in details:
            shape, dtype = tuple(int(x) for x in d["shape"]), np.dtype(d["dtype"])
            if dtype.kind == "f":
                sample.append(rng.standard_normal(shape).astype(dtype))
            elif dtype.kind in "iu":
                info = np.iinfo(dtype)
                lo, hi = max(info.min, -128), min(info.max, 127)
                sample.append(rng.integers(lo, hi + 1, size=shape).astype(dtype))
            elif dtype.kind == "b":
                sample.append(rng.integers(0, 2, size=shape).astype(bool))
            else:
                raise ValueError(f"unsupported input type {dtype}")
        out.append(sample)
    return out


def run_litert(model_bytes: bytes, inputs: list[np.ndarray]) -> list[np.ndarray]:
    interp = _litert(model_bytes)
    for d, x in zip(interp.get_input_details(), inputs, strict=True):
        interp.set_tensor(d["index"], x)
    interp.invoke()
    return [interp.get_tensor(d["index"]).copy() for d in interp.get_output_details()]


def _compare(runtime, reference, ref_outs, new_outs, rtol: float | None) -> Comparison:
    identical, max_abs, max_rel, ok = True, 0.0, 0.0, True
    for ref_case, new_case in zip(ref_outs, new_outs, strict=True):
        for a, b in zip(ref_case, new_case, strict=True):
            if a.shape != b.shape or a.dtype != b.dtype:
                return Comparison(runtime, reference, len(ref_outs), False, float("inf"),
                                  float("inf"), False)
            if a.tobytes() == b.tobytes():
                continue
            identical = False
            diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
            max_abs = max(max_abs, float(diff.max()))
            scale = np.maximum(np.abs(a.astype(np.float64)), 1e-12)
            max_rel = max(max_rel, float((diff / scale).max()))
    if not identical:
        ok = rtol is not None and (max_rel <= rtol or max_abs <= rtol)
    return Comparison(runtime, reference, len(ref_outs), identical, max_abs, max_rel, ok)


def verify(
    original: bytes,
    written: bytes,
    *,
    tflm_reference: bytes | None = None,
    cases: int = 3,
    seed: int = 0,
    rtol: float | None = None,
    use_tflm: bool = True,
) -> Verification:
    """Compare ``written`` with ``original`` on ``cases`` random inputs.

    ``rtol`` None demands bit-identical outputs; otherwise outputs may differ by that much
    (relative, or absolute for values near zero). ``tflm_reference`` replaces ``original``
    as the TFLM reference (a hazard-free form of the input).
    """
    result = Verification()
    inputs = random_inputs(original, cases, seed)
    ref = [run_litert(original, x) for x in inputs]
    new = [run_litert(written, x) for x in inputs]
    result.comparisons.append(_compare("litert", "input model (LiteRT reference kernels)",
                                       ref, new, rtol))
    if not use_tflm:
        result.skipped.append("tflm: disabled")
    elif not tflm.available():
        result.skipped.append("tflm: tflite-micro is not installed")
    else:
        base = tflm_reference or original
        label = ("input model with repaired shapes (TFLM)" if tflm_reference
                 else "input model (TFLM)")
        ref_t = [tflm.run_tflm(base, x) for x in inputs]
        new_t = [tflm.run_tflm(written, x) for x in inputs]
        result.comparisons.append(_compare("tflm", label, ref_t, new_t, rtol))
    return result
