"""LiteRT, the reference runtime, and the inputs every check runs models on; one home.

LiteRT runs with its reference kernels (``OpResolverType.BUILTIN_REF``), which TFLM
matches bit for bit; TFLM itself lives in ``tflm`` (it needs its log captured and an arena
sized). Two input generators, for two purposes:

- ``random_inputs``: the inputs of subgraph 0 as the flatbuffer declares them (what LiteRT
  and TFLM allocate; no runtime needed, so models only TFLM runs get them too); floats
  standard normal, integers over the int8 range. Verification and rewrite error
  measurement use it.
- ``structured_inputs``: read from the flatbuffer alone (no runtime needed); quantised
  inputs span their whole range, floats uniform in [-1, 1), integers wider than 16 bits
  small non-negative numbers (0..3), since they tend to be counts or indices (a WHILE loop
  bound, a gather index). The TFLM tests use it.
- ``pattern_inputs``: named non-random inputs (constant images, ramps, a checkerboard);
  with ``random_inputs``, what rewrite error measurement runs on.

Every runtime invocation is bounded in time (``run_timeout``, the user's
``--verify-timeout``; docs/verification.md): a model that may not terminate (a WHILE loop,
``may_not_end``) or may crash runs in a child process, which is killed at the bound and
the run raises ``RuntimeTimeout``; every other model runs in this process, whose
operators all end (a loop-free graph does a fixed amount of work).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import preflight
from .dtypes import numpy_type, type_name
from .flatbuffer_io import ModelError, read_only
from .graph import opcode_name
from .tensors import text

# Bytes of one set of model inputs that verification and the rewrites' error measurement
# generate (they run up to 28 sets): a corrupt stored shape can ask for gigabytes.
MAX_INPUT_BYTES = 256 << 20
# Seconds one runtime invocation (one model on its cases, in LiteRT or TFLM) may take unless
# the caller says otherwise (``run_budget``; the CLI's --verify-timeout): generous for the
# reference kernels on a large model, short next to a loop that never ends.
RUN_TIMEOUT = 60.0
_TIMEOUT: ContextVar[float] = ContextVar("run_timeout", default=RUN_TIMEOUT)


class RuntimeTimeout(RuntimeError):
    """A runtime did not finish within ``run_timeout()`` seconds and was killed: the check
    it served did not run (it is never reported as passed)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"timed out after {seconds:g} s (--verify-timeout)")
        self.seconds = seconds


def run_timeout() -> float:
    """The seconds one runtime invocation may take here (``RUN_TIMEOUT`` by default)."""
    return _TIMEOUT.get()


@contextlib.contextmanager
def run_budget(seconds: float | None) -> Iterator[None]:
    """Inside the block each runtime invocation may take ``seconds`` (None: unchanged).

    Raises ``ValueError`` unless ``seconds`` is a finite positive number."""
    if seconds is None:
        yield
        return
    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"verify_timeout must be a finite number of seconds > 0, "
                         f"not {seconds!r}")
    token = _TIMEOUT.set(float(seconds))
    try:
        yield
    finally:
        _TIMEOUT.reset(token)


@lru_cache(maxsize=4)
def may_not_end(data: bytes) -> str:
    """Why a run of ``data`` may never end ("" when every operator does a fixed amount of
    work): a WHILE loop, whose trip count is data (a junk constant can make it 10^9)."""
    model = read_only(data)
    for s, sg in enumerate(model.subgraphs or []):
        for i, op in enumerate(sg.operators or []):
            if opcode_name(model, op.opcodeIndex) == "WHILE":
                return f"subgraph {s} operator {i} is a WHILE loop, which may not end"
    return ""


def litert(data: bytes, preserve: bool = False):
    """An allocated LiteRT interpreter on the reference kernels.

    ``preserve`` keeps every intermediate tensor readable after ``invoke``. Raises what
    LiteRT raises (``ValueError``/``RuntimeError``) for a model it cannot run, and
    ``ModelError`` for one it would crash on (``preflight.check_litert``).
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    preflight.check_litert(data)
    interp = Interpreter(
        model_content=data,
        experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
        experimental_preserve_all_tensors=preserve,
    )
    interp.allocate_tensors()
    return interp


def run_litert_cases(
    data: bytes, cases: Sequence[Sequence[np.ndarray]], probes: tuple[int, ...] = ()
) -> tuple[list[list[np.ndarray]], list[list[np.ndarray]]]:
    """Outputs (and the ``probes`` tensors of subgraph 0) for every case; one interpreter.

    Raises what LiteRT raises for a model or inputs it cannot run; a model that may abort
    on some inputs (``preflight.abort_risks``) or loop for ever (``may_not_end``) runs in a
    child process: an abort there is a RuntimeError, a run past ``run_timeout()`` a
    ``RuntimeTimeout``.
    """
    if abort_risks(bytes(data)) or may_not_end(bytes(data)):
        return run_isolated("tflite_reorder.runtimes", data, cases, {"probes": list(probes)})
    return _litert_cases(data, cases, probes)


@lru_cache(maxsize=4)
def abort_risks(data: bytes) -> tuple[str, ...]:
    """``preflight.abort_risks``, remembered for the last few models (read once each)."""
    return tuple(preflight.abort_risks(data))


@lru_cache(maxsize=4)
def litert_refusal(data: bytes) -> str:
    """Why LiteRT's reference kernels refuse to prepare ``data`` ("" when they prepare it).

    LiteRT checks operands in ``Prepare`` that TFLM's kernels take on trust (a CONV_2D
    whose data input is 1-D: LiteRT refuses it, TFLM divides by zero in ``Invoke``), so
    ``tflm`` runs a model LiteRT refuses in a child process."""
    try:
        litert(data)
    except Exception as exc:  # noqa: BLE001 - any refusal (ModelError: the preflight's)
        return " ".join(f"{exc}".split())[:300] or type(exc).__name__
    return ""


def run_isolated(
    module: str, data: bytes, cases: Sequence[Sequence[np.ndarray]], options: dict,
    why: str = "",
) -> tuple[list[list[np.ndarray]], list[list[np.ndarray]]]:
    """``module``'s ``_isolated_child`` on ``cases`` in a child process: (outputs, probes).

    Model, inputs and results go through a temporary directory (removed on every path).
    A child still running after ``run_timeout()`` seconds is killed and ``RuntimeTimeout``
    raised; one killed by a signal raises RuntimeError naming the signal and why the
    model may abort (``why``, or ``abort_risks``); a child that failed raises
    RuntimeError with its last line.
    """
    timeout = run_timeout()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "model.tflite").write_bytes(bytes(data))
        np.savez(d / "inputs.npz", **{f"c{k}_{i}": np.asarray(x) for k, case in
                                      enumerate(cases) for i, x in enumerate(case)})
        (d / "options.json").write_text(json.dumps({**options, "cases": len(cases)}))
        code = f"import sys; from {module} import _isolated_child; _isolated_child(sys.argv[1])"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        try:
            proc = subprocess.run([sys.executable, "-c", code, tmp], capture_output=True,
                                  text=True, env=env, timeout=timeout)
        except subprocess.TimeoutExpired:  # run() has killed and reaped the child
            raise RuntimeTimeout(timeout) from None
        if proc.returncode < 0:
            name = signal.Signals(-proc.returncode).name
            raise RuntimeError(f"the runtime was killed by {name}: "
                               f"{why or '; '.join(abort_risks(bytes(data)))}")
        if proc.returncode != 0:
            lines = proc.stderr.strip().splitlines() or ["failed"]
            raise RuntimeError(lines[-1])
        with np.load(d / "outputs.npz") as npz:
            def read(prefix: str, k: int) -> list[np.ndarray]:
                keys = sorted((n for n in npz.files if n.startswith(f"{prefix}{k}_")),
                              key=lambda n: int(n.split("_")[1]))
                return [npz[n] for n in keys]
            n = len(cases)
            return [read("o", k) for k in range(n)], [read("p", k) for k in range(n)]


def isolated_child_io(
    tmp: str, run: Callable[[bytes, list[list[np.ndarray]], dict], tuple[list, list]]
) -> None:
    """Child side of ``run_isolated``: read, ``run(data, cases, options)``, write; an
    exception becomes one line on stderr and exit 1."""
    d = Path(tmp)
    data = (d / "model.tflite").read_bytes()
    options = json.loads((d / "options.json").read_text())
    with np.load(d / "inputs.npz") as npz:
        cases = [[npz[n] for n in sorted((n for n in npz.files if n.startswith(f"c{k}_")),
                                         key=lambda n: int(n.split("_")[1]))]
                 for k in range(options["cases"])]
    try:
        outs, probes = run(data, cases, options)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises
        sys.stderr.write(" ".join(f"{exc}".split()) + "\n")
        sys.exit(1)
    arrays = {f"o{k}_{j}": x for k, case in enumerate(outs) for j, x in enumerate(case)}
    arrays.update({f"p{k}_{j}": x for k, case in enumerate(probes) for j, x in enumerate(case)})
    np.savez(d / "outputs.npz", **arrays)


def _isolated_child(tmp: str) -> None:
    isolated_child_io(tmp, lambda data, cases, o: _litert_cases(data, cases,
                                                                tuple(o["probes"])))


def _litert_cases(
    data: bytes, cases: Sequence[Sequence[np.ndarray]], probes: tuple[int, ...] = ()
) -> tuple[list[list[np.ndarray]], list[list[np.ndarray]]]:
    interp = litert(data, preserve=bool(probes))
    ins, outs = interp.get_input_details(), interp.get_output_details()
    results, probed = [], []
    for case in cases:
        for d, x in zip(ins, case, strict=True):
            interp.set_tensor(d["index"], x)
        interp.invoke()
        results.append([interp.get_tensor(d["index"]).copy() for d in outs])
        probed.append([interp.get_tensor(t).copy() for t in probes])
    return results, probed


def run_litert(data: bytes, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Every output of subgraph 0 for one set of inputs (a fresh interpreter).

    Raises what LiteRT raises for a model or inputs it cannot run.
    """
    results, _ = run_litert_cases(data, [inputs])
    return results[0]


def input_details(data: bytes) -> list[dict]:
    """Per input of subgraph 0, from the flatbuffer: ``name``, ``shape``, ``dtype`` and
    ``quantization`` (scale, zero point; (0.0, 0) when none), as LiteRT's
    ``get_input_details`` gives them. Raises ``ValueError`` for a type numpy lacks and
    ``ModelError`` for inputs past ``MAX_INPUT_BYTES`` (every input generator asks here)."""
    sg = read_only(data).subgraphs[0]
    out, total = [], 0
    for t in sg.inputs if sg.inputs is not None else ():
        tensor = sg.tensors[int(t)]
        try:
            dtype = numpy_type(tensor.type)
        except KeyError:
            raise ValueError(f"unsupported input type {type_name(tensor.type)}") from None
        q = tensor.quantization
        scale = q.scale if q is not None and q.scale is not None else ()
        zps = q.zeroPoint if q is not None and q.zeroPoint is not None else ()
        out.append({"name": text(tensor.name),
                    "shape": tuple(int(d) for d in (tensor.shape if tensor.shape is not None
                                                    else ())),
                    "dtype": dtype, "quantization": (float(scale[0]), int(zps[0]) if len(
                        zps) else 0) if len(scale) == 1 else (0.0, 0)})
        total += np.dtype(dtype).itemsize * max(0, math.prod(out[-1]["shape"]))
    if total > MAX_INPUT_BYTES:
        raise ModelError(f"the model's inputs take {total} bytes per run, more than the "
                         f"{MAX_INPUT_BYTES} the runtimes are run with (no verification or "
                         f"error measurement: --no-verify, without --rewrite)")
    return out


def random_inputs(data: bytes, cases: int, seed: int = 0) -> list[list[np.ndarray]]:
    """``cases`` sets of inputs that exercise the whole value range of each input's type.

    Raises ``ValueError`` for an input type it cannot generate (strings, resources).
    """
    details = input_details(data)
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


def structured_inputs(data: bytes, seed: int = 0) -> list[np.ndarray]:
    """Values for every input of subgraph 0, in the model's dtypes and shapes (see above).

    Raises ``TypeError`` for an input type numpy has no dtype for (strings, resources),
    ``ModelError`` as ``input_details`` for inputs too large.
    """
    with contextlib.suppress(ValueError):  # the type: raised below as TypeError
        input_details(data)
    model = read_only(data)
    sg = model.subgraphs[0]
    rng = np.random.default_rng(seed)
    out = []
    for t in sg.inputs if sg.inputs is not None else ():
        tensor = sg.tensors[int(t)]
        shape = tuple(int(d) for d in (tensor.shape if tensor.shape is not None else ()))
        dtype = np.dtype(type_name(tensor.type).lower().replace("bool", "bool_"))
        if dtype.kind == "f":
            out.append(rng.uniform(-1, 1, shape).astype(dtype))
        elif dtype.kind == "b":
            out.append(rng.integers(0, 2, shape).astype(bool))
        elif dtype.itemsize <= 2:
            info = np.iinfo(dtype)
            out.append(rng.integers(info.min, info.max, shape, endpoint=True, dtype=dtype))
        else:
            out.append(rng.integers(0, 4, shape, dtype=dtype))
    return out


def input_specs(data: bytes) -> list[tuple[tuple[int, ...], np.dtype, tuple[float, int] | None]]:
    """Per input of subgraph 0: shape, dtype and (scale, zero point) or None."""
    details = input_details(data)
    specs = []
    for d in details:
        scale, zp = d["quantization"]
        specs.append((tuple(int(x) for x in d["shape"]), np.dtype(d["dtype"]),
                      (float(scale), int(zp)) if scale else None))
    return specs


def _ramp(shape: tuple[int, ...], axis: int, lo: float, hi: float) -> np.ndarray:
    n = shape[axis] if len(shape) > axis else 1
    line = np.linspace(lo, hi, max(n, 1))
    view = [1] * len(shape)
    if len(shape) > axis:
        view[axis] = n
    return np.broadcast_to(line.reshape(view), shape)


def pattern_inputs(data: bytes) -> list[tuple[str, list[np.ndarray]]]:
    """Named non-random inputs: constants (min, max, zero, middle), ramps along H and W
    (rising and falling), a min/max checkerboard. Integer inputs span their int8 range,
    float inputs [-1, 1]."""
    specs = input_specs(data)
    if any(dt.kind not in "iuf" for _, dt, _ in specs):
        return []

    def family(make) -> list[np.ndarray]:
        out = []
        for shape, dtype, _q in specs:
            if dtype.kind == "f":
                lo, hi = -1.0, 1.0
            else:
                info = np.iinfo(dtype)
                lo, hi = float(max(info.min, -128)), float(min(info.max, 127))
            out.append(np.round(make(shape, lo, hi)).astype(dtype) if dtype.kind != "f"
                       else make(shape, lo, hi).astype(dtype))
        return out

    def checker(shape, lo, hi):
        idx = np.indices(shape).sum(axis=0) % 2
        return np.where(idx == 1, hi, lo)

    return [
        ("constant", family(lambda sh, lo, hi: np.full(sh, lo))),
        ("constant", family(lambda sh, lo, hi: np.full(sh, hi))),
        ("constant", family(lambda sh, lo, hi: np.zeros(sh))),
        ("constant", family(lambda sh, lo, hi: np.full(sh, (lo + hi) / 2 + 0.5 * (hi - lo) / 4))),
        ("gradient", family(lambda sh, lo, hi: _ramp(sh, 1, lo, hi))),
        ("gradient", family(lambda sh, lo, hi: _ramp(sh, 2, hi, lo))),
        ("gradient", family(lambda sh, lo, hi: _ramp(sh, 1, lo, hi) / 2
                            + _ramp(sh, 2, lo, hi) / 2)),
        ("extremes", family(checker)),
    ]
