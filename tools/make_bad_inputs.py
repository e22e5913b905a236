"""Build the bad-input corpus in ``tests/bad_inputs/`` and the synthetic stress models.

    python tools/make_bad_inputs.py            # (re)write tests/bad_inputs/
    python tools/make_bad_inputs.py --check    # exit 1 if the committed files are stale

Structurally bad models are real models from ``models/`` edited with the schema object API
(``ai_edge_litert.schema_py_generated``) and packed with ``flatbuffer_io.serialize_model``,
so each file has exactly one thing wrong. Deterministic: same bytes on every run.

``synthetic_chains`` (the 20,000-operator model) and ``wide_branches`` (an adversarially
wide graph) are built in memory by the tests and by ``tools/limits.py``; they are too big
to commit. Neither needs to run in TFLM: they exist to stress the scheduler and the writer.
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
from collections.abc import Callable
from pathlib import Path

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tflite_reorder.flatbuffer_io import load_model, serialize_model

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
OUT = ROOT / "tests" / "bad_inputs"
BASE = "inplace_add_int8"  # 6 ops, two parallel branches, 4.6 kB: small enough to commit
OP = schema.BuiltinOperator


def _base(name: str = BASE) -> schema.ModelT:
    return copy.deepcopy(load_model(MODELS / f"{name}.tflite").model)


def _ops(m: schema.ModelT, s: int = 0) -> list[schema.OperatorT]:
    return m.subgraphs[s].operators


def _opcode(m: schema.ModelT, builtin: int, custom: str | None = None) -> int:
    """Index of an operator code (added if missing)."""
    for i, c in enumerate(m.operatorCodes):
        if max(c.builtinCode, c.deprecatedBuiltinCode) == builtin and (
            custom is None or c.customCode in (custom, custom.encode())
        ):
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)
    code.customCode = custom
    code.version = 1
    m.operatorCodes.append(code)
    return len(m.operatorCodes) - 1


# ---------------------------------------------------------------------------------------------
# Corpus entries: file name -> bytes. The expected outcomes live in tests/test_robustness.py.


def wrong_identifier() -> bytes:
    data = bytearray((MODELS / f"{BASE}.tflite").read_bytes())
    data[4:8] = b"TFL2"
    return bytes(data)


def random_bytes() -> bytes:
    return random.Random(1).randbytes(4096)


def onnx_like() -> bytes:
    """An ONNX ModelProto: ir_version, producer, a graph with one Relu node (protobuf)."""

    def field(num: int, payload: bytes) -> bytes:
        return bytes([num << 3 | 2, len(payload)]) + payload

    node = field(1, b"x") + field(2, b"y") + field(4, b"Relu")
    graph = field(1, node) + field(2, b"g")
    return b"\x08\x07" + field(2, b"pytorch") + field(3, b"2.1") + field(7, graph) + \
        b"\x42\x04\x08\x11\x10\x00"  # opset_import {version: 17}


def saved_model_pb() -> bytes:
    """The start of a SavedModel's ``saved_model.pb`` (a protobuf, schema version 1)."""
    return b"\x08\x01\x12\x20\x0a\x1e\x0a\x0bserve\x12\x0fserving_default"


def json_text() -> bytes:
    return b'{"version": 3, "subgraphs": [{"operators": []}], "buffers": []}\n'


def tensor_index_out_of_range() -> bytes:
    m = _base()
    _ops(m)[3].inputs = np.array([8, 99], dtype=np.int32)  # ADD reads tensor 99 of 14
    return serialize_model(m)


def output_index_out_of_range() -> bytes:
    m = _base()
    m.subgraphs[0].outputs = np.array([-5], dtype=np.int32)
    return serialize_model(m)


def buffer_index_out_of_range() -> bytes:
    m = _base()
    m.subgraphs[0].tensors[9].buffer = len(m.buffers) + 40
    return serialize_model(m)


def opcode_index_out_of_range() -> bytes:
    m = _base()
    _ops(m)[2].opcodeIndex = len(m.operatorCodes) + 3
    return serialize_model(m)


def cycle() -> bytes:
    """ADD 3 reads the output of ADD 4, which reads ADD 3's: a two-operator cycle."""
    m = _base()
    ops = _ops(m)
    ops[3].inputs = np.array([8, 12], dtype=np.int32)  # 12 = output of op 4
    return serialize_model(m)


def produced_twice() -> bytes:
    m = _base()
    ops = _ops(m)
    ops[1].outputs = np.array(ops[0].outputs)  # both CONV_2Ds write tensor 8
    return serialize_model(m)


def constant_size_mismatch() -> bytes:
    """A convolution's bias buffer cut to 7 bytes: not the 16 int32 its shape [16] needs."""
    m = _base()
    sg = m.subgraphs[0]
    bias = sg.tensors[int(_ops(m)[0].inputs[2])]
    m.buffers[bias.buffer].data = np.asarray(m.buffers[bias.buffer].data[:7], dtype=np.uint8)
    return serialize_model(m)


def uninitialized_read() -> bytes:
    """The second ADD reads a new activation tensor that no operator writes."""
    m = _base()
    sg = m.subgraphs[0]
    ghost = copy.deepcopy(sg.tensors[int(_ops(m)[4].inputs[0])])
    ghost.name = "never_written"
    sg.tensors.append(ghost)
    _ops(m)[4].inputs = np.array([len(sg.tensors) - 1, int(_ops(m)[4].inputs[1])], np.int32)
    return serialize_model(m)


def constant_output() -> bytes:
    """The MEAN's output tensor given a buffer of data: an operator writes a constant (both
    runtimes write into the model's bytes)."""
    m = _base()
    mean = next(op for op in _ops(m) if m.operatorCodes[op.opcodeIndex].builtinCode == OP.MEAN)
    t = m.subgraphs[0].tensors[int(mean.outputs[0])]
    buf = schema.BufferT()
    buf.data = np.full(int(np.prod(t.shape)), 7, np.uint8)
    m.buffers.append(buf)
    t.buffer = len(m.buffers) - 1
    return serialize_model(m)


def read_before_write() -> bytes:
    """The two ADDs swapped: the first one stored reads the other's output (the runtimes
    run the stored order, so it reads whatever the arena held)."""
    m = _base()
    ops = _ops(m)
    ops[3], ops[4] = ops[4], ops[3]
    return serialize_model(m)


def reads_own_output() -> bytes:
    """The last operator (a CONV_2D) given its own output as an extra input: it reads memory
    before it writes it (fuzz seed 6001 case 9335 crashed the tiler on such a self-edge)."""
    m = _base()
    op = _ops(m)[-1]
    op.inputs = np.array([*op.inputs, op.outputs[0]], np.int32)
    return serialize_model(m)


def softmax_without_options() -> bytes:
    """An int8 SOFTMAX with its SoftmaxOptions dropped: the runtimes' parser leaves beta 0
    and the reference softmax ``abort()``s (fuzz seed 6001 case 2885)."""
    m = _base("inplace_softmax_int8")
    op = next(o for o in _ops(m) if m.operatorCodes[o.opcodeIndex].builtinCode == OP.SOFTMAX)
    op.builtinOptions, op.builtinOptionsType = None, 0
    return serialize_model(m)


def add_rescale_overflow() -> bytes:
    """An int8 ADD whose output scale is 1e-45: its rescaling multiplier is far above 1 and
    both runtimes ``abort()`` (fuzz seed 6001 case 11820)."""
    m = _base()
    op = [o for o in _ops(m) if m.operatorCodes[o.opcodeIndex].builtinCode == OP.ADD][-1]
    m.subgraphs[0].tensors[int(op.outputs[0])].quantization.scale = [1e-45]
    return serialize_model(m)


def recursive_control_flow() -> bytes:
    """A WHILE appended to subgraph 0 whose cond and body are subgraph 0: TFLM would recurse
    forever (so would any lifetime analysis)."""
    m = _base()
    sg = m.subgraphs[0]
    out = int(sg.outputs[0])
    looped = copy.deepcopy(sg.tensors[out])
    looped.name = "looped"
    sg.tensors.append(looped)
    opts = schema.WhileOptionsT()
    opts.condSubgraphIndex = opts.bodySubgraphIndex = 0
    op = schema.OperatorT()
    op.opcodeIndex = _opcode(m, OP.WHILE)
    op.inputs = np.array([out], dtype=np.int32)
    op.outputs = np.array([len(sg.tensors) - 1], dtype=np.int32)
    op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.WhileOptions, opts
    sg.operators.append(op)
    sg.outputs = np.array([len(sg.tensors) - 1], dtype=np.int32)
    return serialize_model(m)


def dynamic_shapes() -> bytes:
    """Every activation's ``shape_signature`` has a dynamic (-1) batch; stored shapes are 1."""
    m = _base()
    for t in m.subgraphs[0].tensors:
        if t.shape is not None and len(t.shape) == 4 and not _constant(m, t):
            t.shapeSignature = np.array([-1, *list(t.shape)[1:]], dtype=np.int32)
    return serialize_model(m)


def dynamic_stored_dim() -> bytes:
    """The input stored as [-1, 8, 8, 16]: its size is unknown until run time."""
    m = _base()
    t = m.subgraphs[0].tensors[int(m.subgraphs[0].inputs[0])]
    t.shape = np.array([-1, 8, 8, 16], dtype=np.int32)
    t.shapeSignature = np.array([-1, 8, 8, 16], dtype=np.int32)
    return serialize_model(m)


def zero_sized_tensor() -> bytes:
    """An extra MEAN output of 0 elements ([1, 0, 1, 16]) beside the real graph."""
    m = _base()
    sg = m.subgraphs[0]
    ops = _ops(m)
    mean = next(op for op in ops if m.operatorCodes[op.opcodeIndex].builtinCode == OP.MEAN)
    zero = copy.deepcopy(sg.tensors[int(mean.inputs[0])])
    zero.name = "zero_sized"
    zero.shape = np.array([1, 0, 8, 16], dtype=np.int32)
    zero.shapeSignature = None
    sg.tensors.append(zero)
    relu = schema.OperatorT()
    relu.opcodeIndex = _opcode(m, OP.RELU)
    relu.inputs = np.array([len(sg.tensors) - 1], dtype=np.int32)
    out = copy.deepcopy(zero)
    out.name = "zero_sized_relu"
    sg.tensors.append(out)
    relu.outputs = np.array([len(sg.tensors) - 1], dtype=np.int32)
    ops.insert(2, relu)
    sg.inputs = np.array([*list(sg.inputs), len(sg.tensors) - 2], dtype=np.int32)
    sg.outputs = np.array([*list(sg.outputs), len(sg.tensors) - 1], dtype=np.int32)
    return serialize_model(m)


def custom_and_unknown_ops() -> bytes:
    """The MEAN becomes a custom op and one CONV_2D an unknown builtin (code 250)."""
    m = _base()
    ops = _ops(m)
    codes = m.operatorCodes
    mean = next(op for op in ops if codes[op.opcodeIndex].builtinCode == OP.MEAN)
    mean.opcodeIndex = _opcode(m, OP.CUSTOM, "MyVendorMean")
    mean.builtinOptionsType, mean.builtinOptions = 0, None
    mean.customOptions = np.frombuffer(b"\x01\x02\x03\x04", dtype=np.uint8).copy()
    ops[0].opcodeIndex = _opcode(m, 250)
    ops[0].builtinOptionsType, ops[0].builtinOptions = 0, None
    return serialize_model(m)


def foreign_options() -> bytes:
    """Both ADDs carry MulOptions with a fused RELU (another op's table, as spliced opcodes
    leave it): the runtimes' parsers read no options for them, hence no RELU."""
    m = _base()
    for op in _ops(m):
        if op.opcodeIndex == _opcode(m, OP.ADD):
            opts = schema.MulOptionsT()
            opts.fusedActivationFunction = schema.ActivationFunctionType.RELU
            op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.MulOptions, opts
    return serialize_model(m)


def if_without_options() -> bytes:
    """Two nested IFs, the outer one stored without IfOptions: the runtimes' parsers then
    call subgraph 0 (zeroed indices) for both branches, from subgraph 0."""
    m = load_model(nested_ifs(2)).model
    _ops(m)[0].builtinOptionsType, _ops(m)[0].builtinOptions = schema.BuiltinOptions.NONE, None
    return serialize_model(m)


def uncalled_subgraph() -> bytes:
    """A copy of subgraph 0 appended as subgraph 1, which nothing calls: TFLM prepares its
    MEAN without planning it and segfaults (LiteRT runs the model)."""
    m = _base()
    m.subgraphs.append(copy.deepcopy(m.subgraphs[0]))
    return serialize_model(m)


def unscaled_add_operand() -> bytes:
    """The first int8 ADD adds an INT32 constant [16] (no quantisation) to its second
    operand: TFLM's int8 kernel derives a multiplier from a scale of 0 and aborts."""
    m = _base()
    t = schema.TensorT()
    t.name, t.type, t.shape = "int32_operand", schema.TensorType.INT32, np.array([16], np.int32)
    buf = schema.BufferT()
    buf.data = np.frombuffer(np.arange(16, dtype="<i4").tobytes(), np.uint8).copy()
    m.buffers.append(buf)
    t.buffer = len(m.buffers) - 1
    m.subgraphs[0].tensors.append(t)
    add = next(op for op in _ops(m) if op.opcodeIndex == _opcode(m, OP.ADD))
    add.inputs = np.array([len(m.subgraphs[0].tensors) - 1, int(add.inputs[1])], np.int32)
    return serialize_model(m)


def conv_1d_input() -> bytes:
    """The first CONV_2D's inputs rotated: its data input is the [16] bias, the model's
    input its bias. LiteRT refuses it; TFLM prepares it and divides by zero in Invoke."""
    m = _base("inplace_squeeze_expand_dims_float32")
    op = _ops(m)[0]
    x, w, b = (int(i) for i in op.inputs)
    op.inputs = np.array([b, w, x], np.int32)
    return serialize_model(m)


def unwritten_while_cond() -> bytes:
    """The WHILE condition subgraph of ``while_float32`` without its LESS: its output is
    never written, and TFLM loops for ever on the arena's garbage."""
    m = _base("while_float32")
    m.subgraphs[3].operators = []
    return serialize_model(m)


def endless_while(trips: int = 2**31 - 1) -> bytes:
    """A WHILE whose trip count is a constant of its condition subgraph, ``trips`` (a junk
    constant): ``i = 0; while i < trips: i += 1; y = relu(x)``. A legal model that LiteRT
    and TFLM both run, for minutes to hours; every run of it is cut at the time bound
    (``--verify-timeout``). Subgraphs: main (WHILE), cond (LESS), body (ADD, RELU)."""
    m = schema.ModelT()
    m.version, m.description = 3, "tflite-reorder endless WHILE"
    m.operatorCodes, m.buffers, m.subgraphs = [], [schema.BufferT()], []
    i32, f32 = schema.TensorType.INT32, schema.TensorType.FLOAT32

    def subgraph(name, tensors, ops, inputs, outputs) -> None:
        sg = schema.SubGraphT()
        sg.name, sg.tensors, sg.operators = name, [], []
        for tname, shape, dtype, value in tensors:
            t = schema.TensorT()
            t.name, t.shape, t.type, t.buffer = tname, np.array(shape, np.int32), dtype, 0
            if value is not None:
                buf = schema.BufferT()
                buf.data = np.frombuffer(np.int32(value).tobytes(), np.uint8).copy()
                m.buffers.append(buf)
                t.buffer = len(m.buffers) - 1
            sg.tensors.append(t)
        for code, ins, outs, options in ops:
            op = schema.OperatorT()
            op.opcodeIndex, op.inputs, op.outputs = (_opcode(m, code), np.array(ins, np.int32),
                                                     np.array(outs, np.int32))
            if options is not None:
                op.builtinOptionsType, op.builtinOptions = options
            sg.operators.append(op)
        sg.inputs, sg.outputs = np.array(inputs, np.int32), np.array(outputs, np.int32)
        m.subgraphs.append(sg)

    loop = schema.WhileOptionsT()
    loop.condSubgraphIndex, loop.bodySubgraphIndex = 1, 2
    subgraph("main", [("x", [1, 4], f32, None), ("i0", [], i32, 0), ("i", [], i32, None),
                      ("y", [1, 4], f32, None)],
             [(OP.WHILE, [1, 0], [2, 3], (schema.BuiltinOptions.WhileOptions, loop))],
             [0], [3])
    subgraph("cond", [("i", [], i32, None), ("x", [1, 4], f32, None),
                      ("trips", [], i32, trips), ("go", [], schema.TensorType.BOOL, None)],
             [(OP.LESS, [0, 2], [3], None)], [0, 1], [3])
    subgraph("body", [("i", [], i32, None), ("x", [1, 4], f32, None), ("one", [], i32, 1),
                      ("i1", [], i32, None), ("y", [1, 4], f32, None)],
             [(OP.ADD, [0, 2], [3], None), (OP.RELU, [1], [4], None)], [0, 1], [3, 4])
    return serialize_model(m)


def huge_input() -> bytes:
    """The model input stored as [1, 4100, 4100, 16] int8 (257 MiB, of which the error
    measurement would make 28 sets): the runtimes are not run on it."""
    m = _base()
    sg = m.subgraphs[0]
    sg.tensors[int(sg.inputs[0])].shape = np.array([1, 4100, 4100, 16], np.int32)
    return serialize_model(m)


def _constant(m: schema.ModelT, t: schema.TensorT) -> bool:
    buf = m.buffers[t.buffer] if 0 < t.buffer < len(m.buffers) else None
    return buf is not None and buf.data is not None and len(buf.data) > 0


def _quantised_tensor(m: schema.ModelT) -> schema.TensorT:
    return next(t for t in m.subgraphs[0].tensors
                if t.quantization is not None and t.quantization.scale is not None
                and len(t.quantization.scale))


def quant_scale(value: float) -> Callable[[], bytes]:
    """An activation's quantisation scale set to ``value`` (0 or NaN: the runtimes abort)."""
    def make() -> bytes:
        m = _base()
        t = _quantised_tensor(m)
        t.quantization.scale = np.full(len(t.quantization.scale), value, dtype=np.float32)
        return serialize_model(m)
    return make


def offline_plan_in_buffer0() -> bytes:
    """An ``OfflineMemoryAllocation`` metadata entry naming buffer 0 (TFLM segfaults)."""
    m = _base()
    entry = schema.MetadataT()
    entry.name, entry.buffer = "OfflineMemoryAllocation", 0
    m.metadata = [*(m.metadata or []), entry]
    return serialize_model(m)


def plan_shares_weight() -> bytes:
    """An offline plan whose metadata buffer is a convolution's weight buffer."""
    m = _base()
    sg = m.subgraphs[0]
    weight = sg.tensors[int(_ops(m)[0].inputs[1])]
    entry = schema.MetadataT()
    entry.name, entry.buffer = "OfflineMemoryAllocation", weight.buffer
    m.metadata = [*(m.metadata or []), entry]
    return serialize_model(m)


def large_custom_options() -> bytes:
    """The MEAN becomes a custom op whose 1,000 option bytes live outside the flatbuffer
    (``large_custom_options_offset/size``)."""
    m = _base()
    mean = next(op for op in _ops(m) if m.operatorCodes[op.opcodeIndex].builtinCode == OP.MEAN)
    mean.opcodeIndex = _opcode(m, OP.CUSTOM, "MyLargeOptions")
    mean.builtinOptionsType, mean.builtinOptions = 0, None
    mean.largeCustomOptions = np.arange(1000, dtype=np.uint32).astype(np.uint8)
    return serialize_model(m)


def junk_constant(shape: list[int]) -> Callable[[], bytes]:
    """An unused INT32 constant of a nonsensical stored shape (``[-1, -1]``, ``[-2, -3]``)."""
    def make() -> bytes:
        m = _base()
        t = schema.TensorT()
        t.name, t.type, t.shape = "junk", schema.TensorType.INT32, np.array(shape, np.int32)
        buf = schema.BufferT()
        buf.data = np.frombuffer(np.arange(4, dtype="<i4").tobytes(), np.uint8).copy()
        m.buffers.append(buf)
        t.buffer = len(m.buffers) - 1
        m.subgraphs[0].tensors.append(t)
        return serialize_model(m)
    return make


def huge_stored_shape() -> bytes:
    """MEAN's output stored as [1, 2^31 - 1, 1, 16] where the kernel makes [1, 1, 1, 16]
    (fuzz seed 2030 case 14044): shape inference repairs it, and the kernels' scratch must
    be sized from the repaired shape, not from 2^31 rows (a 137 GB offline-plan offset)."""
    m = _base()
    mean = next(op for op in _ops(m) if m.operatorCodes[op.opcodeIndex].builtinCode == OP.MEAN)
    m.subgraphs[0].tensors[int(mean.outputs[0])].shape = np.array([1, 2**31 - 1, 1, 16],
                                                                    np.int32)
    return serialize_model(m)


def fill_int64(dims: list[int]) -> Callable[[], bytes]:
    """A FILL whose INT64 dims constant holds values beyond int32 (an extra output)."""
    def make() -> bytes:
        m = _base()
        sg = m.subgraphs[0]

        def const(name: str, arr: np.ndarray, dtype: int, shape: list[int]) -> int:
            t = schema.TensorT()
            t.name, t.type, t.shape = name, dtype, np.array(shape, np.int32)
            buf = schema.BufferT()
            buf.data = np.frombuffer(arr.tobytes(), np.uint8).copy()
            m.buffers.append(buf)
            t.buffer = len(m.buffers) - 1
            sg.tensors.append(t)
            return len(sg.tensors) - 1

        d = const("dims", np.array(dims, "<i8"), schema.TensorType.INT64, [len(dims)])
        v = const("value", np.array([1.0], "<f4"), schema.TensorType.FLOAT32, [])
        out = schema.TensorT()
        out.name, out.type, out.shape, out.buffer = "filled", schema.TensorType.FLOAT32, \
            np.array([1, 1], np.int32), 0
        sg.tensors.append(out)
        op = schema.OperatorT()
        op.opcodeIndex = _opcode(m, OP.FILL)
        op.inputs, op.outputs = np.array([d, v], np.int32), np.array([len(sg.tensors) - 1],
                                                                     np.int32)
        sg.operators.append(op)
        sg.outputs = np.array([*list(sg.outputs), len(sg.tensors) - 1], np.int32)
        return serialize_model(m)
    return make


def shared_tensor_table(count: int = 1_000_000) -> bytes:
    """A valid header and one subgraph whose tensors vector repeats one Tensor table
    ``count`` times: 4 bytes per entry in the file, one Python object each if unpacked."""
    b = flatbuffers.Builder(1024)
    name = b.CreateString("t")
    schema.TensorStart(b)
    schema.TensorAddName(b, name)
    tensor = schema.TensorEnd(b)
    b.StartVector(4, count, 4)
    for _ in range(count):
        b.PrependUOffsetTRelative(tensor)
    tensors = b.EndVector()
    schema.SubGraphStart(b)
    schema.SubGraphAddTensors(b, tensors)
    sg = schema.SubGraphEnd(b)
    schema.ModelStartSubgraphsVector(b, 1)
    b.PrependUOffsetTRelative(sg)
    subgraphs = b.EndVector()
    schema.ModelStart(b)
    schema.ModelAddVersion(b, 3)
    schema.ModelAddSubgraphs(b, subgraphs)
    b.Finish(schema.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def shared_weight(refs: int = 1_000, nbytes: int = 1 << 20) -> bytes:
    """``refs`` constant tensors, each with its own buffer entry, all holding one
    ``nbytes`` data vector (written once: the file stays about ``nbytes`` long)."""
    m = _base()
    data = np.zeros(nbytes, dtype=np.uint8)
    data[::4096] = 7
    sg = m.subgraphs[0]
    for i in range(refs):
        buf = schema.BufferT()
        buf.data = data  # one array: the writer stores it once
        m.buffers.append(buf)
        t = schema.TensorT()
        t.name, t.type, t.shape = f"w{i}", schema.TensorType.INT8, np.array([nbytes], np.int32)
        t.buffer = len(m.buffers) - 1
        sg.tensors.append(t)
    return serialize_model(m)


CORPUS: dict[str, Callable[[], bytes]] = {
    "empty.tflite": lambda: b"",
    "random.tflite": random_bytes,
    "wrong_identifier.tflite": wrong_identifier,
    "model.onnx": onnx_like,
    "saved_model/saved_model.pb": saved_model_pb,
    "saved_model/variables/variables.index": lambda: b"\x00" * 16,
    "model.json": json_text,
    "tensor_index_out_of_range.tflite": tensor_index_out_of_range,
    "output_index_out_of_range.tflite": output_index_out_of_range,
    "buffer_index_out_of_range.tflite": buffer_index_out_of_range,
    "opcode_index_out_of_range.tflite": opcode_index_out_of_range,
    "cycle.tflite": cycle,
    "produced_twice.tflite": produced_twice,
    "recursive_control_flow.tflite": recursive_control_flow,
    "constant_size_mismatch.tflite": constant_size_mismatch,
    "uninitialized_read.tflite": uninitialized_read,
    "constant_output.tflite": constant_output,
    "read_before_write.tflite": read_before_write,
    "reads_own_output.tflite": reads_own_output,
    "softmax_without_options.tflite": softmax_without_options,
    "add_rescale_overflow.tflite": add_rescale_overflow,
    "dynamic_shapes.tflite": dynamic_shapes,
    "dynamic_stored_dim.tflite": dynamic_stored_dim,
    "zero_sized_tensor.tflite": zero_sized_tensor,
    "custom_and_unknown_ops.tflite": custom_and_unknown_ops,
    "quant_scale_zero.tflite": quant_scale(0.0),
    "quant_scale_nan.tflite": quant_scale(float("nan")),
    "offline_plan_buffer0.tflite": offline_plan_in_buffer0,
    "plan_shares_weight.tflite": plan_shares_weight,
    "large_custom_options.tflite": large_custom_options,
    "junk_constant_m1m1.tflite": junk_constant([-1, -1]),
    "junk_constant_m2m3.tflite": junk_constant([-2, -3]),
    "fill_int64_huge.tflite": fill_int64([2**33, 3]),
    "fill_int64_negative.tflite": fill_int64([-5, 2**40]),
    "nested_if_shared30.tflite": lambda: nested_ifs(30, shared=True),
    "huge_stored_shape.tflite": huge_stored_shape,
    "foreign_options.tflite": foreign_options,
    "if_without_options.tflite": if_without_options,
    "uncalled_subgraph.tflite": uncalled_subgraph,
    "unscaled_add_operand.tflite": unscaled_add_operand,
    "conv_1d_input.tflite": conv_1d_input,
    "unwritten_while_cond.tflite": unwritten_while_cond,
    "huge_input.tflite": huge_input,
    "endless_while.tflite": endless_while,
}


# ---------------------------------------------------------------------------------------------
# Synthetic stress models (built in memory)


class _Builder:
    """A single-subgraph float32 model assembled with the object API."""

    def __init__(self) -> None:
        self.m = schema.ModelT()
        self.m.version = 3
        self.m.description = "tflite-reorder synthetic stress model"
        self.m.operatorCodes = []
        empty = schema.BufferT()
        self.m.buffers = [empty]
        self.sg = schema.SubGraphT()
        self.sg.name = "main"
        self.sg.tensors, self.sg.operators = [], []
        self.m.subgraphs = [self.sg]

    def tensor(self, shape: list[int], name: str, data: bytes | None = None,
               dtype: int = schema.TensorType.FLOAT32) -> int:
        t = schema.TensorT()
        t.shape = np.array(shape, dtype=np.int32)
        t.type = dtype
        t.name = name
        t.buffer = 0
        if data is not None:
            buf = schema.BufferT()
            buf.data = np.frombuffer(data, dtype=np.uint8).copy()
            self.m.buffers.append(buf)
            t.buffer = len(self.m.buffers) - 1
        self.sg.tensors.append(t)
        return len(self.sg.tensors) - 1

    def op(self, builtin: int, inputs: list[int], outputs: list[int],
           options_type: int = 0, options=None) -> None:
        o = schema.OperatorT()
        o.opcodeIndex = _opcode(self.m, builtin)
        o.inputs = np.array(inputs, dtype=np.int32)
        o.outputs = np.array(outputs, dtype=np.int32)
        o.builtinOptionsType, o.builtinOptions = options_type, options
        self.sg.operators.append(o)

    def concat(self, inputs: list[int], output: int) -> None:
        opts = schema.ConcatenationOptionsT()
        opts.axis = 1
        self.op(OP.CONCATENATION, inputs, [output], schema.BuiltinOptions.ConcatenationOptions,
                opts)

    def mean(self, x: int, axis: int, output: int) -> None:
        opts = schema.ReducerOptionsT()
        opts.keepDims = True
        self.op(OP.MEAN, [x, axis], [output], schema.BuiltinOptions.ReducerOptions, opts)

    def add(self, a: int, b: int, output: int) -> None:
        self.op(OP.ADD, [a, b], [output], schema.BuiltinOptions.AddOptions, schema.AddOptionsT())

    def chain_step(self, i: int, x: int, output: int) -> None:
        """Step ``i`` of the stress chains: RELU on odd steps, ADD(x, x) on even ones."""
        if i % 2:
            self.op(OP.RELU, [x], [output])
        else:
            self.add(x, x, output)

    def add_tree(self, ends: list[int], shape: list[int]) -> list[int]:
        """A balanced tree of ADDs joining ``ends`` (tensors of ``shape``): its root."""
        level = 0
        while len(ends) > 1:
            nxt = []
            for i in range(0, len(ends) - 1, 2):
                t = self.tensor(shape, f"sum{level}_{i // 2}")
                self.add(ends[i], ends[i + 1], t)
                nxt.append(t)
            ends = nxt + ends[len(ends) // 2 * 2:]
            level += 1
        return ends

    def finish(self, inputs: list[int], outputs: list[int]) -> bytes:
        self.sg.inputs = np.array(inputs, dtype=np.int32)
        self.sg.outputs = np.array(outputs, dtype=np.int32)
        return serialize_model(self.m)


def _widened_branches(count: int, width: int, seed: int, wide_name: str, mean_name: str,
                      body: Callable[[_Builder, int, int], int] | None = None,
                      ) -> tuple[_Builder, int, list[int]]:
    """A builder with the input [1, width] and ``count`` branches of it: each widens it
    to [1, width * k] (a CONCATENATION of k random copies), runs ``body`` on that (which
    returns its last tensor) and ends in a MEAN to [1, 1]. Returns the builder, the input
    and the branch ends."""
    rng = random.Random(seed)
    b = _Builder()
    x = b.tensor([1, width], "input")
    axis = b.tensor([1], "axis", np.array([1], dtype="<i4").tobytes(), schema.TensorType.INT32)
    ends = []
    for c in range(count):
        k = rng.randint(8, 64)
        last = b.tensor([1, width * k], wide_name.format(c))
        b.concat([x] * k, last)
        if body is not None:
            last = body(b, c, last)
        ends.append(b.tensor([1, 1], mean_name.format(c)))
        b.mean(last, axis, ends[-1])
    return b, x, ends


def synthetic_chains(chains: int = 100, length: int = 200, width: int = 4, seed: int = 0) -> bytes:
    """``chains`` parallel chains of ``length`` ops from one input, joined by one
    CONCATENATION: ``chains * length + 1`` operators on small float32 tensors.

    Chain c widens the input to [1, width * k_c] (a CONCATENATION of k_c copies, k_c random),
    alternates ADD(x, x) and RELU at that width and ends in a MEAN to [1, 1]. The order of
    the chains decides the peak (each finished chain leaves 16 bytes behind while a wide one
    runs), so the search has real work to do and the time limit is what stops it.
    """
    def body(b: _Builder, c: int, wide: int) -> int:
        prev = wide
        for i in range(1, length - 1):
            t = b.tensor(list(b.sg.tensors[wide].shape), f"c{c}_{i}")
            b.chain_step(i, prev, t)
            prev = t
        return prev

    b, x, ends = _widened_branches(chains, width, seed, "c{}_0", "c{}_mean", body)
    y = b.tensor([1, chains], "output")
    b.concat(ends, y)
    return b.finish([x], [y])


def wide_branches(branches: int = 200, width: int = 4, seed: int = 0, join: str = "concat",
                  ) -> bytes:
    """``branches`` two-op branches joined by one CONCATENATION (2 * branches + 1 ops) or,
    with ``join="add"``, by a balanced tree of ADDs (3 * branches - 1 ops).

    Branch i widens the input to a transient of its own size (CONCATENATION of k_i copies)
    and reduces it to [1, 1] (MEAN): the classic case where the best order (big transients
    first) is easy to find but the search cannot prove it optimal for hundreds of branches
    without visiting many sets of finished branches.
    """
    b, x, ends = _widened_branches(branches, width, seed, "b{}_wide", "b{}_mean")
    if join == "add":
        return b.finish([x], b.add_tree(ends, [1, 1]))
    y = b.tensor([1, branches], "output")
    b.concat(ends, y)
    return b.finish([x], [y])


def long_chain(length: int = 10_000, width: int = 4) -> bytes:
    """One chain of ``length`` ops (ADD(x, x) and RELU alternating) on [1, width] float32."""
    b = _Builder()
    prev = x = b.tensor([1, width], "input")
    for i in range(length):
        t = b.tensor([1, width], f"t{i}")
        b.chain_step(i, prev, t)
        prev = t
    return b.finish([x], [prev])


def fan_out(width: int = 5_000, join: str = "concat", size: int = 4) -> bytes:
    """``width`` RELUs of one input, joined by one CONCATENATION or a balanced ADD tree."""
    b = _Builder()
    x = b.tensor([1, size], "input")
    ends = []
    for i in range(width):
        ends.append(b.tensor([1, size], f"r{i}"))
        b.op(OP.RELU, [x], [ends[-1]])
    if join == "add":
        return b.finish([x], b.add_tree(ends, [1, size]))
    y = b.tensor([1, size * width], "output")
    b.concat(ends, y)
    return b.finish([x], [y])


def dangling_tensors(count: int = 100_000, ops: int = 10) -> bytes:
    """A short RELU chain plus ``count`` activation tensors no operator touches (TFLM
    gives each the lifetime [-1, -1])."""
    b = _Builder()
    prev = x = b.tensor([1, 4], "input")
    for i in range(ops):
        t = b.tensor([1, 4], f"t{i}")
        b.op(OP.RELU, [prev], [t])
        prev = t
    for i in range(count):
        b.tensor([1, 4 + i % 7], f"dangling{i}")
    return b.finish([x], [prev])


def nested_ifs(depth: int = 1_500, shared: bool = False) -> bytes:
    """IFs nested ``depth`` deep: subgraph k's IF calls subgraph k + 1 as its then-branch
    and, with ``shared``, as its else-branch too (2^depth paths through one chain of
    subgraphs), otherwise a one-RELU leaf subgraph shared by every level.

    Every subgraph takes (cond: BOOL [], x: FLOAT32 [1, 4]) and returns y [1, 4]; the
    innermost and the leaf apply RELU. LiteRT and TFLM both run it.
    """
    m = schema.ModelT()
    m.version, m.description = 3, "tflite-reorder nested IF stress model"
    m.operatorCodes, m.buffers, m.subgraphs = [], [schema.BufferT()], []
    leaf = depth + 1
    for k in range(depth + 2):
        sg = schema.SubGraphT()
        sg.name = f"level{k}" if k < leaf else "leaf"
        sg.tensors, sg.operators = [], []
        for name, shape, dtype in (("cond", [], schema.TensorType.BOOL),
                                   ("x", [1, 4], schema.TensorType.FLOAT32),
                                   ("y", [1, 4], schema.TensorType.FLOAT32)):
            t = schema.TensorT()
            t.name, t.shape, t.type, t.buffer = name, np.array(shape, np.int32), dtype, 0
            sg.tensors.append(t)
        op = schema.OperatorT()
        if k < depth:
            opts = schema.IfOptionsT()
            opts.thenSubgraphIndex = k + 1
            opts.elseSubgraphIndex = k + 1 if shared else leaf
            op.opcodeIndex = _opcode(m, OP.IF)
            op.inputs = np.array([0, 0, 1], np.int32)
            op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.IfOptions, opts
        else:
            op.opcodeIndex = _opcode(m, OP.RELU)
            op.inputs = np.array([1], np.int32)
        op.outputs = np.array([2], np.int32)
        sg.operators.append(op)
        sg.inputs, sg.outputs = np.array([0, 1], np.int32), np.array([2], np.int32)
        m.subgraphs.append(sg)
    return serialize_model(m)


# ---------------------------------------------------------------------------------------------


def write_corpus(out: Path = OUT) -> dict[str, bytes]:
    files = {name: make() for name, make in CORPUS.items()}
    for name, data in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed files")
    args = ap.parse_args(argv)
    if args.check:
        stale = [n for n, make in CORPUS.items()
                 if not (OUT / n).is_file() or (OUT / n).read_bytes() != make()]
        for n in stale:
            print(f"stale: tests/bad_inputs/{n}")
        return 1 if stale else 0
    files = write_corpus()
    total = sum(len(d) for d in files.values())
    for name, data in files.items():
        print(f"{len(data):8d}  tests/bad_inputs/{name}")
    print(f"{total:8d}  total")
    return 0


if __name__ == "__main__":
    sys.exit(main())
