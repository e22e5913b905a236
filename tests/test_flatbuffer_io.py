"""``flatbuffer_io``: reading, the writer's 16-byte buffer alignment, external data, offline
plans, atomic writes, and the one-line errors for what it refuses."""

from __future__ import annotations

import contextlib
import copy
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from conftest import ROOT, model_path
from tinymodels import diamond, model_t, rare_fields_model

from tflite_reorder import api, fullread
from tflite_reorder import flatbuffer_io as fio
from tflite_reorder.flatbuffer_io import (
    ModelError,
    get_offline_plan,
    load_model,
    parse_model,
    read_bytes,
    serialize_model,
    write_atomic,
)
from tools import make_bad_inputs as mb


def _with_constant():
    return model_t({"x": (1, 4)}, [("ADD", ["x", "k"], "y", (1, 4))], ["y"],
                   constants={"k": np.arange(4, dtype=np.float32).reshape(1, 4)})


def test_round_trip_keeps_every_field():
    raw = model_path("while_float32").read_bytes()
    model = parse_model(raw).model
    again = parse_model(serialize_model(copy.deepcopy(model))).model
    assert serialize_model(again) == serialize_model(model)
    assert len(again.subgraphs) == len(model.subgraphs) > 1


def test_buffer_data_starts_at_multiples_of_16():
    for name in ("mobilenet_int8", "inception_int8"):
        data = serialize_model(load_model(model_path(name)).model)
        offsets = fio.buffer_data_offsets(data)
        assert offsets and all(o % 16 == 0 for o in offsets)


def test_external_buffer_data_survives_and_is_aligned():
    m = _with_constant()
    k = m.subgraphs[0].tensors[1]
    m.buffers[k.buffer].external = True  # as if read from a model over 2 GB
    data = serialize_model(m)
    back = parse_model(data).model
    buf = back.buffers[k.buffer]
    assert buf.offset > 1 and buf.offset % 16 == 0 and buf.size == 16
    assert data[buf.offset:buf.offset + 16] == np.arange(4, dtype="<f4").tobytes()
    assert np.asarray(buf.data, np.uint8).tobytes() == np.arange(4, dtype="<f4").tobytes()


def test_load_model_accepts_path_str_bytes_and_loaded(tmp_path):
    path = model_path("inception_int8")
    by_path, by_str = load_model(path), load_model(str(path))
    assert by_path.source == by_str.source == str(path)
    by_bytes = load_model(path.read_bytes())
    assert by_bytes.source == "<bytes>" and by_bytes.raw == by_path.raw
    assert load_model(by_path) is by_path


@pytest.mark.parametrize("raw, message", [
    (b"", "empty file"),
    (b"TFL3", "too short"),
    (b"\x10\0\0\0XXXX" + bytes(16), "not a TFLite flatbuffer"),
    (b"\xff\xff\0\0TFL3" + bytes(16), "root offset"),
])
def test_refused_headers_name_the_source(raw, message):
    with pytest.raises(ModelError, match=message) as exc:
        parse_model(raw, "m.tflite")
    assert str(exc.value).startswith("m.tflite: ")


def test_wrong_schema_version_and_no_subgraphs():
    m = diamond()
    m.version = 2
    with pytest.raises(ModelError, match="schema version 2"):
        parse_model(serialize_model(m), "v2")
    m = diamond()
    m.subgraphs = []
    with pytest.raises(ModelError, match="no subgraphs"):
        parse_model(serialize_model(m), "empty")


def test_constant_data_must_fill_its_shape():
    m = _with_constant()
    k = m.subgraphs[0].tensors[1]
    m.buffers[k.buffer].data = m.buffers[k.buffer].data[:8]
    with pytest.raises(ModelError, match="needs 16 bytes of constant data"):
        parse_model(serialize_model(m), "short")


def test_read_bytes_errors(tmp_path):
    with pytest.raises(ModelError, match="no such file"):
        fio.read_bytes(tmp_path / "missing.tflite")
    with pytest.raises(ModelError, match="is a directory"):
        fio.read_bytes(tmp_path)


def test_offline_plan_set_replace_get_remove():
    m = diamond()
    n = len(m.subgraphs[0].tensors)
    assert fio.get_offline_plan(m) is None
    fio.set_offline_plan(m, list(range(0, 16 * n, 16)))
    fio.set_offline_plan(m, [-1] * n)  # replaces, does not add a second entry
    back = parse_model(serialize_model(m)).model
    assert fio.get_offline_plan(back) == [-1] * n
    assert sum(e.name in ("OfflineMemoryAllocation", b"OfflineMemoryAllocation")
               for e in back.metadata) == 1
    fio.remove_offline_plan(back)
    assert fio.get_offline_plan(parse_model(serialize_model(back)).model) is None
    with pytest.raises(ValueError, match="offsets for"):
        fio.set_offline_plan(m, [0])


def test_write_atomic(tmp_path):
    target = tmp_path / "out.tflite"
    fio.write_atomic(target, b"abc")
    fio.write_atomic(target, b"defg")
    assert target.read_bytes() == b"defg"
    assert [p.name for p in tmp_path.iterdir()] == ["out.tflite"]  # no temp file left
    with pytest.raises(ModelError, match="does not exist"):
        fio.write_atomic(tmp_path / "no" / "out.tflite", b"x")
    with pytest.raises(ModelError, match="is a directory"):
        fio.write_atomic(tmp_path, b"x")


# --- inputs that are not regular files ------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_without_writer_is_refused_at_once(tmp_path):
    fifo = tmp_path / "model.tflite"
    os.mkfifo(fifo)
    with pytest.raises(ModelError, match="is a FIFO"):
        read_bytes(fifo)  # a blocking open would hang here forever


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_character_device_is_refused():
    with pytest.raises(ModelError, match="/dev/zero: is a character device"):
        read_bytes("/dev/zero")


def test_sparse_file_over_the_limit_is_refused_before_reading(tmp_path):
    big = tmp_path / "huge.tflite"
    with open(big, "wb") as fh:
        fh.truncate(fio.MAX_FILE_BYTES + 1)  # sparse: no disk used
    with pytest.raises(ModelError, match="larger than the limit"):
        read_bytes(big)


def test_a_million_entries_pointing_at_one_table_are_refused():
    data = mb.shared_tensor_table(1_000_000)
    assert len(data) < 5_000_000
    with pytest.raises(ModelError, match="1000000 tensors, more than the limit"):
        parse_model(data, "shared.tflite")


def test_vector_entry_limit(monkeypatch):
    monkeypatch.setattr(fio, "MAX_VECTOR_ENTRIES", 10)
    with pytest.raises(ModelError, match="vectors hold"):
        load_model(ROOT / "models" / "inplace_add_int8.tflite")


# --- byte ranges the model references ---------------------------------------------------------


def test_a_thousand_references_to_one_buffer_stay_one_buffer():
    data = mb.shared_weight(1_000, 1 << 20)
    assert len(data) < 2 << 20  # written once, not a thousand times
    loaded = parse_model(data)
    first = loaded.model.buffers[-1].data
    assert all(b.data is first for b in loaded.model.buffers[-1000:])  # one shared array
    out = api.optimize(data, verify=False, time_limit=0.5).data
    assert len(out) < 2 << 20
    again = parse_model(out).model
    weights = [t for t in again.subgraphs[0].tensors if fio.text(t.name)[:1] == "w"]
    assert len(weights) == 1000
    want = bytes(np.asarray(first))
    assert all(bytes(np.asarray(again.buffers[t.buffer].data)) == want for t in weights)


def _large_options(raw: bytes) -> list[bytes]:
    """Out-of-line custom options of every operator of subgraph 0, read with the flat API."""
    sg = schema.Model.GetRootAs(raw, 0).Subgraphs(0)
    found = []
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        if op.LargeCustomOptionsSize():
            off, size = op.LargeCustomOptionsOffset(), op.LargeCustomOptionsSize()
            found.append(raw[off:off + size])
    return found


def test_large_custom_options_are_carried_to_the_output():
    data = mb.large_custom_options()
    want = bytes(np.arange(1000, dtype=np.uint32).astype(np.uint8))
    assert _large_options(data) == [want]
    out = api.optimize(data, verify=False, time_limit=0.5).data
    assert _large_options(out) == [want]
    assert _large_options(serialize_model(parse_model(out).model)) == [want]


def _weight(raw: bytes) -> bytes:
    m = parse_model(raw).model
    w = m.subgraphs[0].tensors[int(m.subgraphs[0].operators[0].inputs[1])]
    return bytes(np.asarray(m.buffers[w.buffer].data, dtype=np.uint8))


@pytest.mark.parametrize("plan", [True, False])
def test_plan_never_overwrites_a_weight_sharing_its_buffer(plan):
    data = mb.plan_shares_weight()
    out = api.optimize(data, verify=False, plan=plan, time_limit=0.5).data
    assert _weight(out) == _weight(data)
    offsets = get_offline_plan(parse_model(out).model)
    assert (offsets is not None) == plan


# --- writing ----------------------------------------------------------------------------------


def test_sigterm_while_writing_leaves_no_temp_file(tmp_path):
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT / "src")!r})
        from tflite_reorder import flatbuffer_io
        real = os.fsync
        def fsync(fd):
            os.kill(os.getpid(), signal.SIGTERM)
            real(fd)
        os.fsync = fsync
        try:
            flatbuffer_io.write_atomic({str(tmp_path / "out.tflite")!r}, b"x" * 1000)
        except flatbuffer_io.Terminated:
            print("terminated")
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert run.stdout.strip() == "terminated", run.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_writing_onto_a_full_device_fails_and_keeps_the_device():
    with pytest.raises(ModelError, match="No space left"):
        write_atomic("/dev/full", b"model")
    assert Path("/dev/full").is_char_device()


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="no /dev/null")
def test_writing_onto_dev_null_keeps_it_a_device():
    write_atomic("/dev/null", b"model")
    assert Path("/dev/null").is_char_device()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_as_output_is_refused(tmp_path):
    fifo = tmp_path / "out.tflite"
    os.mkfifo(fifo)
    with pytest.raises(ModelError, match="refusing to replace it"):
        write_atomic(fifo, b"model")
    assert fifo.is_fifo()


def test_lean_builder_writes_the_library_builders_bytes(monkeypatch):
    """``_LeanBuilder`` is only faster: every model in models/ (control flow, sparse and
    quantised tensors, external data, shared vtables) and the 10,000-op chain pack to the
    very bytes ``flatbuffers.Builder`` packs."""
    import flatbuffers

    models = sorted((ROOT / "models").glob("*.tflite"))
    assert len(models) > 20
    trees = [load_model(p).model for p in models] + [load_model(mb.long_chain(10_000)).model]
    lean = [serialize_model(m) for m in trees]
    monkeypatch.setattr(fio, "_LeanBuilder", flatbuffers.Builder)
    assert [serialize_model(m) for m in trees] == lean


def _edited_trees() -> list:
    """Trees as edits leave them: lists and tuples for vectors, str names, numpy scalars,
    int64 and non-contiguous arrays, byte-swapped arrays, huge and negative values."""
    out = []
    for edit in range(8):
        m = load_model(model_path("inception_int8")).model
        sg = m.subgraphs[0]
        t, op = sg.tensors[3], sg.operators[2]
        if edit == 0:
            op.inputs, op.outputs = list(op.inputs), tuple(int(x) for x in op.outputs)
            t.shape = [int(d) for d in t.shape]
        elif edit == 1:
            t.name, sg.tensors[4].name = "named é", "x"
        elif edit == 2:
            op.opcodeIndex, t.buffer, t.type = np.int32(op.opcodeIndex), np.uint32(0), np.int8(9)
        elif edit == 3:
            t.shape = np.asarray(t.shape, np.int64)
        elif edit == 4:
            op.inputs = np.repeat(np.asarray(op.inputs, np.int32), 2)[::2]
        elif edit == 5:
            t.shape = np.asarray(t.shape, ">i4")
        elif edit == 6:
            op.inputs, t.shape = [], np.zeros(0, np.int32)
            op.customOptions = np.zeros(0, np.uint8)
        else:
            t.isVariable, t.hasRank, op.debugMetadataIndex = 1, True, 2 ** 31 - 1
            op.largeCustomOptionsOffset, op.largeCustomOptionsSize = 2 ** 64 - 1, 0
        out.append(m)
    return out


def test_compiled_packs_write_the_generated_bytes(monkeypatch):
    """``_compiled_packs`` is only faster: every model in models/, the bad-input corpus,
    the rare fields, edited trees and the 10,000-op chain pack to the very bytes the
    generated ``Pack`` writes (the same ``_LeanBuilder``)."""
    assert fio.FAST_PACK  # CI builds the extension: else this compares the code with itself
    paths = sorted((ROOT / "models").glob("*.tflite"))
    paths += sorted((ROOT / "tests" / "bad_inputs").glob("*.tflite"))
    trees = []
    for p in paths:
        with contextlib.suppress(ModelError):  # the corpus' unreadable files
            trees.append(load_model(p).model)
    trees += [load_model(rare_fields_model()).model, load_model(mb.long_chain(10_000)).model,
              diamond(), *_edited_trees()]
    compiled = [serialize_model(m) for m in trees]
    monkeypatch.setattr(fio, "FAST_PACK", False)
    assert [serialize_model(m) for m in trees] == compiled


@pytest.mark.parametrize("fast", [True, False])
def test_out_of_range_fields_raise_the_generated_error(monkeypatch, fast):
    monkeypatch.setattr(fio, "FAST_PACK", fast)
    for field, value in (("opcodeIndex", -1), ("debugMetadataIndex", 2 ** 31),
                         ("largeCustomOptionsSize", -1)):
        m = diamond()
        setattr(m.subgraphs[0].operators[0], field, value)
        with pytest.raises((TypeError, struct.error)):
            serialize_model(m)
    m = diamond()
    m.subgraphs[0].tensors[0].type = 128
    with pytest.raises(TypeError, match="bad number"):
        serialize_model(m)


def test_lean_builder_refuses_out_of_range_scalars_as_the_library_does():
    m = diamond()
    m.subgraphs[0].tensors[0].buffer = 2 ** 32  # a uint32 field
    with pytest.raises(TypeError, match="bad number"):
        serialize_model(m)


def _same_tree(a, b, path: str = "model") -> None:
    assert type(a) is type(b), path
    if isinstance(a, np.ndarray):
        assert (a.dtype, a.shape, a.tobytes()) == (b.dtype, b.shape, b.tobytes()), path
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same_tree(x, y, f"{path}[{i}]")
    elif hasattr(a, "__dict__"):
        assert vars(a).keys() == vars(b).keys(), path
        for k in vars(a):
            _same_tree(getattr(a, k), getattr(b, k), f"{path}.{k}")
    else:
        assert a == b or (a != a and b != b), path  # NaN scales


def test_decoded_vtables_read_what_the_library_reads(monkeypatch):
    """Each vtable decoded once (``_Vtables``) gives the very tree read field by field,
    and corrupt bytes fail (or not) exactly as without it."""
    import random

    datas = [p.read_bytes() for p in sorted((ROOT / "models").glob("*.tflite"))]
    rng = random.Random(5)
    for raw in datas[:12]:
        for _ in range(40):  # vtable and offset bytes overwritten anywhere
            b = bytearray(raw)
            for _ in range(rng.choice((1, 4))):
                b[rng.randrange(len(b))] = rng.choice((0, 1, 3, 0x7F, 0xFF))
            datas.append(bytes(b))

    def outcome(raw: bytes):
        try:
            return parse_model(raw).model
        except ModelError as exc:
            return str(exc)

    monkeypatch.setattr(fullread, "ENABLED", False)  # the generated reader throughout
    cached = [outcome(raw) for raw in datas]
    monkeypatch.setattr(fio, "_vtable_fields", lambda *_a: None)
    parsed = 0
    for raw, got in zip(datas, cached, strict=True):
        want = outcome(raw)
        if isinstance(want, str):
            assert got == want
        else:
            _same_tree(got, want)
            parsed += 1
    assert parsed > len(datas) // 4
