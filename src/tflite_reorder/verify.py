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

from . import tflm
from .flatbuffer_io import LoadedModel, ModelError
from .runtimes import random_inputs, run_litert


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
    tflm_against_litert: bool = False,
) -> Verification:
    """Compare ``written`` with ``original`` on ``cases`` random inputs.

    ``rtol`` None demands bit-identical outputs; otherwise outputs may differ by that much
    (relative, or absolute for values near zero). ``tflm_reference`` replaces ``original``
    as the TFLM reference (a hazard-free form of the input); ``tflm_against_litert``
    compares TFLM's outputs with LiteRT's on ``original`` (an input TFLM cannot run).

    Raises what the runtimes raise (LiteRT's ``ValueError``/``RuntimeError``,
    ``tflm.TflmError``) when a model cannot run; ``verify_written`` sorts out whose fault.
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
        if tflm_against_litert:
            label = "input model (LiteRT reference kernels; TFLM cannot run it)"
        ref_t = ref if tflm_against_litert else [tflm.run_tflm(base, x) for x in inputs]
        new_t = [tflm.run_tflm(written, x) for x in inputs]
        result.comparisons.append(_compare("tflm", label, ref_t, new_t, rtol))
    return result


def verify_written(
    loaded: LoadedModel, data: bytes, tflm_reference: bytes | None, use_tflm: bool = True,
    tflm_against_litert: bool = False,
) -> Verification:
    """``verify``, where a runtime that cannot run the *input* is a bad input.

    LiteRT or TFLM refuse some models (custom or unknown ops, dynamic tensors); those
    cannot be checked by running, and the user chooses to skip that (``verify=False``).
    Raises ``ModelError`` when the input itself does not run; a runtime that runs the input
    but fails on our output is our bug: its exception is re-raised as is.
    """
    try:
        return verify(loaded.raw, data, tflm_reference=tflm_reference, use_tflm=use_tflm,
                      tflm_against_litert=tflm_against_litert)
    except Exception as exc:
        failure = exc
    try:
        x = random_inputs(loaded.raw, 1)[0]
        run_litert(loaded.raw, x)
        if use_tflm and tflm.available() and not tflm_against_litert:
            tflm.run_tflm(tflm_reference or loaded.raw, x)
    except Exception as exc:
        why = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        raise ModelError(f"{loaded.source}: cannot verify, the input model does not run "
                         f"({why}); use --no-verify to skip verification") from None
    raise failure
