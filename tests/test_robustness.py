"""Bad inputs fail cleanly: one line on stderr naming the file, exit 2, nothing written.

The corpus is ``tests/bad_inputs/`` (built by ``tools/make_bad_inputs.py`` from real models
in ``models/``). Every case runs through the real CLI entry point, ``cli.main([...])``, in
process (a few through the installed ``tflite-reorder`` script), and checks: the exit code
and message, no traceback, the input unchanged (hashes), and after a failure no output file
and no temp file left in the output directory. Cases that are valid but unusual (dynamic
shape signatures, zero-sized tensors, custom/unknown ops, 20,000 ops) must give a correct
output instead: the same operators, custom ones in their original relative order.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import CliRun, run_cli

from tflite_reorder.flatbuffer_io import load_model
from tflite_reorder.graph import build_graph
from tools import make_bad_inputs as mb

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "bad_inputs"
MODELS = ROOT / "models"

PREFIX = "tflite-reorder: error: "

# Corpus file -> text the one-line error must contain (besides the file name); exit 2.
REJECTED = {
    "empty.tflite": "empty file (0 bytes)",
    "random.tflite": "not a TFLite flatbuffer",
    "wrong_identifier.tflite": "file identifier b'TFL2'",
    "model.onnx": "not a TFLite flatbuffer",
    "saved_model": "is a directory",
    "saved_model/saved_model.pb": "not a TFLite flatbuffer",
    "model.json": "not a TFLite flatbuffer",
    "tensor_index_out_of_range.tflite": "operator 3 refers to tensor 99, but there are 14",
    "output_index_out_of_range.tflite": "outputs refers to tensor -5, but there are 14",
    "buffer_index_out_of_range.tflite": "tensor 9 refers to buffer 57, but there are 17",
    "opcode_index_out_of_range.tflite": "operator 2 refers to operator code 6, but there are 3",
    "cycle.tflite": "operator graph has a cycle",
    "produced_twice.tflite": "is produced by operators 0 and 1",
    "recursive_control_flow.tflite": "control flow calls subgraph 0 recursively",
    "unwritten_while_cond.tflite": "subgraph 3: output tensor 4 (while/Less) is written by no "
                                   "operator",
    "huge_input.tflite": "the model's inputs take 268960000 bytes per run, more than the",
    # no IfOptions: the runtimes' parsers call subgraph 0 for both branches
    "if_without_options.tflite": "control flow calls subgraph 0 recursively",
    "constant_size_mismatch.tflite": "tensor 6 needs 64 bytes of constant data for shape [16]",
    "uninitialized_read.tflite": "operator 4 (ADD) reads tensor 14 (never_written), which no "
                                 "operator writes",
    # LiteRT and TFLM both run it, writing the MEAN's output into the model's own bytes
    "constant_output.tflite": "subgraph 0: operator 2 (MEAN) writes tensor 10 (Mean), which "
                              "holds constant data (buffer 17)",
    # both run the stored order and read garbage (their outputs differ from each other's)
    "read_before_write.tflite": "subgraph 0: operator 3 (ADD) reads tensor 11 (add_2) before "
                                "operator 4 (ADD) writes it",
    "reads_own_output.tflite": "subgraph 0: operator 5 (CONV_2D) reads its own output "
                               "tensor 13 (Identity)",
    # the runtimes abort() preparing these two (tests/test_preflight.py runs them raw)
    "softmax_without_options.tflite": "(SOFTMAX): input scale 0.0688897 × beta 0 (no "
                                      "SoftmaxOptions stored)",
    "add_rescale_overflow.tflite": "operator 4 (ADD): input scales 0.0788435 and 0.00651106 "
                                   "against output scale 1.4013e-45",
    # We can reorder these, but neither LiteRT nor TFLM runs them, so verification cannot
    # check the result: refused unless --no-verify (then accepted, see ACCEPTED_NO_VERIFY).
    "dynamic_stored_dim.tflite": "cannot verify: no runtime runs this model",
    "custom_and_unknown_ops.tflite": "cannot verify: no runtime runs this model",
    # The runtimes would abort, segfault or never finish initialising: refused before
    # either is called (preflight), with --no-verify accepted.
    "quant_scale_zero.tflite": "has quantization scale 0; scales must be positive",
    "quant_scale_nan.tflite": "has quantization scale nan; scales must be positive",
    "offline_plan_buffer0.tflite": "is in buffer 0, which holds no plan",
    "unscaled_add_operand.tflite": "operator 3 (ADD) has a quantised output but its tensor 14 "
                                   "(INT32) has no quantization scale",
    "plan_shares_weight.tflite": "offline plan (metadata OfflineMemoryAllocation) has",
    "nested_if_shared30.tflite": "lifetime marking would visit 2147483647 subgraphs",
    "large_custom_options.tflite": "cannot verify: no runtime runs this model",
    # LiteRT refuses it; TFLM, run in a child process for that reason, dies of SIGFPE
    "conv_1d_input.tflite": "cannot verify: no runtime runs this model",
    "fill_int64_negative.tflite": "cannot verify: no runtime runs this model",
    "fill_int64_huge.tflite": "arena tensors need more than 2147483647 bytes",
}
# LiteRT runs these, TFLM does not: verified with LiteRT, written, exit 0 (and said so).
ACCEPTED_VERIFIED = ["dynamic_shapes.tflite", "zero_sized_tensor.tflite",
                     "junk_constant_m1m1.tflite", "junk_constant_m2m3.tflite",
                     "foreign_options.tflite", "uncalled_subgraph.tflite"]
ACCEPTED_NO_VERIFY = [
    "dynamic_shapes.tflite", "dynamic_stored_dim.tflite", "zero_sized_tensor.tflite",
    "custom_and_unknown_ops.tflite", "quant_scale_zero.tflite", "quant_scale_nan.tflite",
    "offline_plan_buffer0.tflite", "plan_shares_weight.tflite", "nested_if_shared30.tflite",
    "large_custom_options.tflite", "junk_constant_m1m1.tflite", "junk_constant_m2m3.tflite",
    "fill_int64_negative.tflite", "huge_stored_shape.tflite", "foreign_options.tflite",
    "uncalled_subgraph.tflite", "unscaled_add_operand.tflite", "conv_1d_input.tflite",
    "huge_input.tflite",
]


def snapshot(*roots: Path) -> dict[str, str]:
    """sha256 of every file (hidden ones included) under ``roots``."""
    found = {}
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in paths:
            found[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return found


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    dst.mkdir()
    return src, dst


def stage(name: str, in_dir: Path) -> Path:
    """Copy a corpus entry into the test's input directory."""
    src, dst = CORPUS / name, in_dir / name
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copyfile(src, dst)
    return dst


def assert_clean_failure(run: CliRun, code: int, src: Path, expected: str, out_dir: Path) -> None:
    """Exit ``code``, one line naming ``src`` (the file at fault), nothing in ``out_dir``."""
    assert run.code == code, (run.code, run.err)
    assert "Traceback" not in run.err + run.out
    lines = run.err.strip().splitlines()
    assert len(lines) == 1, run.err
    assert lines[0].startswith(PREFIX)
    assert str(src) in lines[0], lines[0]
    assert expected in lines[0], lines[0]
    assert not list(out_dir.iterdir()), "failure left files in the output directory"


def op_keys(model_t, s: int = 0) -> list[tuple]:
    """(opcode name, inputs, outputs) of every operator of subgraph s, stored order (read
    with the true shapes: a stored shape past 32 bits that inference repairs is accepted)."""
    from tflite_reorder.shapes import true_graph

    g = true_graph(model_t)
    return [(op.opcode, op.inputs, op.outputs) for op in g.subgraphs[s].ops]


def written_peak(path: Path) -> int:
    """The peak of a written model's stored order, replayed from the file itself, with the
    host kernels' scratch buffers that the plan leaves room for (as ``peak_after`` counts)."""
    from tflite_reorder.memory import simulate
    from tflite_reorder.target import pipeline

    model = load_model(path).model
    graph = build_graph(model)
    orders = graph.stored_orders()
    reqs, _ = pipeline.host_scratch_for(model, graph)
    return pipeline.plan_use(simulate(graph, orders, inplace=True), reqs, orders).lower_bound


def assert_same_ops(before: Path | bytes, after: Path | bytes) -> None:
    a, b = load_model(before).model, load_model(after).model
    assert len(a.subgraphs) == len(b.subgraphs)
    for s in range(len(a.subgraphs)):
        ka, kb = op_keys(a, s), op_keys(b, s)
        assert Counter(ka) == Counter(kb), f"subgraph {s}: operators changed"
        # Custom and unknown operators may have side effects: their order is kept.
        keep = [k for k in ka if k[0].startswith(("CUSTOM", "BUILTIN_"))]
        assert [k for k in kb if k in keep] == keep


# ---------------------------------------------------------------------------------------------
# The corpus


def test_corpus_is_up_to_date():
    """The committed files are what the generator builds (and stay small)."""
    assert mb.main(["--check"]) == 0
    total = sum(p.stat().st_size for p in CORPUS.rglob("*") if p.is_file())
    assert total < 250_000  # 44 kB of it: the one control-flow entry (while_float32)


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_rejected(name, dirs, capsys):
    in_dir, out_dir = dirs
    src = stage(name, in_dir)
    before = snapshot(in_dir)
    run = run_cli([src, out_dir / "out.tflite"], capsys)
    assert_clean_failure(run, 2, src, REJECTED[name], out_dir)
    assert snapshot(in_dir) == before


@pytest.mark.parametrize("name", ACCEPTED_NO_VERIFY)
def test_accepted_without_verification(name, dirs, capsys):
    in_dir, out_dir = dirs
    src = stage(name, in_dir)
    before = snapshot(in_dir)
    dst = out_dir / "out.tflite"
    run = run_cli([src, dst, "--no-verify", "--json"], capsys)
    assert run.code == 0, run.err
    assert "Traceback" not in run.err + run.out
    report = json.loads(run.out)
    assert report["lower_bound"] <= report["peak_after"] <= report["peak_before"]
    assert_same_ops(src, dst)
    assert [p.name for p in out_dir.iterdir()] == ["out.tflite"]  # no temp files
    assert snapshot(in_dir) == before


@pytest.mark.parametrize("name", ACCEPTED_VERIFIED)
def test_accepted_and_verified(name, dirs, capsys):
    in_dir, out_dir = dirs
    src = stage(name, in_dir)
    dst = out_dir / "out.tflite"
    run = run_cli([src, dst, "--json"], capsys)
    assert run.code == 0, run.err
    ver = json.loads(run.out)["verification"]
    assert ver["ok"] and ver["ran"]
    not_run = {n["runtime"] for n in ver["not_run"]}
    assert set(ver["ran"]) | not_run == {"litert", "tflm"} and not set(ver["ran"]) & not_run
    assert_same_ops(src, dst)


def test_dynamic_signature_survives(dirs, capsys):
    """Dynamic (-1) batch dims in ``shape_signature`` are carried into the output."""
    in_dir, out_dir = dirs
    src = stage("dynamic_shapes.tflite", in_dir)
    dst = out_dir / "out.tflite"
    assert run_cli([src, dst, "--no-verify"], capsys).code == 0
    sigs = [t.shapeSignature for t in load_model(dst).model.subgraphs[0].tensors]
    assert sum(1 for s in sigs if s is not None and len(s) and s[0] == -1) >= 5


def test_custom_ops_are_kept_in_order(dirs, capsys):
    in_dir, out_dir = dirs
    src = stage("custom_and_unknown_ops.tflite", in_dir)
    dst = out_dir / "out.tflite"
    assert run_cli([src, dst, "--no-verify"], capsys).code == 0
    names = [k[0] for k in op_keys(load_model(dst).model)]
    assert "CUSTOM:MyVendorMean" in names and "BUILTIN_250" in names
    assert names.index("BUILTIN_250") < names.index("CUSTOM:MyVendorMean")  # stored order
    custom = load_model(dst).model
    codes = [custom.operatorCodes[op.opcodeIndex] for op in custom.subgraphs[0].operators]
    mine = [op for op, c in zip(custom.subgraphs[0].operators, codes, strict=True)
            if c.customCode in (b"MyVendorMean", "MyVendorMean")]
    assert bytes(np.asarray(mine[0].customOptions, dtype=np.uint8)) == b"\x01\x02\x03\x04"


def test_truncated_at_50_offsets(dirs, capsys):
    """A real model cut anywhere is rejected as corrupt or truncated."""
    in_dir, out_dir = dirs
    data = (MODELS / "multi_output_int8.tflite").read_bytes()
    offsets = sorted({int(x) for x in np.linspace(0, len(data) - 1, 50)})
    assert len(offsets) == 50
    for off in offsets:
        src = in_dir / f"cut_{off}.tflite"
        src.write_bytes(data[:off])
        run = run_cli([src, out_dir / "out.tflite", "--no-verify"], capsys)
        expected = "empty file" if off == 0 else (
            "too short" if off < 8 else "corrupt or truncated flatbuffer")
        assert_clean_failure(run, 2, src, expected, out_dir)
        assert src.read_bytes() == data[:off]


# Readable inputs that ``check`` does not call clean: TFLM cannot run them (and some hold
# operators with no shape rule or dynamic dimensions).
CHECK_FINDS = {"dynamic_stored_dim.tflite", "zero_sized_tensor.tflite",
               "custom_and_unknown_ops.tflite", "uncalled_subgraph.tflite",
               "conv_1d_input.tflite"}


# Inputs the runtimes' preflight refuses (optimize exit 2): (inspect, check, arena) codes.
# inspect never runs a runtime; check and arena refuse what would crash a runtime.
PREFLIGHT = {
    **dict.fromkeys(("quant_scale_zero.tflite", "quant_scale_nan.tflite",
                     "offline_plan_buffer0.tflite", "plan_shares_weight.tflite",
                     "nested_if_shared30.tflite", "unscaled_add_operand.tflite",
                     "softmax_without_options.tflite", "add_rescale_overflow.tflite"),
                    (0, 2, 2)),
    "large_custom_options.tflite": (0, 1, 0), "fill_int64_negative.tflite": (0, 1, 0),
    "fill_int64_huge.tflite": (2, 1, 2),
    "huge_input.tflite": (0, 2, 0),  # check runs the runtimes; arena measures TFLM alone
    "junk_constant_m1m1.tflite": (0, 0, 0), "junk_constant_m2m3.tflite": (0, 0, 0),
    # as stored, TFLM would need a 34 GB arena: check and arena refuse it in one line;
    # inspect and the main command use the repaired shape
    "huge_stored_shape.tflite": (0, 2, 2),
}


def expected_code(command: str, name: str) -> int:
    """The documented exit code: 2 for what cannot be read; ``inspect`` and ``arena`` work
    on everything readable (arena estimating what TFLM cannot measure); ``check`` exits 1
    on anything not fully checked or not runnable by TFLM."""
    if name in PREFLIGHT:
        return PREFLIGHT[name][("inspect", "check", "arena").index(command)]
    if name in REJECTED and "cannot verify" not in REJECTED[name]:
        return 2
    return 1 if command == "check" and name in CHECK_FINDS else 0


@pytest.mark.parametrize("command", [["inspect"], ["check"], ["arena"]])
def test_other_commands_on_corpus(command, dirs, capsys):
    """inspect/check/arena: documented exit codes, one-line errors naming the file."""
    in_dir, _ = dirs
    for name in sorted(REJECTED) + ACCEPTED_NO_VERIFY:
        src = stage(name, in_dir) if not (in_dir / name).exists() else in_dir / name
        limit = [] if command[0] == "check" else ["--time-limit", "0.5"]
        run = run_cli([*command, src, *limit], capsys)
        assert run.code == expected_code(command[0], name), (name, run.code, run.err)
        assert "Traceback" not in run.err + run.out, name
        if run.code == 2:
            lines = run.err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith(PREFIX), (name, run.err)
            assert str(src) in lines[0], (name, lines[0])


# ---------------------------------------------------------------------------------------------
# Paths and the file system


@pytest.fixture
def good(dirs) -> Path:
    src = dirs[0] / "model.tflite"
    shutil.copyfile(MODELS / "inplace_add_int8.tflite", src)
    return src


def test_missing_file(dirs, capsys):
    in_dir, out_dir = dirs
    src = in_dir / "nope.tflite"
    run = run_cli([src, out_dir / "out.tflite"], capsys)
    assert_clean_failure(run, 2, src, "no such file", out_dir)


def test_directory_as_input(dirs, capsys):
    in_dir, out_dir = dirs
    run = run_cli([in_dir, out_dir / "out.tflite"], capsys)
    assert_clean_failure(run, 2, in_dir, "is a directory", out_dir)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root reads files whatever their mode")
def test_unreadable_file(good, dirs, capsys):
    good.chmod(0)
    try:
        run = run_cli([good, dirs[1] / "out.tflite"], capsys)
    finally:
        good.chmod(0o644)
    assert_clean_failure(run, 2, good, "permission denied", dirs[1])


def test_unreadable_file_simulated(good, dirs, capsys, monkeypatch):
    """What chmod 000 does for a non-root user, simulated (tests may run as root)."""
    real = os.open

    def deny(path, flags, *args, **kw):
        if Path(path) == good:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, flags, *args, **kw)

    monkeypatch.setattr(os, "open", deny)
    run = run_cli([good, dirs[1] / "out.tflite"], capsys)
    assert_clean_failure(run, 2, good, "permission denied", dirs[1])


def test_output_in_missing_directory(good, dirs, capsys):
    dst = dirs[1] / "no" / "such" / "dir" / "out.tflite"
    run = run_cli([good, dst, "--no-verify"], capsys)
    assert_clean_failure(run, 2, dst, "does not exist", dirs[1])


def test_output_is_input(good, dirs, capsys):
    before = snapshot(dirs[0])
    for dst in (good, dirs[0] / "sub" / ".." / good.name):
        (dirs[0] / "sub").mkdir(exist_ok=True)
        run = run_cli([good, dst, "--no-verify"], capsys)
        assert run.code == 2 and "refusing to overwrite" in run.err, run.err
        assert "Traceback" not in run.err
    assert snapshot(dirs[0]) == before


def test_output_is_a_directory(good, dirs, capsys):
    run = run_cli([good, dirs[1], "--no-verify"], capsys)
    assert_clean_failure(run, 2, dirs[1], "output path is a directory", dirs[1])


def test_existing_output_survives_a_failure(dirs, capsys):
    in_dir, out_dir = dirs
    src = stage("cycle.tflite", in_dir)
    dst = out_dir / "out.tflite"
    dst.write_bytes(b"previous build")
    run = run_cli([src, dst], capsys)
    assert run.code == 2
    assert dst.read_bytes() == b"previous build"
    assert [p.name for p in out_dir.iterdir()] == ["out.tflite"]


def test_disk_full_while_writing(good, dirs, capsys, monkeypatch):
    def full(_fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    run = run_cli([good, dirs[1] / "out.tflite", "--no-verify"], capsys)
    assert_clean_failure(run, 2, dirs[1] / "out.tflite", "No space left on device", dirs[1])


def test_interrupt_while_writing(good, dirs, capsys, monkeypatch):
    def interrupted(*_args) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    run = run_cli([good, dirs[1] / "out.tflite", "--no-verify"], capsys)
    assert run.code == 130 and "nothing written" in run.err
    assert "Traceback" not in run.err
    assert not list(dirs[1].iterdir())


def test_failed_verification_writes_nothing(good, dirs, capsys, monkeypatch):
    from tflite_reorder import verify

    def differs(original, written, **_kw):
        result = verify.Verification()
        result.comparisons.append(verify.Comparison("litert", "input", 3, False, 1.0, 1.0, False))
        return result

    monkeypatch.setattr(verify, "verify", differs)
    run = run_cli([good, dirs[1] / "out.tflite"], capsys)
    assert_clean_failure(run, 1, good, "verification failed", dirs[1])


def test_output_file_mode_follows_umask(good, dirs, capsys):
    dst = dirs[1] / "out.tflite"
    old = os.umask(0o022)
    try:
        assert run_cli([good, dst, "--no-verify"], capsys).code == 0
    finally:
        os.umask(old)
    assert dst.stat().st_mode & 0o777 == 0o644


def test_console_script(good, dirs):
    """The installed ``tflite-reorder`` script: success, and two failures."""
    exe = shutil.which("tflite-reorder")
    if exe is None:
        pytest.skip("tflite-reorder is not on PATH")
    in_dir, out_dir = dirs
    ok = subprocess.run([exe, good, out_dir / "ok.tflite", "--no-verify", "--json"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["optimal"] is True
    assert_same_ops(good, out_dir / "ok.tflite")
    (out_dir / "ok.tflite").unlink()
    for name, expected in (("empty.tflite", "empty file"), ("cycle.tflite", "cycle")):
        src = stage(name, in_dir)
        bad = subprocess.run([exe, src, out_dir / "x.tflite"], capture_output=True, text=True,
                             timeout=120)
        run = CliRun(bad.returncode, bad.stdout, bad.stderr)
        assert_clean_failure(run, 2, src, expected, out_dir)


# ---------------------------------------------------------------------------------------------
# Size and limits (timings themselves are measured by tools/limits.py, not here)


@pytest.fixture(scope="module")
def chains20k(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("big") / "chains20k.tflite"
    path.write_bytes(mb.synthetic_chains())
    return path


def test_20000_operators(chains20k, dirs, capsys):
    dst = dirs[1] / "out.tflite"
    run = run_cli([chains20k, dst, "--no-verify", "--json", "--time-limit", "0.5"], capsys)
    assert run.code == 0, run.err
    report = json.loads(run.out)
    assert report["ops"] == 20_001
    assert report["optimal"] is False
    assert report["peak_after"] <= report["peak_before"]
    assert report["peak_after"] == written_peak(dst)  # the report describes the file
    assert 0 < report["lower_bound"] < report["peak_after"]
    assert_same_ops(chains20k, dst)


@pytest.mark.parametrize("join", ["concat", "add"])
def test_wide_graph_reports_gap(join, dirs, capsys):
    src = dirs[0] / f"wide_{join}.tflite"
    src.write_bytes(mb.wide_branches(join=join))
    # Limit 0: the search stops at its first check whatever the machine's speed (at 0.1 s
    # the compiled core sometimes proves the concat case, so a wall-clock limit is flaky).
    run = run_cli([src, dirs[1] / "out.tflite", "--no-verify", "--json",
                  "--time-limit", "0"], capsys)
    assert run.code == 0, run.err
    report = json.loads(run.out)
    assert report["optimal"] is False
    assert report["per_subgraph"][0]["stopped"] == "time limit"
    assert report["peak_after"] == written_peak(dirs[1] / "out.tflite")
    # The bound is a bound: a longer search finds orders, never one below it.
    long = run_cli([src, dirs[1] / "long.tflite", "--no-verify", "--json",
                   "--time-limit", "2"], capsys)
    best = json.loads(long.out)
    assert 0 < report["lower_bound"] <= best["peak_after"] <= report["peak_after"]


# ---------------------------------------------------------------------------------------------
# Usage errors, early validation of outputs, non-regular files (issue: robustness II)

GOOD = MODELS / "inplace_add_int8.tflite"


@pytest.mark.parametrize("args", [
    ["optimize", "IN", "OUT", "--time-limit", "nan"],
    ["optimize", "IN", "OUT", "--time-limit", "inf"],
    ["optimize", "IN", "OUT", "--time-limit", "-1"],
    ["optimize", "IN", "OUT", "--max-error", "nan"],
    ["optimize", "IN", "OUT", "--max-error", "inf"],
    ["arena", "IN", "--margin", "inf"],
    ["arena", "IN", "--margin", "nan"],
    ["arena", "IN", "--time-limit", "nan"],
    ["inspect", "IN", "--time-limit", "inf"],
    ["batch", "IN", "--out", "OUT", "--time-limit", "nan"],
    ["batch", "IN", "--out", "OUT", "--jobs", "0"],
    ["optimize", "IN", "OUT", "--no-such-option"],
    ["optimize", "IN"],
    ["arena"],
    ["IN", "OUT", "--time-limit", "abc"],
])
def test_usage_errors_are_one_line_exit_2(args, dirs, capsys):
    _, out_dir = dirs
    args = [str(GOOD) if a == "IN" else str(out_dir / "o.tflite") if a == "OUT" else a
            for a in args]
    run = run_cli([*args], capsys)
    assert run.code == 2, (run.code, run.err)
    lines = run.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(PREFIX), run.err
    assert "Traceback" not in run.err + run.out and "╭" not in run.err
    assert not list(out_dir.iterdir())


def test_header_into_missing_folder_writes_nothing(good, dirs, capsys):
    dst = dirs[1] / "out.tflite"
    header = dirs[1] / "missing" / "arena.h"
    run = run_cli([good, dst, "--no-verify", "--header", header], capsys)
    assert_clean_failure(run, 2, header, "does not exist", dirs[1])


def test_plot_without_matplotlib_writes_nothing(good, dirs, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real(name, *a))
    plot = dirs[1] / "memory.png"
    run = run_cli([good, dirs[1] / "out.tflite", "--no-verify", "--plot", plot], capsys)
    assert_clean_failure(run, 2, plot, "plotting needs matplotlib", dirs[1])


def test_output_given_twice_is_refused(good, dirs, capsys):
    dst = dirs[1] / "out.tflite"
    run = run_cli([good, dst, "--no-verify", "--header", dst], capsys)
    assert_clean_failure(run, 2, dst, "given as two different outputs", dirs[1])


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
@pytest.mark.parametrize("command", [[], ["arena"], ["check"], ["inspect"]])
def test_dev_zero_as_input(command, dirs, capsys):
    args = [*command, "/dev/zero"] + ([] if command else [dirs[1] / "out.tflite"])
    run = run_cli([*args], capsys)
    assert_clean_failure(run, 2, Path("/dev/zero"), "is a character device", dirs[1])


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_fifo_as_input_does_not_hang(dirs, capsys):
    fifo = dirs[0] / "pipe.tflite"
    os.mkfifo(fifo)
    run = run_cli([fifo, dirs[1] / "out.tflite"], capsys)
    assert_clean_failure(run, 2, fifo, "is a FIFO", dirs[1])


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_writing_onto_dev_full(good, dirs, capsys):
    run = run_cli([good, "/dev/full", "--no-verify"], capsys)
    assert run.code == 2 and "No space left on device" in run.err, run.err
    assert Path("/dev/full").is_char_device()


def test_sigterm_during_a_run_is_one_line_and_leaves_nothing(good, dirs):
    """SIGTERM sent while the CLI writes: exit 143, one line, no temp file."""
    script = (
        "import os, signal, sys\n"
        "real = os.fsync\n"
        "def fsync(fd):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    real(fd)\n"
        "os.fsync = fsync\n"
        "from tflite_reorder.cli import main\n"
        f"main([{str(good)!r}, {str(dirs[1] / 'out.tflite')!r}, '--no-verify'])\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, env=env)
    assert run.returncode == 143, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "terminated; nothing written" in lines[0], run.stderr
    assert not list(dirs[1].iterdir())


def test_model_error_messages_are_one_printable_line():
    """A hostile model's names hold any bytes (fuzz seed 2031, case 25476: a tensor name of
    18,000 bytes with newlines, quoted in the message): the message stays one line."""
    from tflite_reorder.flatbuffer_io import MAX_MESSAGE, ModelError

    msg = str(ModelError("tensor 3 (a\nb\x00c" + "x" * 5000 + ") is bad"))
    assert "\n" not in msg and msg.isprintable() and len(msg) == MAX_MESSAGE
    assert msg.startswith("tensor 3 (a\\nb\\x00c")
    assert str(ModelError("plain")) == "plain"


@pytest.mark.parametrize("flags", [[], ["--tile"], ["--rewrite"], ["--rewrite", "--tile"]])
def test_operators_with_another_operators_options(flags, tmp_path, capsys):
    """Spliced operator codes (fuzz seed 2031, e.g. case 5464) give ops another op's options
    table: here every CONCATENATION, CONV_2D and STRIDED_SLICE of a model with rewrite and
    tile sites carries ADD's. The readers clear such tables (the runtimes read them as
    none, ``options.drop_foreign_options``); the row levers, the rewrites and the tiler
    then see ops without options: written, and verified with TFLM; LiteRT refuses the
    input, as it refuses a CONV_2D stored without options (zeroed stride)."""
    from ai_edge_litert import schema_py_generated as schema

    from tflite_reorder.flatbuffer_io import serialize_model
    from tflite_reorder.graph import opcode_name

    m = load_model(MODELS / "hconcat_int8.tflite").model
    changed = 0
    for op in m.subgraphs[0].operators:
        if opcode_name(m, op.opcodeIndex) in ("CONCATENATION", "CONV_2D", "STRIDED_SLICE"):
            op.builtinOptionsType = schema.BuiltinOptions.AddOptions
            op.builtinOptions = schema.AddOptionsT()
            changed += 1
    assert changed
    src = tmp_path / "spliced.tflite"
    src.write_bytes(serialize_model(m))
    run = run_cli([src, tmp_path / "out.tflite", "--json", *flags], capsys)
    assert run.code == 0 and "Traceback" not in run.err, run.err
    ver = json.loads(run.out)["verification"]
    assert ver["ok"] and ver["ran"] == ["tflm"], ver
    assert "stride_height > 0" in ver["not_run"][0]["why"], ver


@pytest.mark.parametrize("flags", [["--rewrite"], ["--tile"], ["--rewrite", "--tile"]])
def test_levers_on_foreign_options_corpus_entry(flags, dirs, capsys):
    in_dir, out_dir = dirs
    src = stage("foreign_options.tflite", in_dir)
    run = run_cli([src, out_dir / "out.tflite", "--json", *flags], capsys)
    assert run.code == 0 and "Traceback" not in run.err, run.err
    assert json.loads(run.out)["verification"]["ok"]



def _weights_swapped(name: str, code: str):
    """Model ``name`` with the first ``code`` op's weights and bias swapped (and that op)."""
    from tflite_reorder.graph import opcode_name

    m = load_model(MODELS / f"{name}.tflite").model
    op = next(o for o in m.subgraphs[0].operators if opcode_name(m, o.opcodeIndex) == code)
    op.inputs = np.array([op.inputs[0], op.inputs[2], op.inputs[1]], np.int32)
    return m, op


@pytest.mark.parametrize("code", ["CONV_2D", "DEPTHWISE_CONV_2D"])
def test_a_convolution_with_1d_weights_costs_nothing_and_ends_a_region(code):
    """Fuzz seed 2032, cases 261 and 1217: a convolution whose weights and bias were swapped
    (its "weights" 1-D). The tiler's MAC count and window geometry read them as 4-D
    (IndexError); such an op now costs no MACs and is not tileable."""
    from tflite_reorder.rewrites.edit import Editor
    from tflite_reorder.tiling import cost
    from tflite_reorder.tiling.spatial import NotTileable, describe

    m, op = _weights_swapped("concat_dw_int8", code)
    ed = Editor(m, 0)
    assert cost.op_macs(ed, op) == 0
    with pytest.raises(NotTileable, match="weights are not 4-D"):
        describe(ed, op)


def test_levers_on_a_convolution_with_1d_weights():
    from tflite_reorder import api
    from tflite_reorder.flatbuffer_io import serialize_model

    m, _ = _weights_swapped("hconcat_int8", "CONV_2D")
    result = api.optimize(serialize_model(m), verify=False, time_limit=0.2, rewrite=True,
                          tile=True)
    assert load_model(result.data).model.subgraphs


# ---------------------------------------------------------------------------------------------
# A model whose runs do not end (endless_while: a WHILE with a junk constant trip count)

ENDLESS = "endless_while.tflite"
BOUND = ["--verify-timeout", "1"]  # unbounded, each runtime runs it for minutes
TIMED_OUT = "timed out after 1 s (--verify-timeout) running the input"


def _no_children() -> bool:
    """No runtime's child process of this one is left (a killed runtime is reaped; the
    batch's multiprocessing resource tracker may stay, it is not a runtime)."""
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if fields[1] == me and b"resource_tracker" not in command:
            return False
    return True


def test_endless_loop_is_not_verified(dirs, capsys):
    """Both runtimes are cut at the bound: the verification could not run (exit 2, one
    line naming each runtime), nothing written, no process left; with --no-verify the
    model is optimised as any other."""
    import time

    in_dir, out_dir = dirs
    src = stage(ENDLESS, in_dir)
    t0 = time.monotonic()
    run = run_cli([src, out_dir / "out.tflite", *BOUND], capsys)
    assert time.monotonic() - t0 < 60  # 2 x 1 s and start-up; unbounded: minutes
    assert_clean_failure(run, 2, src, f"cannot verify: litert {TIMED_OUT}; tflm {TIMED_OUT}",
                         out_dir)
    assert "raise --verify-timeout or use --no-verify; nothing written" in run.err
    assert _no_children()
    run = run_cli([src, out_dir / "out.tflite", "--no-verify", "--json"], capsys)
    assert run.code == 0, run.err
    assert_same_ops(src, out_dir / "out.tflite")


def test_endless_loop_in_check_batch_and_api(dirs, capsys):
    """``check``: TFLM not known to run it (exit 1, ``tflm_timed_out``); ``batch``: the row
    says ``timeout``, exit 2; the API raises ``NotVerified`` (a ``ModelError``)."""
    from tflite_reorder import api
    from tflite_reorder.flatbuffer_io import ModelError
    from tflite_reorder.results import NotVerified

    in_dir, out_dir = dirs
    src = stage(ENDLESS, in_dir)
    run = run_cli(["check", src, "--json", *BOUND], capsys)
    assert run.code == 1, run.err
    kinds = [h["kind"] for h in json.loads(run.out)["hazards"]]
    assert kinds == ["tflm_timed_out"]
    run = run_cli(["batch", src, "--out", out_dir / "b", "--json", *BOUND], capsys)
    row = json.loads(run.out)
    assert run.code == 2 and (row["error_kind"], row["exit_code"]) == ("timeout", 2)
    assert TIMED_OUT in row["error"] and not list((out_dir / "b").iterdir())
    with pytest.raises(NotVerified, match="cannot verify: litert timed out after 1 s") as exc:
        api.optimize(src, verify_timeout=1.0)
    assert isinstance(exc.value, ModelError)
    assert _no_children()


def test_unconfirmed_arena_is_said(good, dirs, capsys, monkeypatch):
    """TFLM cut at the bound while measuring the written model: the main command does not
    claim the plan (exit 2, nothing written); ``arena`` leaves TFLM's figures out and says
    why (``tflm_timed_out``, the tail an estimate)."""
    from tflite_reorder import tflm

    real = tflm.measure_arena
    input_bytes = good.read_bytes()

    def measure(data, arena_size=None):
        if bytes(data) != input_bytes:  # the written model
            raise tflm.TflmTimeout(1.0)
        return real(data, arena_size)

    monkeypatch.setattr(tflm, "measure_arena", measure)
    _, out_dir = dirs
    run = run_cli([good, out_dir / "out.tflite", *BOUND], capsys)
    assert_clean_failure(run, 2, good, "cannot confirm the planned arena: TFLM timed out "
                         "after 1 s (--verify-timeout) measuring the written model", out_dir)
    run = run_cli(["arena", good, "--json", *BOUND], capsys)
    assert run.code == 0, run.err
    figures = json.loads(run.out)
    assert figures["tflm_timed_out"] is True and "tflm_head" not in figures
    assert figures["tail_source"] == "estimate (TFLM timed out after 1 s (--verify-timeout))"
