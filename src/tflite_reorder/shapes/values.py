"""Value rules: small integer tensors (shape arithmetic) tracked by value during inference.

Shapes flow through them (``RESHAPE(x, PACK(STRIDED_SLICE(SHAPE(x)), …))``); each rule runs
after the operator's output shapes are known.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from ..dtypes import type_name
from ..graph import opcode_name
from ..tensors import constant_data
from .rules import (
    Env,
    Shape,
    Unknown,
    as_dims,
    axis_index,
    option,
    slice_index,
    strided_index,
)

MAX_VALUE_ELEMENTS = 1024  # integer tensors tracked by value (shapes, axes, paddings)
VALUE_DTYPES = {"INT32": np.int32, "INT64": np.int64}


def int_value(model: schema.ModelT, t: schema.TensorT) -> np.ndarray | None:
    """The data of a small constant integer tensor as int64, shaped as stored, else None."""
    if type_name(t.type) not in VALUE_DTYPES:
        return None
    data = constant_data(model, t)
    if data is None or data.size > MAX_VALUE_ELEMENTS:
        return None
    return data.astype(np.int64)


ValueRule = Callable[[Env, schema.OperatorT, list[Shape]], list[np.ndarray]]

_NUMPY_BINARY = {
    "ADD": np.add, "SUB": np.subtract, "MUL": np.multiply, "FLOOR_DIV": np.floor_divide,
    "MAXIMUM": np.maximum, "MINIMUM": np.minimum,
}


def _v_binary(env: Env, op: schema.OperatorT, outs: list[Shape]) -> list[np.ndarray]:
    fn = _NUMPY_BINARY[opcode_name(env.model, op.opcodeIndex)]
    return [fn(env.value(op.inputs[0]), env.value(op.inputs[1]))]


def _v_reshaped(env: Env, op: schema.OperatorT, outs: list[Shape]) -> list[np.ndarray]:
    return [env.value(op.inputs[0]).reshape(outs[0])]


def _v_shape(env: Env, op: schema.OperatorT, outs: list[Shape]) -> list[np.ndarray]:
    return [np.array(env.shape(op.inputs[0]), dtype=np.int64)]


def _v_pack(env: Env, op: schema.OperatorT, outs: list[Shape]) -> list[np.ndarray]:
    values = [env.value(t) for t in op.inputs]
    return [np.stack(values, axis=axis_index(option(op, "axis", 0), values[0].ndim + 1))]


def _v_concat(env: Env, op: schema.OperatorT, outs: list[Shape]) -> list[np.ndarray]:
    values = [env.value(t) for t in op.inputs]
    return [np.concatenate(values, axis=axis_index(option(op, "axis", 0), values[0].ndim))]


def _v_strided(env: Env, op: schema.OperatorT, outs: list[Shape]) -> list[np.ndarray]:
    value = env.value(op.inputs[0])
    return [np.asarray(value[strided_index(env, op, value.ndim)])]


def _v_slice(env: Env, op: schema.OperatorT, outs: list[Shape]) -> list[np.ndarray]:
    return [np.asarray(env.value(op.inputs[0])[slice_index(env, op)])]


def _v_gather(env: Env, op: schema.OperatorT, outs: list[Shape]) -> list[np.ndarray]:
    if int(option(op, "batchDims", 0)):
        raise Unknown("GATHER batch_dims on values")
    params = env.value(op.inputs[0])
    axis = axis_index(option(op, "axis", 0), params.ndim)
    return [np.take(params, env.value(op.inputs[1]), axis=axis)]


def _v_reduce_prod(env: Env, op: schema.OperatorT, outs: list[Shape]) -> list[np.ndarray]:
    value = env.value(op.inputs[0])
    axes = tuple(axis_index(a, value.ndim) for a in as_dims(env.value(op.inputs[1])))
    return [np.prod(value, axis=axes).reshape(outs[0])]


VALUE_RULES: dict[str, ValueRule] = {
    **dict.fromkeys(_NUMPY_BINARY, _v_binary),
    **dict.fromkeys(("CAST", "RESHAPE", "SQUEEZE", "EXPAND_DIMS"), _v_reshaped),
    "SHAPE": _v_shape,
    "PACK": _v_pack,
    "CONCATENATION": _v_concat,
    "STRIDED_SLICE": _v_strided,
    "SLICE": _v_slice,
    "GATHER": _v_gather,
    "REDUCE_PROD": _v_reduce_prod,
}
