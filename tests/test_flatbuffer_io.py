"""``flatbuffer_io``: reading, the writer's 16-byte buffer alignment, external data, offline
plans, atomic writes, and the one-line errors for what it refuses."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from conftest import model_path
from tinymodels import diamond, model_t

from tflite_reorder import flatbuffer_io as fio
from tflite_reorder.flatbuffer_io import ModelError, load_model, parse_model, serialize_model


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
