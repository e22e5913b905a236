"""preflight: models the native runtimes would abort on are refused with one line.

The int8 SOFTMAX case (an untrained Keras DenseNet121's logits) is checked against the
runtimes themselves, each in a child process so an abort is seen as a signal, not a crash
of the test run: just above the threshold both run, at and below it both abort, and our
check refuses exactly the latter.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tflite_reorder import preflight, tflm
from tflite_reorder.flatbuffer_io import ModelError, load_model, serialize_model
from tflite_reorder.verify import runnability

ROOT = Path(__file__).resolve().parent.parent
SOFTMAX_MODEL = ROOT / "models" / "inplace_softmax_int8.tflite"
THRESHOLD = 2.0 ** -26


def softmax_with_input_scale(scale: float) -> bytes:
    """``inplace_softmax_int8`` with the SOFTMAX input's scale set to ``scale``."""
    m = load_model(SOFTMAX_MODEL.read_bytes()).model
    sg = m.subgraphs[0]
    op = next(o for o in sg.operators if m.operatorCodes[o.opcodeIndex].builtinCode == 25)
    assert float(op.builtinOptions.beta) == 1.0
    sg.tensors[int(op.inputs[0])].quantization.scale = [scale]
    return serialize_model(m)


RUN_MODEL = """
import sys, numpy as np
path = sys.argv[2]
data = open(path, "rb").read()
if sys.argv[1] == "litert":
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    it = Interpreter(model_content=data,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    it.set_tensor(d["index"], np.FILL(d["shape"], d["dtype"]))
    it.invoke()
else:
    from tflite_micro import runtime
    it = runtime.Interpreter.from_bytes(data, arena_size=1 << 20)
    it.set_input(np.FILL((1, 8, 8, 16), np.int8), 0)
    it.invoke()
"""
CHILD = RUN_MODEL.replace("FILL", "zeros")  # the runtime itself, nothing of ours


def run_raw(script: str, runtime: str, data: bytes, path: Path) -> subprocess.CompletedProcess:
    """Run ``script`` (``CHILD``, ``WRITES_MODEL``) on ``data``, written to ``path``, in a
    runtime directly (no preflight), in a child process."""
    path.write_bytes(data)
    return subprocess.run([sys.executable, "-c", script, runtime, str(path)],
                          capture_output=True, text=True, timeout=120)


def raw_runtime_code(runtime: str, data: bytes, tmp_path: Path) -> int:
    """Exit code of running ``data`` in a runtime directly (no preflight), in a child."""
    return run_raw(CHILD, runtime, data, tmp_path / f"m_{runtime}.tflite").returncode


@pytest.mark.parametrize("factor", [0.5, 1.0, 1.05])
def test_softmax_refused_exactly_when_the_runtimes_abort(factor, tmp_path):
    data = softmax_with_input_scale(THRESHOLD * factor)
    runtimes = ["litert"] + (["tflm"] if tflm.available() else [])
    codes = {r: raw_runtime_code(r, data, tmp_path) for r in runtimes}
    if factor > 1:
        assert set(codes.values()) == {0}, codes
        preflight.check(data)
    else:
        assert all(c < 0 or c == 134 for c in codes.values()), codes  # SIGABRT
        with pytest.raises(ModelError, match="SOFTMAX"):
            preflight.check(data)


def test_softmax_abort_is_a_clean_not_run():
    """Verification's runnability says LiteRT could not run it, in one line."""
    data = softmax_with_input_scale(THRESHOLD / 4)
    litert = next(r for r in runnability(data, use_tflm=False) if r.runtime == "litert")
    assert not litert.runs and "SOFTMAX" in litert.why and "\n" not in litert.why


def test_cli_one_line_exit_2(tmp_path):
    src, dst = tmp_path / "softmax.tflite", tmp_path / "out.tflite"
    src.write_bytes(softmax_with_input_scale(THRESHOLD / 4))
    cli = "import sys; from tflite_reorder.cli import main; main(sys.argv[1:])"
    proc = subprocess.run([sys.executable, "-c", cli, "optimize", "--rewrite", str(src),
                           str(dst)], capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "SOFTMAX" in lines[0] and str(src) in lines[0], lines
    assert not dst.exists()


# ---------------------------------------------------------------------------------------------
# Aborts that depend on the input: int8 SOFTMAX over 512+ classes runs in a child process


def softmax_only(depth: int, scale: float) -> bytes:
    """One int8 SOFTMAX over ``depth`` classes (input scale ``scale``, output 1/256)."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    m = schema.ModelT()
    m.version, m.buffers = 3, [schema.BufferT()]
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.SOFTMAX
    code.version = 2
    m.operatorCodes = [code]
    sg = schema.SubGraphT()
    sg.tensors = []
    for name, s, z in (("logits", scale, 0), ("probs", 1 / 256, -128)):
        t = schema.TensorT()
        t.type, t.buffer, t.name = schema.TensorType.INT8, 0, name
        t.shape = np.array([1, depth], np.int32)
        t.quantization = schema.QuantizationParametersT()
        t.quantization.scale, t.quantization.zeroPoint = [s], [z]
        sg.tensors.append(t)
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, np.array([0], np.int32), np.array([1], np.int32)
    op.builtinOptionsType = schema.BuiltinOptions.SoftmaxOptions
    op.builtinOptions = schema.SoftmaxOptionsT()
    op.builtinOptions.beta = 1.0
    sg.operators, sg.inputs, sg.outputs = [op], np.array([0], np.int32), np.array([1], np.int32)
    m.subgraphs = [sg]
    return serialize_model(m)


def test_softmax_depth_risk_is_named_from_512_classes():
    assert preflight.abort_risks(softmax_only(511, 0.005)) == []
    (risk,) = preflight.abort_risks(softmax_only(512, 0.005))
    assert "SOFTMAX" in risk and "512" in risk
    preflight.check(softmax_only(512, 0.005))  # data-dependent: not refused


def test_softmax_abort_in_a_child_is_an_error_not_a_signal(tmp_path):
    import numpy as np

    from tflite_reorder.runtimes import run_litert_cases

    for depth, expect_abort in ((511, False), (512, True)):
        data = softmax_only(depth, 0.005)
        zeros = [np.zeros((1, depth), np.int8)]  # all logits equal: the sum of exps = depth
        assert raw_runtime_code("litert", data, tmp_path) == 0 or depth == 512
        runtimes = [("litert", lambda d=data, z=zeros: run_litert_cases(d, [z])[0][0])]
        if tflm.available():
            runtimes.append(("tflm", lambda d=data, z=zeros: tflm.run_tflm(d, z)))
        for _, run in runtimes:
            if expect_abort:
                with pytest.raises(RuntimeError, match="SIGABRT.*SOFTMAX"):
                    run()
            else:
                assert int(run()[0].min()) == -127  # 1/511 in steps of 1/256


def test_cli_refuses_a_model_no_runtime_survives(tmp_path):
    """4096 classes at a small scale: every input aborts; one line, exit 2, no signal."""
    src, dst = tmp_path / "softmax4096.tflite", tmp_path / "out.tflite"
    src.write_bytes(softmax_only(4096, 1e-4))
    cli = "import sys; from tflite_reorder.cli import main; main(sys.argv[1:])"
    proc = subprocess.run([sys.executable, "-c", cli, "optimize", str(src), str(dst)],
                          capture_output=True, text=True, timeout=600,
                          env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "SIGABRT" in lines[0] and str(src) in lines[0], lines
    assert not dst.exists()


# ---------------------------------------------------------------------------------------------
# Found by fuzzing --rewrite and --tile (which run TFLM on the input even without --verify)

CORPUS = ROOT / "tests" / "bad_inputs"


def test_unscaled_operand_of_an_int8_add_is_refused_before_tflm_aborts(tmp_path):
    """An INT32 constant wired into an int8 ADD: TFLM aborts, LiteRT refuses the types."""
    data = (CORPUS / "unscaled_add_operand.tflite").read_bytes()
    if tflm.available():
        code = raw_runtime_code("tflm", data, tmp_path)
        assert code < 0 or code == 134, code  # SIGABRT
    assert raw_runtime_code("litert", data, tmp_path) == 1  # a Python error, no signal
    with pytest.raises(ModelError, match=r"operator 3 \(ADD\) has a quantised output"):
        preflight.check(data)


def test_int8_add_operand_without_quantisation_is_refused():
    from tools import make_bad_inputs as mb

    m = mb._base()
    add = next(op for op in m.subgraphs[0].operators
               if op.opcodeIndex == mb._opcode(m, mb.OP.ADD))
    m.subgraphs[0].tensors[int(add.inputs[1])].quantization = None
    with pytest.raises(ModelError, match="has no quantization scale"):
        preflight.check(serialize_model(m))
    preflight.check(serialize_model(mb._base()))  # the model as converted passes


def test_tflm_is_not_run_on_an_uncalled_subgraph_with_operators(tmp_path):
    """TFLM prepares an uncalled subgraph's MEAN without planning it, reading memory that
    nothing allocated; LiteRT runs the model. The hazard makes TFLM "not run" (a
    TflmError), never a signal.

    Whether raw TFLM faults on it depends on what that memory holds, which moves with the
    child's command line: from a shell it segfaulted 12 runs of 12, from this test (a longer
    temporary path) it exited 0 three times of three. So the raw crash is not asserted."""
    data = (CORPUS / "uncalled_subgraph.tflite").read_bytes()
    assert raw_runtime_code("litert", data, tmp_path) == 0
    if tflm.available():
        with pytest.raises(tflm.TflmError, match="subgraph 1 has operators but nothing"):
            tflm.measure_arena(data)
    assert "subgraph 1" in preflight.tflm_hazard(data)
    base = (ROOT / "models" / "inplace_add_int8.tflite").read_bytes()
    assert preflight.tflm_hazard(base) == ""


def test_tflm_runs_what_litert_refuses_in_a_child(tmp_path):
    """A CONV_2D whose data input is 1-D: LiteRT refuses it, TFLM divides by zero. TFLM is
    run (and measured) in a child process: an error, never a signal here."""
    data = (CORPUS / "conv_1d_input.tflite").read_bytes()
    assert raw_runtime_code("litert", data, tmp_path) == 1
    if not tflm.available():
        return
    path = tmp_path / "float.tflite"
    path.write_bytes(data)
    child = ("import sys, numpy as np; from tflite_micro import runtime; "
             "it = runtime.Interpreter.from_bytes(open(sys.argv[1], 'rb').read(), "
             "arena_size=1 << 20); it.set_input(np.zeros((1, 8, 8, 16), np.float32), 0); "
             "it.invoke()")
    proc = subprocess.run([sys.executable, "-c", child, str(path)], capture_output=True,
                          timeout=120)
    assert proc.returncode < 0, proc.stderr  # SIGFPE
    from tflite_reorder.runtimes import structured_inputs

    with pytest.raises(tflm.TflmError, match="killed by SIGFPE: LiteRT refuses it"):
        tflm.run_tflm(data, structured_inputs(data))
    assert tflm.measure_arena(data).head == 8192  # planning alone survives


def test_tflm_runs_a_variable_subgraph_input_in_a_child():
    """Fuzz seed 2033, case 1291: a WHILE body's int32 loop input marked variable. TFLM
    runs the model as stored (in a child process, as for every variable subgraph input or
    output). It segfaulted on it with our offline plan, which placed subgraph 0's tensor
    1, the entry TFLM reads for that variable (``flatbuffer_io.unallocated_variables``):
    now no plan is written, and TFLM runs the output with the head we claim for it."""
    from tflite_reorder import api

    m = load_model(ROOT / "models" / "while_float32.tflite").model
    m.subgraphs[4].tensors[1].isVariable = True
    data = serialize_model(m)
    assert preflight.tflm_risks(data) == [
        "subgraph 4 tensor 1 is a variable tensor and a subgraph input or output (TFLM can "
        "crash on it)"]
    assert preflight.tflm_risks((ROOT / "models" / "while_float32.tflite").read_bytes()) == []
    r = api.optimize(data, verify=False, time_limit=0.2)
    assert r.plan is None
    assert any("TFLM looks up subgraph 4's variable tensor 1 at plan entry 1" in w
               for w in r.report.warnings)
    if not tflm.available():
        return
    assert tflm.measure_arena(data).head > 0  # in a child: runs
    assert tflm.measure_arena(r.data).head == r.report.tflm_greedy_head


def with_raw_plan(data: bytes, offsets: list[int]) -> bytes:
    """``data`` with ``offsets`` written as its offline plan as is (no check of ours)."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    m = load_model(data).model
    buf = schema.BufferT()
    words = [1, len(m.subgraphs), len(offsets), *offsets]
    buf.data = np.asarray(words, "<i4").view(np.uint8).copy()
    m.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name, entry.buffer = "OfflineMemoryAllocation", len(m.buffers) - 1
    m.metadata = [*(m.metadata or []), entry]
    return serialize_model(m)


def test_plan_leaving_a_called_subgraphs_variable_without_memory_is_refused(tmp_path):
    """The WHILE body's variable tensor 16 (``tools/make_variable_models.py``, pad 3) with
    its own plan entry -1 and entry 16 (subgraph 0's tensor 16) planned at 0: raw TFLM
    segfaults (``AllocateVariables`` reads entry 16 and skips the variable, the planner
    reads its own -1 and skips it too); the preflight refuses it in one line; our writer
    refuses to write it. The same plan with entry 16 at -1 passes."""
    from tflite_reorder.flatbuffer_io import set_offline_plan
    from tools.make_variable_models import while_with_variable

    base = while_with_variable(3)
    n = sum(len(sg.tensors) for sg in load_model(base).model.subgraphs)
    offsets = [-1] * n
    offsets[16] = 0
    bad = with_raw_plan(base, offsets)
    if tflm.available():
        path = tmp_path / "bad.tflite"
        path.write_bytes(bad)
        child = ("import sys; from tflite_micro import runtime; runtime.Interpreter"
                 ".from_bytes(open(sys.argv[1], 'rb').read(), arena_size=1 << 20)")
        code = subprocess.run([sys.executable, "-c", child, str(path)],
                              capture_output=True, timeout=120).returncode
        assert code in (-11, 139), code
    with pytest.raises(ModelError, match="leaves subgraph 4's variable tensor 16 without "
                                         "memory in TFLM"):
        preflight.check(bad)
    with pytest.raises(ValueError, match="variable tensor 16"):
        set_offline_plan(load_model(base).model, offsets)
    preflight.check(with_raw_plan(base, [-1] * n))


def _refused_where_litert_dies(tmp_path, name: str, mutate, signal: int, match: str) -> None:
    """``mutate`` applied to ``models/<name>.tflite`` kills raw LiteRT with ``signal``
    (SIGABRT 134, SIGSEGV 139); the preflight refuses it with ``match``, and the model as
    shipped passes."""
    raw = (Path(__file__).resolve().parent.parent / "models" / f"{name}.tflite").read_bytes()
    m = load_model(raw).model
    mutate(m)
    data = serialize_model(m)
    code = raw_runtime_code("litert", data, tmp_path)
    assert code < 0 or code == signal, code
    with pytest.raises(ModelError, match=match):
        preflight.check(data)
    preflight.check(raw)


def test_per_channel_add_operand_is_refused_where_litert_aborts(tmp_path):
    """An int8 ADD reading a per-channel-quantised tensor (fuzz seed 4245 case 153: a conv
    weight wired into the ADD of ``inplace_add_int8``): LiteRT reads one per-tensor scale,
    0 for such a tensor, and aborts; the preflight refuses it. The model as converted,
    whose ADD operands are per-tensor, passes."""
    def wire_weight(m) -> None:
        sg = m.subgraphs[0]
        add = sg.operators[3]
        int8 = sg.tensors[int(add.inputs[0])].type
        weight = next(t for t, x in enumerate(sg.tensors)
                      if x.type == int8 and x.quantization is not None
                      and x.quantization.scale is not None and len(x.quantization.scale) > 1)
        add.inputs = [int(add.inputs[0]), weight]

    _refused_where_litert_dies(tmp_path, "inplace_add_int8", wire_weight, 134,
                               r"operator 3 \(ADD\).*per-channel scales")


def test_strided_slice_without_strides_is_refused(tmp_path):
    """A STRIDED_SLICE whose strides index is -1 (fuzz seed 4246 case 6351): LiteRT
    segfaults in allocate_tensors; the preflight refuses it."""
    def drop_strides(m) -> None:
        op = next(o for o in m.subgraphs[0].operators
                  if m.operatorCodes[o.opcodeIndex].builtinCode == 45)  # STRIDED_SLICE
        op.inputs = [*(int(t) for t in op.inputs[:3]), -1]

    _refused_where_litert_dies(tmp_path, "multi_output_int8", drop_strides, 139,
                               r"\(STRIDED_SLICE\) needs 4 inputs")


WRITES_MODEL = RUN_MODEL.replace("FILL", "ones") + (
    'print("changed" if data != open(path, "rb").read() else "same")\n')


@pytest.mark.parametrize("runtime", ["litert", "tflm"])
def test_an_operator_writing_a_constant_is_refused_at_input(runtime, tmp_path):
    """``make_bad_inputs.constant_output``: the MEAN's output tensor has a buffer of data.
    Measured: LiteRT (reference kernels) and TFLM both load and run it without a word, and
    the kernel writes its output into the model's own bytes: the immutable ``bytes`` object
    handed to them has changed after the run (on a microcontroller those bytes are flash).
    ``graph.build_subgraph`` refuses it for every entry point (the preflight, which runs
    only before a runtime is called, would miss ``--no-verify``); ``test_robustness.py``
    checks the main command's one line, exit 2 and the untouched input."""
    if runtime == "tflm" and not tflm.available():
        pytest.skip("tflite-micro is not installed")
    path = tmp_path / "constant_output.tflite"
    proc = run_raw(WRITES_MODEL, runtime, (CORPUS / "constant_output.tflite").read_bytes(), path)
    assert proc.returncode == 0 and proc.stdout.split()[-1] == "changed", proc.stderr
    from tflite_reorder.graph import build_graph
    with pytest.raises(ModelError, match=r"operator 2 \(MEAN\) writes tensor 10 \(Mean\)"):
        build_graph(load_model(path).model)


@pytest.mark.parametrize("runtime", ["litert", "tflm"])
def test_neither_runtime_refuses_a_read_before_its_writer(runtime, tmp_path):
    """``make_bad_inputs.read_before_write`` (the two ADDs of ``inplace_add_int8``
    swapped): LiteRT and TFLM both run it in the stored order without a word (this test),
    the first ADD reading what its arena held. Measured once on all-ones input: LiteRT gave
    [2 -4 -14 -3 ...], TFLM [-6 33 -9 34 ...], the valid order [2 -4 -11 -1 ...]; the main
    command's verification failed on it (exit 1). It is bad input: ``graph`` refuses it
    (one line naming operator and tensor, exit 2) for every entry point, so ``peak_before``
    is always a valid order's peak."""
    if runtime == "tflm" and not tflm.available():
        pytest.skip("tflite-micro is not installed")
    path = tmp_path / "read_before_write.tflite"
    proc = run_raw(WRITES_MODEL, runtime, (CORPUS / "read_before_write.tflite").read_bytes(), path)
    assert proc.returncode == 0, proc.stderr


def test_softmax_of_a_per_channel_tensor_is_refused_where_litert_aborts(tmp_path):
    """Fuzz seed 5103 case 2127: ``inception_int8``'s SOFTMAX reading a per-channel
    quantised conv weight. Raw LiteRT aborts preparing it (TFLM ran it); ``check_litert``
    refuses it, so the in-process LiteRT of the rewrite search is never handed it."""
    raw = (ROOT / "models" / "inception_int8.tflite").read_bytes()
    m = load_model(raw).model
    sg = m.subgraphs[0]
    softmax = next(op for op in sg.operators if m.operatorCodes[op.opcodeIndex].builtinCode
                   == 25)
    weight = next(t for t, x in enumerate(sg.tensors)
                  if x.quantization is not None and x.quantization.scale is not None
                  and len(x.quantization.scale) > 1 and x.type == sg.tensors[
                      int(softmax.inputs[0])].type)
    softmax.inputs = [weight]
    data = serialize_model(m)
    code = raw_runtime_code("litert", data, tmp_path)
    assert code < 0 or code == 134, code
    with pytest.raises(ModelError, match=r"\(SOFTMAX\): its quantised input .* per-channel"):
        preflight.check_litert(data)
    preflight.check(data)  # TFLM runs it
    preflight.check_litert(raw)


@pytest.mark.parametrize("table", ["none", "add"])
def test_softmax_without_its_options_is_refused_where_the_runtimes_abort(table, tmp_path):
    """Fuzz seed 6001 case 2885 (a bit flip turned the SOFTMAX's options type into another
    table's) and seed 2030 case 22231 (ADD's options table spliced in): the runtimes read
    either as no SoftmaxOptions, their parser then leaves beta at 0, and the int8
    reference softmax aborts. (Until this case the check took "no options" as safe.)"""
    from ai_edge_litert import schema_py_generated as schema

    m = load_model(SOFTMAX_MODEL.read_bytes()).model
    op = next(o for o in m.subgraphs[0].operators
              if m.operatorCodes[o.opcodeIndex].builtinCode == 25)
    if table == "none":
        op.builtinOptions, op.builtinOptionsType = None, 0
    else:
        op.builtinOptionsType = schema.BuiltinOptions.AddOptions
        op.builtinOptions = schema.AddOptionsT()
    data = serialize_model(m)
    runtimes = ["litert"] + (["tflm"] if tflm.available() else [])
    codes = {r: raw_runtime_code(r, data, tmp_path) for r in runtimes}
    assert all(c < 0 or c == 134 for c in codes.values()), codes  # SIGABRT
    with pytest.raises(ModelError, match=r"beta 0 \(no SoftmaxOptions stored\)"):
        preflight.check(data)
    preflight.check(SOFTMAX_MODEL.read_bytes())


def add_with_output_scale(scale: float) -> bytes:
    """``inplace_add_int8`` with its last ADD's output scale set to ``scale``."""
    m = load_model((ROOT / "models" / "inplace_add_int8.tflite").read_bytes()).model
    sg = m.subgraphs[0]
    op = [o for o in sg.operators if m.operatorCodes[o.opcodeIndex].builtinCode == 0][-1]
    sg.tensors[int(op.outputs[0])].quantization.scale = [scale]
    return serialize_model(m)


def test_add_rescaling_refused_exactly_when_the_runtimes_abort(tmp_path):
    """Fuzz seed 6001 case 11820 (an ADD output scale of 1e-45): the output multiplier
    2·max(input scales) / (2^20 · output scale) must stay below 1. Just above the threshold
    both runtimes run, just below it both abort, and the preflight agrees each time."""
    m = load_model((ROOT / "models" / "inplace_add_int8.tflite").read_bytes()).model
    sg = m.subgraphs[0]
    op = [o for o in sg.operators if m.operatorCodes[o.opcodeIndex].builtinCode == 0][-1]
    a, b = (float(sg.tensors[int(t)].quantization.scale[0]) for t in op.inputs[:2])
    threshold = 2 * max(a, b) / (1 << 20)
    runtimes = ["litert"] + (["tflm"] if tflm.available() else [])
    for factor, dies in ((1.001, False), (0.999, True), (1e-38, True)):
        data = add_with_output_scale(threshold * factor)
        codes = {r: raw_runtime_code(r, data, tmp_path) for r in runtimes}
        if dies:
            assert all(c < 0 or c == 134 for c in codes.values()), (factor, codes)
            with pytest.raises(ModelError, match=r"\(ADD\).*not below 1"):
                preflight.check(data)
        else:
            assert set(codes.values()) == {0}, (factor, codes)
            preflight.check(data)
