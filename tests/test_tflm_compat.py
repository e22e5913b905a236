"""rewrites.tflm_compat: float16 and sparse constants folded, bit for bit what LiteRT computes.

The fixture models are built here from a shipped float32 model: convolution weights stored
as FLOAT16 behind DEQUANTIZE, fully connected weights stored sparse (CSR) behind DENSIFY,
one of them both (DENSIFY of float16, then DEQUANTIZE). LiteRT runs those operators; the
folded constants must equal the tensors LiteRT computes, and the folded model must run in
TFLM with outputs identical to the input's under LiteRT.
"""

from __future__ import annotations

import copy
import json
import time

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from conftest import run_cli

from tflite_reorder import tflm
from tflite_reorder.candidate import read_graph
from tflite_reorder.flatbuffer_io import parse_model, serialize_model
from tflite_reorder.rewrites.edit import Editor
from tflite_reorder.rewrites.tflm_compat import constant_bytes, make_tflm_compatible
from tflite_reorder.runtimes import litert, random_inputs, run_litert


def _constant(ed: Editor, value: np.ndarray, ttype: int, name: str) -> int:
    buf = schema.BufferT()
    buf.data = np.ascontiguousarray(value).reshape(-1).view(np.uint8).copy()
    ed.model.buffers.append(buf)
    t = schema.TensorT()
    t.type, t.name, t.buffer = ttype, name, len(ed.model.buffers) - 1
    t.shape = np.array(value.shape, np.int32)
    ed.sg.tensors.append(t)
    return len(ed.sg.tensors) - 1


def _csr(ed: Editor, t: int, dense: np.ndarray) -> None:
    """Store ``dense`` in tensor ``t`` as TFLite sparse: leading dims DENSE, last dim CSR."""
    rows, cols = np.nonzero(dense.reshape(-1, dense.shape[-1]))
    n_rows = int(np.prod(dense.shape[:-1]))
    segments = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_rows))])
    sp = schema.SparsityParametersT()
    sp.traversalOrder = np.arange(dense.ndim, dtype=np.int32)
    sp.blockMap = np.zeros(0, np.int32)
    sp.dimMetadata = []
    for d in dense.shape[:-1]:
        meta = schema.DimensionMetadataT()
        meta.format, meta.denseSize = schema.DimensionType.DENSE, d
        sp.dimMetadata.append(meta)
    last = schema.DimensionMetadataT()
    last.format = schema.DimensionType.SPARSE_CSR
    last.arraySegmentsType = last.arrayIndicesType = schema.SparseIndexVector.Int32Vector
    last.arraySegments, last.arrayIndices = schema.Int32VectorT(), schema.Int32VectorT()
    last.arraySegments.values = segments.astype(np.int32)
    last.arrayIndices.values = cols.astype(np.int32)
    sp.dimMetadata.append(last)
    ed.t(t).sparsity = sp
    values = dense.reshape(-1, dense.shape[-1])[rows, cols]
    ed.model.buffers[ed.t(t).buffer].data = values.view(np.uint8).copy()


def _stored_behind(ed: Editor, w: int, opcode: str, ttype: int, value: np.ndarray,
                   sparse: bool = False) -> list:
    """Make constant ``w`` computed at run time: ``opcode(new constant) -> w``."""
    src = _constant(ed, value, ttype, f"{ed.name(w)}/stored")
    if sparse:
        _csr(ed, src, value)
    ed.t(w).buffer = 0
    options = (schema.BuiltinOptions.DequantizeOptions, schema.DequantizeOptionsT()) \
        if opcode == "DEQUANTIZE" else (schema.BuiltinOptions.DensifyOptions,
                                        schema.DensifyOptionsT())
    return [ed.new_op(opcode, [src], [w], *options), src]


def build_fixture(models_dir) -> bytes:
    model = copy.deepcopy(parse_model((models_dir / "concat_conv_float32.tflite").read_bytes())
                          .model)
    ed = Editor(model, 0)
    rng = np.random.default_rng(0)
    new_ops, convs = [], 0
    for op in list(ed.sg.operators):
        opcode = ed.opcode(op)
        if opcode not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        w = ed.inputs(op)[1]
        weights = ed.constant(w)
        sparse = np.where(rng.random(weights.shape) < 0.8, 0, weights).astype(np.float32)
        if opcode == "FULLY_CONNECTED":  # float16 sparse: DENSIFY, then DEQUANTIZE
            half = ed.new_tensor(w, weights.shape, f"{ed.name(w)}/half")
            ed.t(half).type = schema.TensorType.FLOAT16
            new_ops.append(_stored_behind(ed, half, "DENSIFY", schema.TensorType.FLOAT16,
                                          sparse.astype(np.float16), sparse=True)[0])
            ed.t(w).buffer = 0  # computed now (an op writing a constant is bad input)
            new_ops.append(ed.new_op("DEQUANTIZE", [half], [w],
                                     schema.BuiltinOptions.DequantizeOptions,
                                     schema.DequantizeOptionsT()))
        elif convs == 0:  # float32 sparse
            new_ops.append(_stored_behind(ed, w, "DENSIFY", schema.TensorType.FLOAT32,
                                          sparse, sparse=True)[0])
        else:
            new_ops.append(_stored_behind(ed, w, "DEQUANTIZE", schema.TensorType.FLOAT16,
                                          weights.astype(np.float16))[0])
        convs += opcode != "FULLY_CONNECTED"
    ed.sg.operators = new_ops + ed.sg.operators
    return serialize_model(model)


@pytest.fixture(scope="module")
def fixture_model(models_dir) -> bytes:
    return build_fixture(models_dir)


def _litert_values(raw: bytes, x, names: list[str]) -> dict[str, np.ndarray]:
    """The tensors LiteRT computed, by name (tensor indices of the input model)."""
    interp = litert(raw, preserve=True)
    for d, v in zip(interp.get_input_details(), x, strict=True):
        interp.set_tensor(d["index"], v)
    interp.invoke()
    ed = Editor(parse_model(raw).model, 0)
    index = {ed.name(i): i for i in range(len(ed.sg.tensors))}
    assert len(index) == len(ed.sg.tensors)  # names are unique
    return {n: interp.get_tensor(index[n]) for n in names}


def test_fixture_needs_the_ops_tflm_lacks(fixture_model) -> None:
    ops = {op.opcode for op in read_graph(fixture_model).subgraphs[0].ops}
    assert {"DEQUANTIZE", "DENSIFY"} <= ops


def test_folded_constants_are_what_litert_computes(fixture_model) -> None:
    m = parse_model(fixture_model).model
    result = make_tflm_compatible(m)
    assert not result.skipped
    opcodes = [f.opcode for f in result.folded]
    assert opcodes.count("DENSIFY") == 2 and opcodes.count("DEQUANTIZE") >= 3
    ed = Editor(m, 0)
    by_name = {ed.name(i): i for i in range(len(ed.sg.tensors))}
    kept = [f.tensor for f in result.folded if f.tensor in by_name]
    assert len(kept) == len(result.folded) - 1  # the DENSIFY feeding a DEQUANTIZE is gone
    live = _litert_values(fixture_model, random_inputs(fixture_model, 1)[0], kept)
    for name in kept:
        assert ed.constant(by_name[name]).tobytes() == live[name].tobytes(), name
    assert not any(ed.opcode(op) in ("DEQUANTIZE", "DENSIFY") for op in ed.sg.operators)


def test_folded_model_runs_in_tflm_bit_identical(fixture_model) -> None:
    m = parse_model(fixture_model).model
    result = make_tflm_compatible(m)
    out = serialize_model(m)
    with pytest.raises(Exception):  # noqa: B017 (TFLM's error type is not exported)
        tflm.run_tflm(fixture_model, random_inputs(fixture_model, 1)[0])
    for x in random_inputs(fixture_model, 3):
        ref = run_litert(fixture_model, x)
        for got in (run_litert(out, x), tflm.run_tflm(out, x)):
            assert [a.tobytes() for a in got] == [a.tobytes() for a in ref]
    assert result.flash_before == constant_bytes(parse_model(fixture_model).model)
    assert result.flash_after == constant_bytes(parse_model(out).model)
    assert result.flash_after > result.flash_before  # float32 and dense cost flash


def test_nothing_to_fold_leaves_the_model_alone(models_dir) -> None:
    raw = (models_dir / "mobilenet_int8.tflite").read_bytes()
    m = parse_model(raw).model
    result = make_tflm_compatible(m)
    assert result.folded == [] and serialize_model(m) == serialize_model(parse_model(raw).model)


def test_non_constant_dequantize_is_skipped(models_dir) -> None:
    """A DEQUANTIZE of an activation (int8 -> float32) is a real op: kept, and reported."""
    m = parse_model((models_dir / "add_tree_float32.tflite").read_bytes()).model
    ed = Editor(m, 0)
    x = ed.inputs(ed.sg.operators[0])[0]
    half = ed.new_tensor(x, ed.shape(x), "half")
    ed.t(half).type = schema.TensorType.FLOAT16
    ed.sg.operators.insert(0, ed.new_op("DEQUANTIZE", [half], [x],
                                        schema.BuiltinOptions.DequantizeOptions,
                                        schema.DequantizeOptionsT()))
    m.subgraphs[0].inputs = np.array([half], np.int32)
    result = make_tflm_compatible(m)
    assert result.folded == []
    assert result.skipped[0]["reason"] == "its input is not a constant"


def test_optimize_tflm_compat_reports_flash_and_arena(fixture_model, tmp_path, capsys) -> None:
    """The CLI end to end: the written model runs in TFLM, bit-identical to the input under
    LiteRT; its planned arena is what TFLM measures; JSON carries the flash and arena."""
    src, dst = tmp_path / "fp16.tflite", tmp_path / "out.tflite"
    src.write_bytes(fixture_model)
    code, stdout, stderr = run_cli(["optimize", src, dst, "--tflm-compat", "--json"], capsys)
    assert code == 0, stderr
    r = json.loads(stdout)
    c = r["tflm_compat"]
    assert len(c["folded"]) >= 5 and c["skipped"] == []
    out = dst.read_bytes()
    assert c["flash_before"] == constant_bytes(parse_model(fixture_model).model)
    assert c["flash_after"] == constant_bytes(parse_model(out).model) > c["flash_before"]
    assert c["arena_saved"] == c["arena_best_before"] - c["arena_best_after"] >= 0
    assert c["arena_stored_before"] > c["arena_stored_after"]  # all weights live up front
    assert c["arena_stored_after"] == r["peak_before"] >= r["peak_after"]
    runtimes = {v["runtime"]: v for v in r["verification"]["comparisons"]}
    assert runtimes["tflm"]["identical"] and runtimes["litert"]["identical"]
    for x in random_inputs(fixture_model, 2, seed=5):
        ref = [a.tobytes() for a in run_litert(fixture_model, x)]
        assert [a.tobytes() for a in tflm.run_tflm(out, x)] == ref
    assert tflm.measure_arena(out).head == r["arena_planned"]
    code, stdout, _ = run_cli(["optimize", src, dst, "--tflm-compat"], capsys)
    assert code == 0 and "tflm-compat: folded" in stdout and "B saved" in stdout


def test_without_tflm_compat_the_warning_names_it(fixture_model, tmp_path, capsys) -> None:
    """TFLM cannot run the input: verified with LiteRT, written, exit 0 (issue 10), and the
    warning points at --tflm-compat, which would make it TFLM-runnable."""
    src = tmp_path / "fp16.tflite"
    src.write_bytes(fixture_model)
    code, stdout, stderr = run_cli(["optimize", src, tmp_path / "o.tflite"], capsys)
    assert code == 0 and stderr == "" and (tmp_path / "o.tflite").exists()
    (warning,) = [line for line in stdout.splitlines() if line.startswith("warning: TFLM")]
    assert "verified with LiteRT only" in warning and "--tflm-compat" in warning


@pytest.mark.parametrize("limit", [0.0, 0.4, 3.0])
def test_tflm_compat_searches_share_one_time_limit(fixture_model, monkeypatch, limit) -> None:
    """The two searches --tflm-compat reports and the model's own search together stay
    within ``time_limit``: each is granted no more than what is left of one deadline
    (``time_limit`` after ``optimize`` starts), not a fresh limit of its own."""
    from tflite_reorder import api

    grants: list[tuple[str, float, float]] = []  # (search, when granted, seconds granted)

    def recorded(name, fn):
        def wrapper(graph, inplace, time_limit, *args, **kwargs):
            grants.append((name, time.monotonic(), time_limit))
            return fn(graph, inplace, time_limit, *args, **kwargs)
        return wrapper

    monkeypatch.setattr(api, "peak_of_graph", recorded("compat", api.peak_of_graph))
    monkeypatch.setattr(api, "schedule_model", recorded("model", api.schedule_model))
    start = time.monotonic()
    res = api.optimize(fixture_model, tflm_compat=True, time_limit=limit, verify=False)
    assert [g[0] for g in grants] == ["compat", "compat", "model"]
    for name, when, granted in grants:  # never past the deadline (0 s once it is reached)
        assert 0 <= granted <= max(0.0, start + limit - when) + 1e-3, (name, grants)
    assert all(g <= api.COMPAT_SHARE * limit + 1e-3 for n, _, g in grants if n == "compat")
    c = res.report.tflm_compat
    assert c["arena_saved"] == c["arena_best_before"] - c["arena_best_after"]
    if c["arena_best_proven"]:
        assert c["arena_saved"] >= 0
