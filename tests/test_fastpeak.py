"""fastpeak (peak_memory's compiled path) against the general path it stands in for.

Where it answers, the answer must be the general path's (stored and optimal peaks, proven):
on every shipped model, on random one-subgraph models (multi-output ops, constants,
variables, custom ops that keep their order, mid-graph and dead outputs, shuffled stored
orders) and on mutated bytes. Where it declines, ``peak_memory`` gives the general path's
answer or error (the bad-input corpus).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from conftest import ALL_MODELS, BAD_INPUTS_DIR

from tflite_reorder import api, fastpeak, searchcore
from tflite_reorder.flatbuffer_io import ModelError, parse_model, serialize_model
from tflite_reorder.shapes import infer_shapes

needs_core = pytest.mark.skipif(bool(fastpeak.unavailable()),
                                reason=f"compiled path: {fastpeak.unavailable()}")
# Shipped models the compiled path declines, and why (the general path answers them).
DECLINED = {
    "darts_float32": "rewrites or nests", "darts_int8": "rewrites or nests",
    "dilated_int8": "rewrites or nests", "while_float32": "not one subgraph",
    "mobilenet_deep_fp16w": "state limit",  # 357 ops behind DEQUANTIZE sources
}


def _general(raw, monkeypatch, **kw):
    monkeypatch.setattr(fastpeak, "ENABLED", False)
    try:
        return _outcome(raw, **kw)
    finally:
        monkeypatch.setattr(fastpeak, "ENABLED", True)


def _outcome(raw, **kw):
    try:
        r = api.peak_memory(raw, **kw)
    except ModelError as exc:
        return f"ModelError: {exc}"
    return r.stored, r.optimal, r.lower_bound, r.is_optimal


@needs_core
@pytest.mark.parametrize("path", ALL_MODELS, ids=lambda p: p.stem)
def test_shipped_models(path: Path, monkeypatch) -> None:
    raw = path.read_bytes()
    got = fastpeak.answer(raw, 10.0)
    if path.stem in DECLINED:
        assert isinstance(got, str) and DECLINED[path.stem] in got, got
        return
    assert not isinstance(got, str), got
    ref = _general(raw, monkeypatch)
    assert ref[3], "the general path proves these"
    assert (got[0], got[1], got[1], True) == ref
    assert _outcome(raw) == ref  # and peak_memory returns it


def _random_model(rng: random.Random, n_ops: int) -> schema.ModelT:
    """One subgraph of int8 vectors: ops without a shape rule (their stored shapes stand)
    and shape-consistent ADD/RELU; constants, a variable, custom ops (stateful)."""
    m = schema.ModelT()
    m.version, m.buffers, m.operatorCodes = 3, [schema.BufferT()], []
    sg = schema.SubGraphT()
    sg.tensors, sg.operators = [], []
    m.subgraphs = [sg]
    codes: dict[str, int] = {}

    def code(name: str) -> int:
        if name not in codes:
            c = schema.OperatorCodeT()
            if name.startswith("CUSTOM:"):
                c.builtinCode, c.customCode = schema.BuiltinOperator.CUSTOM, name[7:]
            else:
                c.builtinCode = getattr(schema.BuiltinOperator, name)
            c.deprecatedBuiltinCode = min(c.builtinCode, 127)
            codes[name] = len(m.operatorCodes)
            m.operatorCodes.append(c)
        return codes[name]

    def tensor(n: int, data: bytes | None = None, variable: bool = False) -> int:
        t = schema.TensorT()
        t.name, t.type, t.shape = f"t{len(sg.tensors)}", schema.TensorType.INT8, \
            np.array([n], np.int32)
        t.buffer = 0
        t.isVariable = variable
        if data is not None:
            b = schema.BufferT()
            b.data = np.frombuffer(data, np.uint8)
            m.buffers.append(b)
            t.buffer = len(m.buffers) - 1
        sg.tensors.append(t)
        return len(sg.tensors) - 1

    sizes = [8, 16, 24, 40, 64, 100, 128, 200]
    inputs = [tensor(rng.choice(sizes)) for _ in range(rng.randint(1, 2))]
    avail = list(inputs)
    variable = tensor(16, variable=True) if rng.random() < 0.3 else None
    for _ in range(n_ops):
        op = schema.OperatorT()
        kind = rng.random()
        pool = avail[-4:] if rng.random() < 0.7 else avail
        ins = list(dict.fromkeys(rng.sample(pool, min(rng.randint(1, 3), len(pool)))))
        if kind < 0.15:
            a = ins[0]
            n = int(sg.tensors[a].shape[0])
            same = [t for t in avail if int(sg.tensors[t].shape[0]) == n]
            name = rng.choice(["RELU", "ADD"])
            op.opcodeIndex, outs = code(name), [tensor(n)]
            ins = [a, rng.choice(same)] if name == "ADD" else [a]
        elif kind < 0.25:
            op.opcodeIndex = code("CUSTOM:rand")
            outs = [tensor(rng.choice(sizes))]
        else:
            op.opcodeIndex = code(rng.choice(["RANK", "CONV_3D", "ATAN2", "GATHER_ND"]))
            outs = [tensor(rng.choice(sizes)) for _ in range(rng.choice([1, 1, 1, 2, 3]))]
            if rng.random() < 0.3:
                ins.append(tensor(8, bytes(8)))  # a constant
            if rng.random() < 0.2:
                ins.append(-1)  # an optional input left out
            if variable is not None and rng.random() < 0.2:
                ins.append(variable)
        op.inputs, op.outputs = np.array(ins, np.int32), np.array(outs, np.int32)
        sg.operators.append(op)
        avail.extend(outs)
    produced = [t for op in sg.operators for t in op.outputs]
    read = {int(t) for op in sg.operators for t in op.inputs}
    sinks = [t for t in produced if t not in read]
    outputs = set(rng.sample(sinks, max(1, len(sinks) // 2))) if sinks else {produced[-1]}
    if rng.random() < 0.3:
        outputs.add(rng.choice(produced))
    sg.inputs = np.array(inputs, np.int32)
    sg.outputs = np.array(sorted(int(t) for t in outputs), np.int32)
    return m


def _shuffled(rng: random.Random, m: schema.ModelT) -> None:
    """A random stored order that is still topological (data edges only: the compiled path
    and the general one agree on custom ops' order either way)."""
    sg = m.subgraphs[0]
    ops = sg.operators
    producer = {int(t): i for i, op in enumerate(ops) for t in op.outputs}
    preds = [{producer[int(t)] for t in op.inputs if int(t) in producer} for op in ops]
    done: list[int] = []
    left = set(range(len(ops)))
    while left:
        ready = [v for v in left if preds[v] <= set(done)]
        v = rng.choice(ready)
        done.append(v)
        left.discard(v)
    sg.operators = [ops[v] for v in done]


@needs_core
def test_random_models(monkeypatch) -> None:
    rng = random.Random(16)
    answered = 0
    for case in range(150):
        m = _random_model(rng, rng.randint(1, 14))
        if case % 3 == 0:
            _shuffled(rng, m)
        raw = serialize_model(m)
        assert infer_shapes(parse_model(raw).model) == {}  # stored shapes are true
        got = fastpeak.answer(raw, 10.0)
        ref = _general(raw, monkeypatch)
        if isinstance(got, str):
            assert _outcome(raw) == ref
            continue
        answered += 1
        assert (got[0], got[1], got[1], True) == ref, (case, got, ref)
    assert answered > 120


@needs_core
def test_larger_random_models(monkeypatch) -> None:
    """Several 64-bit words of state and cut ops between segments."""
    rng = random.Random(7)
    for _ in range(6):
        raw = serialize_model(_random_model(rng, rng.randint(60, 140)))
        got = fastpeak.answer(raw, 10.0)
        if isinstance(got, str):
            assert "limit" in got
            continue
        ref = _general(raw, monkeypatch)
        if ref[3]:
            assert (got[0], got[1], got[1], True) == ref
        else:  # the general path did not prove its answer: ours is proven and no larger
            assert got[0] == ref[0] and got[1] <= ref[1]


@pytest.mark.parametrize("path", sorted(BAD_INPUTS_DIR.glob("*.tflite")), ids=lambda p: p.stem)
def test_bad_inputs_same_error(path: Path, monkeypatch) -> None:
    raw = path.read_bytes()
    assert _outcome(raw) == _general(raw, monkeypatch)


def _mutations(raw: bytes, n: int, seed: int):
    rng = random.Random(seed)
    for _ in range(n):
        b = bytearray(raw)
        if rng.random() < 0.2:
            yield bytes(b[: rng.randrange(8, len(b))])
            continue
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(8, len(b))] = rng.randrange(256)
        yield bytes(b)


@needs_core
@pytest.mark.parametrize("name", ["add_tree_int8", "tiny3_int8", "hconcat_int8",
                                  "unknown_op", "audio_custom"])
def test_mutated_bytes(name: str, monkeypatch) -> None:
    """Corrupt bytes (shapes, indices, offsets, truncation): the compiled path declines or
    answers as the general path does; ``peak_memory`` gives the general path's answer or
    error either way. The custom-op models have no shape rule: nothing is inferred."""
    raw = (Path(ALL_MODELS[0]).parent / f"{name}.tflite").read_bytes()
    answered = 0
    for mutated in _mutations(raw, 200, seed=len(name)):
        got = fastpeak.answer(mutated, 10.0)
        ref = _general(mutated, monkeypatch)
        assert _outcome(mutated) == ref
        if not isinstance(got, str):
            answered += 1
            assert (got[0], got[1], got[1], True) == ref
    assert answered > 20


def test_declines_when_switched_off(monkeypatch) -> None:
    raw = (Path(ALL_MODELS[0]).parent / "tiny3_int8.tflite").read_bytes()
    monkeypatch.setenv(searchcore.ENV, "1")
    assert searchcore.ENV in fastpeak.answer(raw, 10.0)
    assert fastpeak.peak_memory(raw, 10.0) is None
    monkeypatch.setattr(fastpeak, "ENABLED", False)
    monkeypatch.delenv(searchcore.ENV)
    assert "ENABLED" in fastpeak.answer(raw, 10.0)


@needs_core
def test_paths_and_inplace(monkeypatch) -> None:
    """A path takes the compiled path too; inplace=True is the general path's."""
    path = Path(ALL_MODELS[0]).parent / "inception_int8.tflite"
    assert _outcome(path) == _general(path.read_bytes(), monkeypatch)
    assert _outcome(path, inplace=True) == _general(path.read_bytes(), monkeypatch,
                                                     inplace=True)
    with pytest.raises(ModelError, match="missing.tflite"):
        api.peak_memory(path.parent / "missing.tflite")
