"""Models with a variable tensor in a called subgraph (a WHILE body), for the offline plan.

    python tools/make_variable_models.py OUT_DIR   # writes both variants there

``while_float32``'s body gets a zero-initialised variable tensor ``state`` (float32
[1, 16, 16, 16], no buffer, ``is_variable``) that a new ADD adds to the body's feature
output, so the model computes what ``while_float32`` computes (both runtimes zero their
variables before the first run). ``pad`` unused int8 constants are added to the body
before ``state``: they set the variable's index in its subgraph, which is what TFLM's
``MicroAllocator::AllocateVariables`` looks up in the offline plan (it reads the plan
with subgraph-local indices, i.e. subgraph 0's entries). With ``pad=0`` that entry is a
constant of subgraph 0 (-1 in any plan); with ``pad=3`` it is an activation that a plan
places (``strided_slice``).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tflite_reorder.flatbuffer_io import load_model, serialize_model

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "models" / "while_float32.tflite"
BODY = 4  # while_float32's WHILE body subgraph
FEATURES = 2  # the body's [1, 16, 16, 16] float32 loop variable (input and output 2)


def while_with_variable(pad: int) -> bytes:
    """``while_float32`` whose WHILE body adds a zero variable tensor to its features."""
    m = copy.deepcopy(load_model(BASE).model)
    sg = m.subgraphs[BODY]
    add = next(i for i, c in enumerate(m.operatorCodes)
               if max(c.builtinCode, c.deprecatedBuiltinCode) == schema.BuiltinOperator.ADD)
    for k in range(pad):
        buf = schema.BufferT()
        buf.data = np.zeros(4, np.uint8)
        m.buffers.append(buf)
        t = schema.TensorT()
        t.name, t.type, t.shape = f"unused_{k}", schema.TensorType.INT8, np.array([4], np.int32)
        t.buffer = len(m.buffers) - 1
        sg.tensors.append(t)
    out = int(sg.outputs[FEATURES])
    state = copy.deepcopy(sg.tensors[out])
    state.name, state.isVariable, state.buffer = "state", True, 0
    sg.tensors.append(state)
    summed = copy.deepcopy(sg.tensors[out])
    summed.name = "features_plus_state"
    sg.tensors.append(summed)
    op = schema.OperatorT()
    op.opcodeIndex = add
    op.inputs = np.array([out, len(sg.tensors) - 2], np.int32)
    op.outputs = np.array([len(sg.tensors) - 1], np.int32)
    op.builtinOptionsType = schema.BuiltinOptions.AddOptions
    op.builtinOptions = schema.AddOptionsT()
    sg.operators.append(op)
    outs = [int(t) for t in sg.outputs]
    outs[FEATURES] = len(sg.tensors) - 1
    sg.outputs = np.array(outs, np.int32)
    return serialize_model(m)


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else Path(".")
    for pad in (0, 3):
        (out / f"while_variable_pad{pad}.tflite").write_bytes(while_with_variable(pad))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
