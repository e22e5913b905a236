"""Proof by running: the written model must compute what the input computes.

Both models get the same random inputs and run under LiteRT's reference kernels (which
match TFLM bit for bit) and, when ``tflite-micro`` is installed, under TFLM itself. Where the
input model is unsafe in TFLM (stored shapes smaller than what the kernels write, so its
outputs depend on the memory plan), the TFLM reference is the input with repaired shapes
and stock planning: a hazard-free run of the same computation.

Every run is bounded (``runtimes.run_timeout``): a runtime that did not finish is listed
as not run with ``timed_out``, and a verification with a timeout is never ``ok``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from . import tflm
from .flatbuffer_io import LoadedModel, shared_reads
from .runtimes import RuntimeTimeout, random_inputs, run_litert, structured_inputs


@dataclass
class Comparison:
    runtime: str  # "litert" or "tflm"
    reference: str  # what the output model was compared with
    cases: int
    identical: bool
    max_abs_diff: float
    max_rel_diff: float = 0.0
    within_tolerance: bool = True


@dataclass(frozen=True)
class Runnability:
    """Whether one runtime runs a model (one inference on random inputs), and if not why."""

    runtime: str  # "litert" or "tflm"
    runs: bool
    why: str = ""  # the runtime's own words, one line; "" when it runs
    timed_out: bool = False  # killed at ``runtimes.run_timeout()``: not known to run


@dataclass
class Verification:
    """Each runtime that ran both models (``comparisons``) and each that did not, and why.

    ``ok`` needs at least one comparison, every comparison within tolerance and no
    runtime timed out: a verification in which nothing ran proves nothing, one cut short
    proves less than it claims, and neither is ever ``ok``.
    """

    comparisons: list[Comparison] = field(default_factory=list)
    not_run: list[Runnability] = field(default_factory=list)

    @property
    def timed_out(self) -> list[Runnability]:
        """The runtimes killed at the time bound (listed in ``not_run`` too)."""
        return [r for r in self.not_run if r.timed_out]

    @property
    def ok(self) -> bool:
        return bool(self.comparisons) and not self.timed_out and all(
            c.within_tolerance for c in self.comparisons)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "ran": [c.runtime for c in self.comparisons],
            "comparisons": [asdict(c) for c in self.comparisons],
            "not_run": [{"runtime": r.runtime, "why": r.why, "timed_out": r.timed_out}
                        for r in self.not_run],
            "timed_out": [r.runtime for r in self.timed_out],
        }


def _one_line(exc: BaseException, limit: int = 400) -> str:
    return " ".join(f"{exc}".split())[:limit] or type(exc).__name__


@shared_reads()  # every interpreter's read-only checks: once per model
def runnability(model_bytes: bytes, use_tflm: bool = True) -> list[Runnability]:
    """Which runtimes run the model, checked by running it once (LiteRT first, then TFLM).

    Cheap next to a search, so callers check it before searching: a model no runtime
    can run cannot be verified, and one TFLM cannot run gets no TFLM-only promise. A run
    past ``runtimes.run_timeout()`` is not run, ``timed_out``.
    """
    out = []
    try:
        run_litert(model_bytes, random_inputs(model_bytes, 1)[0])
    except Exception as exc:  # LiteRT's own refusal (custom op, bad tensor, ...)
        out.append(Runnability("litert", False, _one_line(exc),
                               isinstance(exc, RuntimeTimeout)))
    else:
        out.append(Runnability("litert", True))
    if not use_tflm:
        out.append(Runnability("tflm", False, "disabled by the caller"))
    elif not tflm.available():
        out.append(Runnability("tflm", False, "tflite-micro is not installed"))
    else:
        try:
            tflm.run_tflm(model_bytes, structured_inputs(model_bytes))
        except (tflm.TflmError, ValueError, TypeError) as exc:
            out.append(Runnability("tflm", False, _one_line(exc),
                                   isinstance(exc, RuntimeTimeout)))
        else:
            out.append(Runnability("tflm", True))
    return out


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


@shared_reads()  # every interpreter's read-only checks: once per model
def verify(
    original: bytes,
    written: bytes,
    *,
    tflm_reference: bytes | None = None,
    cases: int = 3,
    seed: int = 0,
    rtol: float | None = None,
    use_tflm: bool = True,
    runtimes: list[Runnability] | None = None,
    tflm_against_litert: bool = False,
) -> Verification:
    """Compare ``written`` with ``original`` on ``cases`` random inputs.

    Runs every runtime that runs the input (``runtimes``, from :func:`runnability` on the
    input; computed here when not given); the others are listed in ``not_run`` with the
    reason. ``rtol`` None demands bit-identical outputs; otherwise outputs may differ by
    that much (relative, or absolute for values near zero). ``tflm_reference`` replaces
    ``original`` as the TFLM reference (a hazard-free form of the input);
    ``tflm_against_litert`` compares TFLM's outputs on ``written`` with LiteRT's on
    ``original`` (an input TFLM cannot run, made runnable by ``--tflm-compat``). A runtime
    that runs the input but fails on ``written`` raises: that is our bug, not the input's;
    one that runs past ``runtimes.run_timeout()`` on either model has no comparison and
    is listed in ``not_run`` as ``timed_out`` (the result is then not ``ok``).
    """
    if runtimes is None:
        runtimes = runnability(original, use_tflm)
    runs = {r.runtime: r for r in runtimes}
    result = Verification(not_run=[r for r in runtimes if not r.runs])
    if not any(r.runs for r in runtimes):
        return result
    inputs = random_inputs(original, cases, seed) if runs["litert"].runs else \
        [structured_inputs(original, seed + i) for i in range(cases)]
    ref = None
    if runs["litert"].runs:
        try:
            ref = _bounded("litert", "the input", lambda: [run_litert(original, x)
                                                          for x in inputs])
            new = _bounded("litert", "the written model", lambda: [run_litert(written, x)
                                                                  for x in inputs])
        except _TimedOut as t:
            result.not_run.append(t.entry)
        else:
            result.comparisons.append(_compare("litert", "input model (LiteRT reference "
                                               "kernels)", ref, new, rtol))
    # TFLM on the output against LiteRT on the input: for inputs only made TFLM-runnable.
    against = tflm_against_litert and ref is not None and tflm.available() and \
        runs["tflm"].why != "disabled by the caller"
    if against:
        result.not_run = [r for r in result.not_run if r.runtime != "tflm"]
    if runs["tflm"].runs or against:
        base = tflm_reference or original
        label = ("input model with repaired shapes (TFLM)" if tflm_reference
                 else "input model (TFLM)")
        if against:
            label = "input model (LiteRT reference kernels; TFLM cannot run it)"
        try:
            ref_t = ref if against else _bounded(
                "tflm", "the input", lambda: [tflm.run_tflm(base, x) for x in inputs])
            new_t = _bounded("tflm", "the written model",
                             lambda: [tflm.run_tflm(written, x) for x in inputs])
        except _TimedOut as t:
            result.not_run.append(t.entry)
        else:
            result.comparisons.append(_compare("tflm", label, ref_t, new_t, rtol))
    return result


class _TimedOut(Exception):
    """A runtime's run inside ``verify`` timed out; ``entry`` says which and on what."""

    def __init__(self, entry: Runnability) -> None:
        super().__init__(entry.why)
        self.entry = entry


def _bounded(runtime: str, what: str, run):
    """``run()``, with a ``RuntimeTimeout`` turned into ``_TimedOut`` naming ``what`` ran."""
    try:
        return run()
    except RuntimeTimeout as exc:
        raise _TimedOut(Runnability(runtime, False, f"{_one_line(exc)} running {what}",
                                    True)) from None


def verify_written(
    loaded: LoadedModel, data: bytes, tflm_reference: bytes | None,
    runtimes: list[Runnability] | None = None, tflm_against_litert: bool = False,
) -> Verification:
    """``verify`` of the bytes about to be written against the input ``loaded``.

    ``runtimes`` is :func:`runnability` of the input, checked before the search; a
    runtime that runs the input but fails on our output is our bug: its exception
    propagates (an internal error, nothing written).
    """
    return verify(loaded.raw, data, tflm_reference=tflm_reference, runtimes=runtimes,
                  tflm_against_litert=tflm_against_litert)
