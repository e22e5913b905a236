"""The target: TFLM built for Cortex-M4 with CMSIS-NN, run under QEMU.

Every test here runs the real firmware build under ``qemu-arm``. Without the toolchain or
QEMU the tests skip locally, but fail under CI (``CI=true``): CI must exercise the target.
One build (cached, file-locked) serves every pytest-xdist worker.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tflite_reorder import target, tflm
from tflite_reorder.arena import tflm_blocks
from tflite_reorder.flatbuffer_io import load_model
from tflite_reorder.graph import build_graph
from tflite_reorder.memory import simulate
from tflite_reorder.target import firmware, planning, scratch

ROOT = Path(__file__).resolve().parent.parent
NETWORKS = sorted(p for p in (ROOT / "models").glob("*.tflite")
                  if not p.stem.startswith("inplace_"))
INPLACE = sorted((ROOT / "models").glob("inplace_*.tflite"))
ARCH, KERNELS = "cortex-m4", "cmsis_nn"


@pytest.fixture(scope="session")
def runner() -> target.Build:
    try:
        return target.build(ARCH, KERNELS)
    except target.TargetError as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"the target must run in CI: {exc}")
        pytest.skip(f"target not available: {exc}")


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_runner_registers_every_builtin_of_the_tree(runner: target.Build) -> None:
    adders = firmware.builtin_adders(runner.tree)
    assert {"AddConv2D", "AddDepthwiseConv2D", "AddWhile", "AddMean"} <= set(adders)
    assert not {"AddCustom", "AddBuiltin", "AddDelay", "AddEthosU"} & set(adders)
    header = (runner.tree / "tensorflow/lite/micro/micro_mutable_op_resolver.h").read_text()
    assert len(adders) == header.count("AddBuiltin(BuiltinOperator_")


def test_optimized_kernels_replace_reference_ones(runner: target.Build) -> None:
    core, kernels, third = firmware.library_sources(runner.tree, "cmsis_nn")
    names = {str(k) for k in kernels}
    assert "tensorflow/lite/micro/kernels/cmsis_nn/conv.cc" in names
    assert "tensorflow/lite/micro/kernels/conv.cc" not in names
    assert any(str(t).endswith("arm_convolve_s8.c") for t in third)
    assert not any(p.name.endswith("_test.cc") for p in core + kernels)


def planned_buffers(data: bytes) -> tuple[list[tuple[int, int, int]], object]:
    """What TFLM should hand its planner for the model as stored: (size, first, last) in
    ``AddBuffer`` order (tensors, then scratch), and the arena use with scratch."""
    loaded = load_model(data)
    graph = build_graph(loaded.model)
    orders = graph.stored_orders()
    reqs = scratch.requests(loaded.model, graph, ARCH, KERNELS)
    use = planning.with_scratch(simulate(graph, orders, inplace=False), reqs, orders)
    buffers, _ = tflm_blocks(use)
    return [(b.size, b.first, b.last) for b in buffers], use


@pytest.mark.parametrize("path", NETWORKS, ids=lambda p: p.stem)
def test_target_matches_host_and_the_scratch_model(runner: target.Build, path: Path) -> None:
    """Host TFLM and the target agree on outputs; the target's planner input is ours.

    The runner logs every buffer TFLM hands its planner. Tensors and scratch requests
    (sizes from CMSIS-NN's ``*_get_buffer_size`` rules, lifetimes from TFLM's marking)
    must be exactly the ones we model, and replaying TFLM's greedy over them must give
    the head the target reports.
    """
    data = path.read_bytes()
    inputs = tflm.random_inputs(data, seed=0)
    got = target.invoke(data, inputs, ARCH, KERNELS)
    for want, out in zip(tflm.run_tflm(data, inputs), got.outputs, strict=True):
        assert same_bits(want, out), f"{path.name}: target output differs from host"
    expected, use = planned_buffers(data)
    logged = [(b.size, b.first, b.last) for b in got.buffers]
    assert logged == expected, f"{path.name}: TFLM's buffers differ from our model"
    assert planning.target_head(use, {}) == got.arena.head
    assert got.arena.total == got.arena.head + got.arena.tail
