"""Running models in TFLite Micro and measuring its arena (optional ``tflite-micro``).

TFLM is the ground truth for everything the planner claims: its reported head must equal
our plan's head, and its outputs must not change when our plan moves tensors around.
The Python interpreter allocates at construction and reports through C-level ``printf``
to file descriptor 2 (``print_allocations``, error logs), bypassing ``sys.stderr``. We
capture fds 1 and 2 around every call into TFLM, so our own output stays clean and the
numbers can be parsed. Swapping process-wide descriptors is not thread-safe: do not call
these functions from several threads at once.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from . import preflight, runtimes
from .dtypes import ARENA_ALIGNMENT as ALIGN  # also the bisection granularity
from .dtypes import align
from .flatbuffer_io import derived, read_only
from .graph import build_graph

_RUNTIME: list = []  # tflite_micro.runtime (None when not installed), once imported


def _micro():
    """``tflite_micro.runtime``, imported on first use (a run that never builds a TFLM
    interpreter, e.g. ``--no-verify``, does not pay for importing it); None when absent."""
    if not _RUNTIME:
        try:
            from tflite_micro import runtime
        except ImportError:  # pragma: no cover - exercised only where tflite-micro is absent
            runtime = None
        _RUNTIME.append(runtime)
    return _RUNTIME[0]

T = TypeVar("T")

_ALLOCATION = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")
# TFLM's ways of saying the arena is too small: "Failed to … Requested: …, missing: N"
# (tail, temp, head, resize) and the greedy planner's "Too many buffers (max is N)", whose
# buffer table lives in whatever arena is left.
_TOO_SMALL = re.compile(r"missing: \d+|Too many buffers \(max is \d+\)|is too small")


class TflmError(RuntimeError):
    """TFLM refused or failed; the message carries TFLM's own log lines."""


class ArenaTooSmall(TflmError):
    """The arena cannot hold the model (TFLM logged an allocation failure, ``_TOO_SMALL``)."""


class TflmTimeout(TflmError, runtimes.RuntimeTimeout):
    """TFLM did not finish within ``runtimes.run_timeout()`` (its child was killed): what
    catches ``TflmError`` reports TFLM as not run, and ``RuntimeTimeout`` says why."""


@dataclass(frozen=True)
class TflmArena:
    """``print_allocations``: total = head (planned buffers) + tail (persistent data)."""

    total: int
    head: int
    tail: int


def available() -> bool:
    """True when ``tflite_micro`` is importable."""
    return _micro() is not None


@dataclass
class _Log:
    text: str = ""


@contextlib.contextmanager
def captured() -> Iterator[_Log]:
    """Redirect fds 1 and 2 to a temp file for the duration; the text lands in the log.

    For any native library that prints past ``sys.stdout`` (TFLM, the TF converter).
    """
    log = _Log()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as sink:
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield log
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            log.text = sink.read().decode("utf-8", "replace")


def _require() -> None:
    if _micro() is None:
        raise TflmError("tflite-micro is not installed (pip install 'tflite-reorder[tflm]')")


def _fail(exc: Exception, log: str) -> TflmError:
    lines = " | ".join(line.strip() for line in log.splitlines() if line.strip())
    kind = ArenaTooSmall if _TOO_SMALL.search(log) else TflmError
    return kind(f"{exc}: {lines}" if lines else str(exc))


def _guarded(call: Callable[[], T]) -> T:
    """Run a TFLM call with its log captured; a failure becomes a TflmError with that log."""
    with captured() as log:
        try:
            result = call()
        except RuntimeError as exc:
            error = exc
        else:
            error = None
    if error is not None:
        raise _fail(error, log.text) from None
    return result


def _interpreter(model_bytes: bytes, arena_size: int):
    """A TFLM interpreter; it plans and allocates the arena right here."""
    _require()
    preflight.check(model_bytes)
    hazard = preflight.tflm_hazard(model_bytes)
    if hazard:
        raise TflmError(f"not run in TFLM: {hazard}")
    return _guarded(
        lambda: _micro().Interpreter.from_bytes(bytes(model_bytes), arena_size=arena_size)
    )


def default_arena_size(model_bytes: bytes) -> int:
    """Generous arena: every activation unshared plus room for the persistent tail.

    The tail holds per-tensor and per-node structs and per-channel quantisation data,
    all bounded by a few times the model size (worked out once per model inside
    ``flatbuffer_io.shared_reads``).
    """
    return derived(model_bytes, "tflm.default_arena_size", _default_arena_size)


def _default_arena_size(model_bytes: bytes) -> int:
    graph = build_graph(read_only(model_bytes))
    activations = sum(t.arena_bytes for sg in graph.subgraphs for t in sg.tensors)
    structs = 128 * graph.n_tensors + 128 * graph.n_ops
    size = activations + 2 * len(model_bytes) + structs + (64 << 10)
    return align(size)


def _open(model_bytes: bytes, arena_size: int | None):
    """An interpreter with ``arena_size``, or with a default that grows until it fits."""
    if arena_size is not None:
        return _interpreter(model_bytes, arena_size)
    size = default_arena_size(model_bytes)
    for _ in range(4):
        try:
            return _interpreter(model_bytes, size)
        except ArenaTooSmall:
            size *= 4
    return _interpreter(model_bytes, size)


_ISOLATED = False  # set in the child process of an isolated run: TFLM runs right there


def _risk(model_bytes: bytes) -> str:
    """Why TFLM is run on ``model_bytes`` in a child process only ("" when in-process is
    safe as far as known): it may abort on some inputs (``runtimes.abort_risks``), crash
    (``preflight.tflm_risks``), or
    LiteRT refuses to prepare it (``runtimes.litert_refusal``), whose checks TFLM's kernels
    lack (they crash instead). The answer is the reason an abort is reported with.
    Raises ``ModelError`` as ``preflight.check``."""
    if _ISOLATED:
        return ""
    data = bytes(model_bytes)
    preflight.check(data)  # what neither runtime survives: ModelError, as _interpreter
    risks = [*runtimes.abort_risks(data), *preflight.tflm_risks(data)]
    if risks:
        return "; ".join(risks)
    refused = runtimes.litert_refusal(data)
    return f"LiteRT refuses it ({refused}), and TFLM checks less" if refused else ""


def run_tflm(
    model_bytes: bytes, inputs: Sequence[np.ndarray], arena_size: int | None = None
) -> list[np.ndarray]:
    """Run one inference; returns every output of subgraph 0, in order.

    Raises ``TflmError`` (``ArenaTooSmall`` for a too small ``arena_size``, ``TflmTimeout``
    for a run past ``runtimes.run_timeout()``) with TFLM's log, also when tflite-micro is
    not installed; ``ValueError`` for inputs of the wrong type or shape.
    """
    return run_tflm_cases(model_bytes, [inputs], arena_size)[0]


def run_tflm_cases(
    model_bytes: bytes, cases: Sequence[Sequence[np.ndarray]], arena_size: int | None = None
) -> list[list[np.ndarray]]:
    """``run_tflm`` for each case in turn on one interpreter (state, as in SVDF, carries
    from case to case, as it does in LiteRT's ``run_litert_cases``); raises as it does.

    A model TFLM may crash on (``_risk``) or that may loop for ever
    (``runtimes.may_not_end``) runs in a child process, killed at the time bound."""
    why = _risk(model_bytes)
    if why or (not _ISOLATED and runtimes.may_not_end(bytes(model_bytes))):
        return _in_child(model_bytes, cases, {"arena_size": arena_size}, why)
    return _run_here_cases(model_bytes, cases, arena_size)


def _in_child(model_bytes: bytes, cases, options: dict, why: str) -> list[list[np.ndarray]]:
    """``runtimes.run_isolated`` of this module's child; its errors as ``TflmError``."""
    _require()
    try:
        outs, _ = runtimes.run_isolated("tflite_reorder.tflm", model_bytes, cases, options, why)
    except runtimes.RuntimeTimeout as exc:
        raise TflmTimeout(exc.seconds) from None
    except RuntimeError as exc:
        raise TflmError(str(exc)) from None
    return outs


def _isolated_child(tmp: str) -> None:
    """Child side of an isolated ``run_tflm`` or ``measure_arena``
    (``runtimes.run_isolated``)."""
    global _ISOLATED
    _ISOLATED = True

    def run(data: bytes, cases, o: dict) -> tuple[list, list]:
        if o.get("measure"):
            a = measure_arena(data, o["arena_size"])
            return [[np.array([a.total, a.head, a.tail], np.int64)]], []
        return _run_here_cases(data, cases, o["arena_size"]), []
    runtimes.isolated_child_io(tmp, run)


def _run_here(
    model_bytes: bytes, inputs: Sequence[np.ndarray], arena_size: int | None
) -> list[np.ndarray]:
    return _run_here_cases(model_bytes, [inputs], arena_size)[0]


def _run_here_cases(
    model_bytes: bytes, cases: Sequence[Sequence[np.ndarray]], arena_size: int | None
) -> list[list[np.ndarray]]:
    outputs = read_only(model_bytes).subgraphs[0].outputs
    n_out = 0 if outputs is None else len(outputs)
    interp = _open(model_bytes, arena_size)

    def invoke(inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        for i, x in enumerate(inputs):
            want = interp.get_input_details(i)
            x = np.asarray(x)
            if x.dtype != want["dtype"] or tuple(x.shape) != tuple(want["shape"]):
                raise ValueError(
                    f"input {i}: got {x.dtype}{list(x.shape)}, model wants "
                    f"{np.dtype(want['dtype'])}{[int(d) for d in want['shape']]}"
                )
            interp.set_input(x, i)
        interp.invoke()
        return [np.array(interp.get_output(i), copy=True) for i in range(n_out)]

    return [_guarded(lambda x=x: invoke(x)) for x in cases]


def _parse(text: str) -> TflmArena:
    found = {k: int(v) for k, v in _ALLOCATION.findall(text)}
    if set(found) != {"total", "head", "tail"}:
        raise TflmError(f"could not parse TFLM's print_allocations output: {text[:200]!r}")
    return TflmArena(found["total"], found["head"], found["tail"])


def measure_arena(model_bytes: bytes, arena_size: int | None = None) -> TflmArena:
    """TFLM's own account of the arena after planning the model.

    Raises ``TflmError`` as ``run_tflm`` does (a model TFLM may crash on is measured in
    a child process, as ``run_tflm`` runs it; planning alone runs no loop, so a model
    with a WHILE is measured here).
    """
    why = _risk(model_bytes)
    if why:
        outs = _in_child(model_bytes, [[]], {"arena_size": arena_size, "measure": True}, why)
        total, head, tail = (int(v) for v in outs[0][0])
        return TflmArena(total, head, tail)
    interp = _open(model_bytes, arena_size)
    with captured() as log:
        interp.print_allocations()
    return _parse(log.text)


def _probe_child() -> None:
    """Child side of :class:`_Prober`: model bytes from the file in argv, one arena size
    per stdin line, ``1`` (fits) or ``0`` (does not) per stdout line."""
    data = open(sys.argv[1], "rb").read()  # noqa: SIM115 (read once, process ends soon)
    for line in sys.stdin:
        try:
            _interpreter(data, int(line))
        except TflmError:
            answer = "0"
        else:
            answer = "1"
        sys.stdout.write(answer + "\n")
        sys.stdout.flush()


class _Prober:
    """Try arena sizes in a child process.

    TFLM's Python interpreter crashes (SIGSEGV) at some sizes well below what a model needs
    (seen here: a 3-op model needing 3,648 B crashes at 0-256 and 1,700-1,776 B and fails
    cleanly in between), so no size below a known-good one is tried in this process. A
    crash counts as "does not fit" and the child is restarted.
    """

    def __init__(self, model_bytes: bytes) -> None:
        self._file = tempfile.NamedTemporaryFile(suffix=".tflite")  # noqa: SIM115
        self._file.write(bytes(model_bytes))
        self._file.flush()
        self._child = None
        self.crashes = 0

    def _start(self):
        import subprocess

        code = "from tflite_reorder.tflm import _probe_child; _probe_child()"
        return subprocess.Popen([sys.executable, "-c", code, self._file.name],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)

    def fits(self, size: int) -> bool:
        self._child = self._child or self._start()
        try:
            self._child.stdin.write(f"{size}\n")
            self._child.stdin.flush()
            answer = self._child.stdout.readline().strip()
        except (BrokenPipeError, OSError):
            answer = ""
        if answer in ("0", "1"):
            return answer == "1"
        self.crashes += 1
        self._child.wait()
        self._child = None
        return False

    def close(self) -> None:
        if self._child is not None:
            self._child.stdin.close()
            self._child.wait()
        self._file.close()


def min_arena_size(model_bytes: bytes) -> int:
    """Smallest ``arena_size`` (a multiple of 16) with which TFLM accepts the model.

    Bisection between a size that fails and one that works, started around TFLM's own
    total, which usually is the answer. Below a size known to work, every TFLM failure
    (any allocation message, or a crash of the probing child) means "too small": the
    model itself is the same at every size. Raises ``TflmError`` when TFLM cannot run the
    model at any size.
    """
    total = measure_arena(model_bytes).total  # raises when TFLM cannot run the model
    prober = _Prober(model_bytes)
    try:
        hi = align(total)
        while not prober.fits(hi):
            hi *= 2
            if hi > (1 << 34):
                raise TflmError(f"TFLM ran the model with a {total} B arena but accepts "
                                f"no arena size at or above it")
        lo = max(hi - 1024, 0)
        if prober.fits(lo):
            lo = 0
        while hi - lo > ALIGN:  # invariant: lo fails (or is 0), hi fits
            mid = (lo + hi) // 2 // ALIGN * ALIGN
            if prober.fits(mid):
                hi = mid
            else:
                lo = mid
    finally:
        prober.close()
    return hi


# Least-squares fit of TFLM's persistent tail (host build, reference kernels) over the models
# in models/: per tensor (TfLiteEvalTensor and friends), per operator (node, registration,
# op data), per output channel of a convolution (per-channel multipliers and shifts). Within
# 10% on every shipped model; MCU builds with 32-bit pointers need less.
_TAIL_FIT = {"tensor": 60.5, "op": 70.7, "conv_channel": 8.26, "fixed": 588.0}
# The same fit (relative error) on the target: TFLM for Cortex-M4 with CMSIS-NN, measured
# under QEMU on every model in models/ (docs/target.md); within 32% on each, most within 15%.
_TAIL_FIT_32 = {"tensor": 44.4, "op": 9.65, "conv_channel": 9.13, "fixed": 147.1}


def estimate_tail_32(model_bytes: bytes) -> int:
    """Estimated tail on a 32-bit Cortex-M build, for when the target cannot run here."""
    return estimate_tail(model_bytes, _TAIL_FIT_32)


def estimate_tail(model_bytes: bytes, fit: dict[str, float] = _TAIL_FIT) -> int:
    """Estimated persistent tail for when TFLM is not installed (labelled as an estimate)."""
    return graph_tail(build_graph(read_only(model_bytes)), fit)


def graph_tail(graph, fit: dict[str, float] = _TAIL_FIT) -> int:
    """``estimate_tail`` of a built ``ModelGraph`` (no parsing: the rewrite search asks
    for it once per candidate it schedules)."""
    channels = sum(
        sg.tensors[op.outputs[0]].shape[-1] if sg.tensors[op.outputs[0]].shape else 0
        for sg in graph.subgraphs for op in sg.ops
        if op.opcode in TAIL_CHANNEL_OPS
    )
    return tail_from_counts(graph.n_tensors, graph.n_ops, channels, fit)


# Ops whose TFLM op data holds per-output-channel arrays (int8 multipliers and shifts).
TAIL_CHANNEL_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED",
                              "TRANSPOSE_CONV"})


def tail_from_counts(tensors: int, ops: int, conv_channels: int,
                     fit: dict[str, float] = _TAIL_FIT) -> int:
    """The tail fit (host by default) for a model of so many tensors, ops and channels."""
    est = (fit["tensor"] * tensors + fit["op"] * ops
           + fit["conv_channel"] * conv_channels + fit["fixed"])
    return int(est + 15) // 16 * 16
