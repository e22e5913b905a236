"""The target: TFLM built for Cortex-M4 with CMSIS-NN, run under QEMU.

Every test here runs the real firmware build under ``qemu-arm``. Without the toolchain or
QEMU the tests skip locally, but fail under CI (``CI=true``): CI must exercise the target.
One build (cached, file-locked) serves every pytest-xdist worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TFLM_CANNOT_RUN

from tflite_reorder import api, shapes, target, tflm
from tflite_reorder.arena import tflm_blocks
from tflite_reorder.dtypes import align
from tflite_reorder.flatbuffer_io import load_model, serialize_model
from tflite_reorder.graph import build_graph
from tflite_reorder.hazards import find_hazards
from tflite_reorder.memory import simulate
from tflite_reorder.rewrites.padding import repair_model
from tflite_reorder.runtimes import structured_inputs
from tflite_reorder.target import firmware, planning, scratch
from tflite_reorder.target.pipeline import Target

ROOT = Path(__file__).resolve().parent.parent
# Models TFLM runs (conftest.TFLM_CANNOT_RUN: tools/make_compat_models.py's are not).
NETWORKS = sorted(p for p in (ROOT / "models").glob("*.tflite")
                  if not p.stem.startswith("inplace_") and p.stem not in TFLM_CANNOT_RUN)
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


def safe(data: bytes) -> bytes:
    """The model with its TFLM shape and padding hazards repaired (outputs well defined)."""
    model_t = load_model(data).model
    repair_model(model_t)
    shapes.fix_shapes(model_t, shapes.true_shapes(model_t))
    return serialize_model(model_t)


def assert_same_outputs(name: str, host: list[np.ndarray], on_target: list[np.ndarray],
                        hazardous: bool = False, tol: float = 2e-7) -> None:
    """Integers bit-identical; floats within ``tol`` relative, ``tol`` / 100 absolute
    (newlib's libm vs glibc's: 2e-7).

    A model with stored-shape hazards reads stale arena memory, so host and target may
    differ on it by design: there only shapes and dtypes must agree.
    """
    assert len(host) == len(on_target)
    for want, out in zip(host, on_target, strict=True):
        assert want.dtype == out.dtype and want.shape == out.shape, name
        if hazardous:
            continue
        if want.dtype.kind == "f":
            np.testing.assert_allclose(out, want, rtol=tol, atol=tol / 100, err_msg=name)
        else:
            assert same_bits(want, out), f"{name}: target output differs from host"


def planned_buffers(data: bytes, arch: str = ARCH,
                    kernels: str = KERNELS) -> tuple[list[tuple[int, int, int]], object]:
    """What TFLM should hand its planner for the model as stored: (size, first, last) in
    ``AddBuffer`` order (tensors, then scratch), and the arena use with scratch."""
    loaded = load_model(data)
    graph = build_graph(loaded.model)
    orders = graph.stored_orders()
    reqs = scratch.requests(loaded.model, graph, arch, kernels)
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
    inputs = structured_inputs(data, seed=0)
    got = target.invoke(data, inputs, ARCH, KERNELS)
    assert_same_outputs(path.name, tflm.run_tflm(data, inputs), got.outputs,
                        hazardous=bool(find_hazards(load_model(data).model)))
    expected, use = planned_buffers(data)
    logged = [(b.size, b.first, b.last) for b in got.buffers]
    assert logged == expected, f"{path.name}: TFLM's buffers differ from our model"
    assert planning.target_head(use, {}) == got.arena.head
    assert got.arena.total == got.arena.head + got.arena.tail


@pytest.mark.parametrize("path", NETWORKS, ids=lambda p: p.stem)
def test_repaired_models_are_bit_identical_on_host_and_target(runner: target.Build,
                                                             path: Path) -> None:
    """With hazards repaired, int8 outputs match the host bit for bit."""
    data = safe(path.read_bytes())
    for seed in (0, 1):
        inputs = structured_inputs(data, seed)
        assert_same_outputs(path.name, tflm.run_tflm(data, inputs),
                            target.run(data, inputs, ARCH, KERNELS))


@pytest.mark.parametrize("path", NETWORKS, ids=lambda p: p.stem)
def test_plan_with_scratch_is_the_target_head(runner: target.Build, path: Path) -> None:
    """Planned with the kernels' scratch, the target's head is the plan's, exactly.

    The plan reserves a gap for each scratch buffer at its operator; TFLM's online
    placement (replayed by ``target_head``) then lands at or below it, and the measured
    head equals the plan's head. Outputs do not change with the plan.
    """
    data = safe(path.read_bytes())
    tp = planning.plan_for_target(data, ARCH, KERNELS)
    inputs = structured_inputs(data, 0)
    plain = target.invoke(data, inputs, ARCH, KERNELS)
    planned = target.invoke(tp.model, inputs, ARCH, KERNELS)
    assert planned.arena.head == tp.predicted_head == tp.plan.head, path.name
    assert tp.plan.head >= tp.plan.lower_bound
    if tp.plan.optimal:
        assert tp.plan.head == tp.plan.lower_bound or tp.plan.method == "cpsat"
    for a, b in zip(plain.outputs, planned.outputs, strict=True):
        assert same_bits(a, b), f"{path.name}: the plan changed an output on the target"


@pytest.mark.parametrize("path", INPLACE, ids=lambda p: p.stem)
def test_inplace_ops_are_bit_identical_on_the_target(runner: target.Build, path: Path) -> None:
    """Every op of the in-place list, run in place on the CMSIS-NN build, changes nothing.

    The same probe models as ``test_inplace.py`` (host reference kernels), planned for the
    target with and without letting the op's output take its input's buffer.
    """
    from test_inplace import SEEDS, aliased_ops, ops_of

    data = path.read_bytes()
    ops = ops_of(path)
    aliased = planning.plan_for_target(data, ARCH, KERNELS, inplace=frozenset(ops))
    plain = planning.plan_for_target(data, ARCH, KERNELS, inplace=False)
    graph = build_graph(load_model(data).model)
    assert set(ops) <= aliased_ops(graph, aliased.use), f"{path.name} does not alias {ops}"
    assert not aliased_ops(graph, plain.use)
    for seed in SEEDS:
        inputs = structured_inputs(data, seed)
        a = target.invoke(aliased.model, inputs, ARCH, KERNELS)
        b = target.invoke(plain.model, inputs, ARCH, KERNELS)
        assert a.arena.head == aliased.plan.head and b.arena.head == plain.plan.head
        for x, y in zip(a.outputs, b.outputs, strict=True):
            assert same_bits(x, y), f"{path.name}: in place {ops} changed an output (seed {seed})"


@pytest.mark.parametrize("path", NETWORKS, ids=lambda p: p.stem)
def test_optimize_for_the_target_is_exact_there(runner: target.Build, path: Path) -> None:
    """The optimizer with ``target``: the written model's head on the target is the plan's
    (scratch included), its outputs match the input's on the same build bit for bit."""
    result = api.optimize(path, target=Target(ARCH, KERNELS), time_limit=1.0)
    t = result.report.target
    assert t["verified"] is True, path.name
    assert t["head"] == t["planned_head"] == result.report.arena_planned, path.name
    assert t["head_matches_plan"] is True
    assert t["total"] == t["head"] + t["tail"]
    assert result.report.arena_planned >= result.report.peak_after


def test_cli_target_header_and_json(runner: target.Build, tmp_path: Path) -> None:
    src = ROOT / "models" / "inception_int8.tflite"
    dst, header = tmp_path / "out.tflite", tmp_path / "arena.h"
    done = subprocess.run(
        [sys.executable, "-c", "from tflite_reorder.cli import main; main()", "optimize",
         str(src), str(dst), "--target", ARCH, "--header", str(header), "--margin", "0.1",
         "--json", "--time-limit", "2"], capture_output=True, text=True, check=True)
    t = json.loads(done.stdout)["target"]
    assert set(t) >= {"arch", "kernels", "head", "tail", "total", "verified"}
    assert t["verified"] and t["arch"] == ARCH and t["kernels"] == KERNELS
    assert target.measure(dst.read_bytes(), ARCH, KERNELS).total == t["total"]
    text = header.read_text()
    assert f"ARENA_HEAD {t['head']}" in text and f"ARENA_TAIL {t['tail']}" in text
    assert f"ARENA_SIZE {align(int(t['total'] * 1.1 + 15) // 16 * 16)}" in text


def test_cli_check_reports_the_target_arena(runner: target.Build) -> None:
    src = ROOT / "models" / "mobilenet_int8.tflite"
    done = subprocess.run(
        [sys.executable, "-c", "from tflite_reorder.cli import main; main()", "check",
         str(src), "--target", ARCH, "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)["target"]
    assert found["head"] == target.measure(src.read_bytes(), ARCH, KERNELS).head


def test_cli_rejects_an_unknown_architecture(tmp_path: Path) -> None:
    src = ROOT / "models" / "mobilenet_int8.tflite"
    done = subprocess.run(
        [sys.executable, "-c", "from tflite_reorder.cli import main; main()", "check",
         str(src), "--target", "cortex-x9"], capture_output=True, text=True)
    assert done.returncode == 2 and "unknown target architecture" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_without_a_runnable_target_the_tail_is_a_labelled_estimate(
        runner: target.Build, monkeypatch: pytest.MonkeyPatch) -> None:
    """No QEMU here: the plan still counts scratch, the tail is the 32-bit estimate."""
    from tflite_reorder.target import qemu

    monkeypatch.setenv("TFLITE_REORDER_QEMU", "/nonexistent/qemu-arm")
    qemu.qemu.cache_clear()
    try:
        path = ROOT / "models" / "inception_int8.tflite"
        result = api.optimize(path, target=Target(ARCH, KERNELS), time_limit=1.0)
    finally:
        qemu.qemu.cache_clear()
    t = result.report.target
    assert t["head"] is None and t["verified"] is None and t["error"]
    assert "estimate" in t["tail_source"] and t["tail"] == tflm.estimate_tail_32(result.data)
    figures = api.arena_figures(path, result, measure=False)
    assert figures["head"] == result.report.arena_planned and figures["tail"] == t["tail"]
    assert "estimate" in figures["tail_source"]


# More builds on request (each is a cold build of several minutes, so CI runs Cortex-M4
# CMSIS-NN only): TFLITE_REORDER_TEST_TARGETS="cortex-m55:cmsis_nn,cortex-m4:reference".
EXTRA_BUILDS = [tuple(b.split(":")) for b in
                os.environ.get("TFLITE_REORDER_TEST_TARGETS", "").split(",") if b]


@pytest.mark.parametrize("build", EXTRA_BUILDS, ids=lambda b: "-".join(b))
def test_scratch_model_and_outputs_on_other_builds(build: tuple[str, str]) -> None:
    """Other architectures and kernel sets: TFLM's planner input is ours, outputs match."""
    arch, kernels = build
    for path in NETWORKS:
        data = safe(path.read_bytes())
        inputs = structured_inputs(data, seed=0)
        got = target.invoke(data, inputs, arch, kernels)
        # Hard-float builds (Cortex-M55) contract a*b+c into FMA: float outputs move more.
        tol = 1e-2 if arch in firmware._HARD_FLOAT else 2e-7
        assert_same_outputs(f"{path.name} on {arch}/{kernels}", tflm.run_tflm(data, inputs),
                            got.outputs, tol=tol)
        expected, use = planned_buffers(data, arch, kernels)
        logged = [(b.size, b.first, b.last) for b in got.buffers]
        assert logged == expected, f"{path.name} on {arch}/{kernels}"
        assert planning.target_head(use, {}) == got.arena.head


@pytest.mark.parametrize(("name", "options"), [
    ("tile_resnet8_int8", {"tile": True}), ("tile_mbv1_025_96_int8", {"tile": True}),
    ("add_tree_int8", {"rewrite": True}),
], ids=["tile-resnet8", "tile-mbv1", "rewrite-add-tree"])
def test_tiles_and_rewrites_hold_on_the_target(runner: target.Build, name: str,
                                               options: dict) -> None:
    """Tiled and rewritten models: bit-identical on the CMSIS-NN build, head as planned."""
    result = api.optimize(ROOT / "models" / f"{name}.tflite", time_limit=2.0,
                          target=Target(ARCH, KERNELS), **options)
    r = result.report
    assert r.tiles or r.rewrites, f"{name}: nothing was tiled or rewritten"
    assert r.target["verified"] is True
    assert r.target["head"] == r.arena_planned


@pytest.mark.parametrize("kernels", ["reference", "cmsis_nn"])
def test_ops_skipped_by_name_request_nothing(kernels: str) -> None:
    """``scratch.may_request`` lets ``requests`` skip an operator by its name alone: every
    such operator of every shipped model requests nothing when asked in full."""
    skipped = 0
    for path in sorted((Path(__file__).resolve().parent.parent / "models").glob("*.tflite")):
        m = load_model(path).model
        graph = build_graph(m, shapes.true_shapes(m))
        for s, sg in enumerate(graph.subgraphs):
            sg_t = m.subgraphs[s]
            for v, node in enumerate(sg.ops):
                if scratch.may_request(node.opcode, kernels):
                    continue
                op_t = sg_t.operators[v]
                ins = [None if i < 0 else sg_t.tensors[i] for i in op_t.inputs]
                outs = [sg_t.tensors[i] for i in op_t.outputs]
                op = scratch._Op(node.opcode, ins, outs, op_t.builtinOptions)
                assert scratch.op_requests(op, "cortex-m4", kernels) == [], node.opcode
                skipped += 1
    assert skipped > 100
