"""Measuring and running a model on the target: TFLM for a Cortex-M under QEMU.

``measure`` answers what firmware needs to know (head, tail, total and the allocation
breakdown of TFLM built for ``arch`` with ``kernels``), ``run`` gives every output of one
inference, and ``invoke`` both plus the plan TFLM made: every buffer its greedy planner was
handed (tensors and the kernels' scratch buffers, with lifetimes and offline offsets) and
the offset it chose for each.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..dtypes import numpy_type
from ..flatbuffer_io import load_model
from .firmware import Build, build
from .qemu import run_elf
from .tree import TargetError

DEFAULT_ARCH = "cortex-m4"
DEFAULT_KERNELS = "cmsis_nn"
_EXIT = {2: "bad input to the runner", 3: "TFLM refused the model", 4: "arena too small"}


class TargetRunError(TargetError):
    """The runner ran but TFLM failed (its log lines are in the message)."""


@dataclass(frozen=True)
class PlannedBuffer:
    """One ``AddBuffer`` call TFLM made to its greedy planner, and the offset it got."""

    size: int
    first: int
    last: int
    offline: int  # -1: planned online
    offset: int


@dataclass(frozen=True)
class Allocation:
    """One RecordingMicroAllocator category: requested and used bytes, count."""

    requested: int
    used: int
    count: int


@dataclass(frozen=True)
class TargetArena:
    """The target's account of the arena (``total`` = ``head`` + ``tail``)."""

    arch: str
    kernels: str
    head: int
    tail: int
    total: int
    breakdown: dict[str, Allocation]


@dataclass(frozen=True)
class TargetRun:
    arena: TargetArena
    outputs: list[np.ndarray]
    buffers: tuple[PlannedBuffer, ...]
    seconds: float  # wall time of the QEMU run


def _arena_size(model_bytes: bytes) -> int:
    from ..tflm import default_arena_size

    return 4 * default_arena_size(model_bytes)


def _parse(lines: list[str]) -> dict[str, list[list[str]]]:
    found: dict[str, list[list[str]]] = {}
    for line in lines:
        if line.startswith("@ "):
            key, *rest = line[2:].split()
            found.setdefault(key, []).append(rest)
    return found


def _error(code: int, stdout: str, stderr: str) -> TargetRunError:
    said = [" ".join(r) for r in _parse(stdout.splitlines()).get("error", [])]
    log = " | ".join(x.strip() for x in (stderr + "\n" + "\n".join(said)).splitlines()
                     if x.strip() and not x.startswith("@ "))
    what = _EXIT.get(code, f"the runner exited with {code}")
    return TargetRunError(f"{what}: {log[-2000:]}" if log else what)


def _outputs(model_bytes: bytes, folder: Path, n: int) -> list[np.ndarray]:
    sg = load_model(bytes(model_bytes)).model.subgraphs[0]
    result = []
    for i, t in enumerate(list(sg.outputs)[:n]):
        tensor = sg.tensors[int(t)]
        shape = tuple(int(d) for d in (tensor.shape if tensor.shape is not None else ()))
        raw = (folder / f"out{i}.bin").read_bytes()
        result.append(np.frombuffer(raw, dtype=numpy_type(tensor.type)).reshape(shape).copy())
    return result


def invoke(
    model_bytes: bytes,
    inputs: Sequence[np.ndarray] | None = None,
    arch: str = DEFAULT_ARCH,
    kernels: str = DEFAULT_KERNELS,
    tflm_src: str | os.PathLike[str] | None = None,
    arena_size: int | None = None,
) -> TargetRun:
    """Plan (and, given inputs, run) the model on the target; raises TargetError."""
    runner: Build = build(arch, kernels, tflm_src)
    size = arena_size or _arena_size(model_bytes)
    with tempfile.TemporaryDirectory(prefix="tflr-") as tmp:
        folder = Path(tmp)
        (folder / "m.tfl").write_bytes(bytes(model_bytes))
        names = []
        for i, x in enumerate(inputs or ()):
            name = f"i{i}.bin"
            (folder / name).write_bytes(np.ascontiguousarray(x).tobytes())
            names.append(name)
        started = time.monotonic()
        done = run_elf(runner.elf, arch, ["m.tfl", str(size), *names], folder)
        seconds = time.monotonic() - started
        if done.returncode != 0 or "@ done" not in done.stdout:
            raise _error(done.returncode, done.stdout, done.stderr)
        found = _parse(done.stdout.splitlines())
        outputs = _outputs(model_bytes, folder, len(found.get("output", []))) if names else []
    value = {k: int(found[k][0][0]) for k in ("head", "tail", "total")}
    breakdown = {r[0]: Allocation(*map(int, r[1:4])) for r in found.get("breakdown", [])}
    offsets = {int(i): int(o) for i, o in found.get("offset", [])}
    buffers = tuple(
        PlannedBuffer(*map(int, b), offset=offsets.get(i, -1))
        for i, b in enumerate(found.get("buffer", []))
    )
    arena = TargetArena(arch, kernels, value["head"], value["tail"], value["total"], breakdown)
    return TargetRun(arena, outputs, buffers, seconds)


def measure(model_bytes: bytes, arch: str = DEFAULT_ARCH, kernels: str = DEFAULT_KERNELS,
            tflm_src: str | os.PathLike[str] | None = None) -> TargetArena:
    """Head, tail, total and breakdown of the model's arena on the target build."""
    return invoke(model_bytes, None, arch, kernels, tflm_src).arena


def run(model_bytes: bytes, inputs: Sequence[np.ndarray], arch: str = DEFAULT_ARCH,
        kernels: str = DEFAULT_KERNELS,
        tflm_src: str | os.PathLike[str] | None = None) -> list[np.ndarray]:
    """Every output of subgraph 0 after one inference on the target build."""
    if not inputs:
        raise ValueError("run needs the model's inputs (runtimes.structured_inputs makes some)")
    return invoke(model_bytes, inputs, arch, kernels, tflm_src).outputs
