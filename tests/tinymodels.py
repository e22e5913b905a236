"""Small float32 models built without TensorFlow, for unit tests of the reader, graph and
memory model: a few elementwise ops (RELU, ADD, CONCATENATION) on named tensors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tflite_reorder.flatbuffer_io import parse_model, serialize_model
from tflite_reorder.rewrites.edit import Editor

Shape = tuple[int, ...]


def model_t(
    inputs: dict[str, Shape], ops: list[tuple[str, list[str], str, Shape]], outputs: list[str],
    constants: dict[str, np.ndarray] | None = None,
) -> schema.ModelT:
    """One subgraph: ``ops`` are (opcode, input names, output name, output shape)."""
    m = schema.ModelT()
    m.version, m.buffers, m.operatorCodes = 3, [schema.BufferT()], []
    sg = schema.SubGraphT()
    sg.tensors, sg.operators = [], []
    m.subgraphs = [sg]
    names: dict[str, int] = {}
    for name, shape in inputs.items():
        t = schema.TensorT()
        t.name, t.buffer, t.shape = name, 0, np.array(shape, np.int32)
        t.type = schema.TensorType.FLOAT32
        sg.tensors.append(t)
        names[name] = len(sg.tensors) - 1
    ed = Editor(m, 0)
    for name, value in (constants or {}).items():
        names[name] = ed.new_constant(np.asarray(value, np.float32), 0, name)
    for opcode, ins, out, shape in ops:
        names[out] = ed.new_tensor(0, shape, out)
        sg.operators.append(_op(ed, opcode, [names[i] for i in ins], names[out]))
    sg.inputs = np.array([names[n] for n in inputs], np.int32)
    sg.outputs = np.array([names[n] for n in outputs], np.int32)
    return m


def model_bytes(*args, **kwargs) -> bytes:
    """``model_t`` serialised."""
    return serialize_model(model_t(*args, **kwargs))


def _op(ed: Editor, opcode: str, ins: list[int], out: int) -> schema.OperatorT:
    if opcode == "ADD":
        return ed.add_op("ADD", ins, out, schema.ActivationFunctionType.NONE)
    if opcode == "CONCATENATION":
        return ed.concat_op(ins, out, -1)
    return ed.new_op(opcode, ins, [out], schema.BuiltinOptions.NONE, None)


SHAPE = (1, 4, 4, 4)  # 256 bytes of float32: a multiple of 16, so sizes add up by hand


def diamond() -> schema.ModelT:
    """x -> RELU a, x -> RELU b, ADD(a, b) -> c (the output)."""
    return model_t({"x": SHAPE}, [("RELU", ["x"], "a", SHAPE), ("RELU", ["x"], "b", SHAPE),
                                  ("ADD", ["a", "b"], "c", SHAPE)], ["c"])


def chain(n: int = 3) -> schema.ModelT:
    """x -> RELU t1 -> RELU t2 … -> t_n (the output)."""
    names = ["x", *(f"t{i}" for i in range(1, n + 1))]
    ops = [("RELU", [a], b, SHAPE) for a, b in zip(names, names[1:], strict=False)]
    return model_t({"x": SHAPE}, ops, [names[-1]])


MODELS = Path(__file__).resolve().parent.parent / "models"


def rare_fields_model() -> bytes:
    """A shipped model with the fields the compiled reader and writer hand to the generated
    code or meet rarely: sparsity, variant tensors, builtin_options_2, custom options,
    mutating inputs, intermediates, a shape signature, a debug metadata index."""
    model = parse_model((MODELS / "add_tree_int8.tflite").read_bytes()).model
    sg = model.subgraphs[0]
    t0, t1 = sg.tensors[0], sg.tensors[1]
    t0.shapeSignature = np.array([-1, *list(t0.shape)[1:]], np.int32)
    t0.hasRank = True
    t1.sparsity = schema.SparsityParametersT()
    t1.sparsity.traversalOrder = np.array([0, 1], np.int32)
    sg.tensors[2].variantTensors = [schema.VariantSubTypeT()]
    op0, op1 = sg.operators[0], sg.operators[1]
    op0.customOptions = np.arange(7, dtype=np.uint8)
    op0.customOptionsFormat = 0
    op0.mutatingVariableInputs = np.array([True, False])
    op0.intermediates = np.array([1], np.int32)
    op0.debugMetadataIndex = 3
    op1.builtinOptions2Type = schema.BuiltinOptions2.StablehloConcatenateOptions
    op1.builtinOptions2 = schema.StablehloConcatenateOptionsT()
    op1.builtinOptions2.dimension = 2
    return serialize_model(model)
