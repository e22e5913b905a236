"""The optimizer's target stage: scratch for scheduling and planning, verification on QEMU.

``optimize(..., target=Target("cortex-m4"))`` asks three things of this module:
``scratch_for`` (the kernels' scratch requests, so that the order and the plan account for
them), ``plan_use`` (the arena use the planner sees: tensors plus scratch buffers), and
``verify`` (run the input and the written model on the target build: outputs bit-identical,
the measured head equal to the plan's). When the target cannot run here (no toolchain or
QEMU), ``verify`` says so and the tail is an estimate for a 32-bit Cortex-M, labelled as such.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ..memory import ArenaUse
from .execute import DEFAULT_KERNELS, invoke
from .firmware import ARCHS, KERNEL_SETS
from .planning import Requests, with_scratch
from .scratch import HOST_ARCH, UnknownScratch, requests
from .tree import TargetError

SEEDS = (0, 1)  # random input sets the written model is checked on


@dataclass(frozen=True)
class Target:
    """Which build to plan for and verify on."""

    arch: str
    kernels: str = DEFAULT_KERNELS
    tflm_src: str | os.PathLike[str] | None = None

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"unknown target architecture {self.arch!r} "
                             f"(one of {', '.join(ARCHS)})")
        if self.kernels not in KERNEL_SETS:
            raise ValueError(f"unknown kernel set {self.kernels!r} "
                             f"(one of {', '.join(KERNEL_SETS)})")


@dataclass
class TargetReport:
    """``--json``'s ``target``: the target's own figures for the written model."""

    arch: str
    kernels: str
    head: int | None = None  # measured on the target (None: the target did not run here)
    tail: int | None = None
    total: int | None = None
    verified: bool | None = None  # outputs bit-identical to the input's on the same build
    planned_head: int | None = None  # the plan's head, scratch included
    head_matches_plan: bool | None = None
    tail_source: str = ""
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def scratch_for(model_t, graph, target: Target) -> tuple[Requests, str | None]:
    """The kernels' scratch requests per op, or none and a warning when not modelled."""
    try:
        return requests(model_t, graph, target.arch, target.kernels), None
    except UnknownScratch as exc:
        return {}, f"{exc}; planned without kernel scratch (the target may need more)"


def host_scratch_for(model_t, graph) -> tuple[Requests, str | None]:
    """``scratch_for`` the host's tflite-micro (reference kernels), which verification runs.

    Its kernels' scratch buffers are planned online around an offline plan too: a plan
    that left them out could need more than it says (SVDF's, for instance).
    """
    try:
        return requests(model_t, graph, HOST_ARCH, "reference"), None
    except UnknownScratch as exc:
        return {}, (f"{exc}; planned without kernel scratch (TFLM's head may exceed the "
                    f"plan)")


def op_scratch(reqs: Requests) -> dict[tuple[int, int], int]:
    """Scratch bytes per (subgraph, op): transient extra bytes for the scheduler."""
    return {k: sum(v) for k, v in reqs.items()}


def plan_use(use: ArenaUse, reqs: Requests, orders: Sequence[Sequence[int]]) -> ArenaUse:
    return with_scratch(use, reqs, orders) if reqs else use


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(
        x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
        for x, y in zip(a, b, strict=True))


def verify(reference: bytes, written: bytes, target: Target,
           planned_head: int | None) -> TargetReport:
    """Run both models on the target: outputs bit-identical, head as planned.

    ``reference`` is what the written model must compute (the input, made safe when it
    had hazards). A target that cannot run here is reported, not raised.
    """
    from ..runtimes import structured_inputs
    from ..tflm import estimate_tail_32

    rep = TargetReport(target.arch, target.kernels, planned_head=planned_head)
    try:
        same = True
        arena = None
        for seed in SEEDS:
            inputs = structured_inputs(written, seed)
            want = invoke(reference, inputs, target.arch, target.kernels, target.tflm_src)
            got = invoke(written, inputs, target.arch, target.kernels, target.tflm_src)
            same = same and _same(want.outputs, got.outputs)
            arena = got.arena
    except TargetError as exc:
        rep.error = str(exc)
        rep.tail = estimate_tail_32(written)
        rep.tail_source = f"estimate for a 32-bit Cortex-M (the target did not run: {exc})"
        return rep
    rep.head, rep.tail, rep.total = arena.head, arena.tail, arena.total
    rep.verified = same
    rep.head_matches_plan = None if planned_head is None else arena.head == planned_head
    rep.tail_source = f"measured on {target.arch} ({target.kernels}) under QEMU"
    return rep
