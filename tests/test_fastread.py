"""fastread: the graph read straight from the flatbuffer tables equals the object-API one."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest
from conftest import ALL_MODELS, ROOT

from tflite_reorder import fastread
from tflite_reorder.candidate import read_graph, read_safe_graph
from tflite_reorder.fastread import read_lite
from tflite_reorder.flatbuffer_io import ModelError, parse_model, serialize_model
from tflite_reorder.graph import build_graph
from tflite_reorder.memory import simulate
from tflite_reorder.shapes import true_shapes

CORPUS = sorted((ROOT / "tests" / "bad_inputs").glob("*.tflite"))


def _slow(raw: bytes):
    model = parse_model(raw).model
    return build_graph(model, true_shapes(model))


def _outcome(read, raw: bytes):
    try:
        return read(raw)
    except ModelError as exc:
        return f"ModelError: {exc}"


@pytest.mark.parametrize("path", ALL_MODELS + CORPUS, ids=lambda p: p.name)
def test_same_graph_or_same_error(path: Path) -> None:
    raw = path.read_bytes()
    assert _outcome(read_graph, raw) == _outcome(_slow, raw)


def _slow_safe(raw: bytes):
    """The TFLM-safe graph as the object-API path builds it (``optimize``'s repair)."""
    from tflite_reorder.rewrites.padding import repair_model

    model = parse_model(raw).model
    graph = build_graph(model, true_shapes(model))
    if not any(op.opcode == "SPACE_TO_BATCH_ND" for sg in graph.subgraphs for op in sg.ops):
        return graph
    repair_model(model)
    return build_graph(model, true_shapes(model))


@pytest.mark.parametrize("path", ALL_MODELS + CORPUS, ids=lambda p: p.name)
def test_safe_graph_repaired_on_the_tables(path: Path) -> None:
    """The padding repair edits the tables read for the call, by the same code as on the
    object API: the same graph (or error) as repairing the fully parsed model."""
    raw = path.read_bytes()
    assert _outcome(read_safe_graph, raw) == _outcome(_slow_safe, raw)


def test_path_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"1234TFL2" + bytes(32))
    with pytest.raises(ModelError, match=r"x\.tflite: not a TFLite flatbuffer"):
        read_graph(bad)
    with pytest.raises(ModelError, match="no such file"):
        read_graph(tmp_path / "missing.tflite")


def test_external_buffers_are_constants(models_dir: Path) -> None:
    """Data stored after the flatbuffer (offset/size) is read where parse_model reads it."""
    model = parse_model((models_dir / "mobilenet_int8.tflite").read_bytes()).model
    for buf in model.buffers:
        buf.external = buf.data is not None and len(buf.data) > 64
    raw = serialize_model(model)
    lite = read_lite(raw)
    assert any(b.external for b in lite.buffers)
    assert read_graph(raw) == _slow(raw)
    loaded = parse_model(raw).model
    for a, b in zip(lite.buffers, loaded.buffers, strict=True):
        assert (a.data is None) == (b.data is None)
        if a.data is not None:
            assert bytes(a.data) == bytes(b.data)
    with pytest.raises(ModelError, match="points past the end of the file"):
        read_lite(raw[: len(raw) - 8])


def _mutations(raw: bytes, n: int, seed: int):
    rng = random.Random(seed)
    for _ in range(n):
        b = bytearray(raw)
        kind = rng.random()
        if kind < 0.2:
            yield bytes(b[: rng.randrange(8, len(b))])
            continue
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(8, len(b))
            b[i] = rng.randrange(256) if kind < 0.7 else b[i] ^ (1 << rng.randrange(8))
        yield bytes(b)


@pytest.mark.parametrize("name", ["while_float32", "add_tree_int8", "dilated_int8"])
def test_corrupt_bytes_raise_model_error_only(models_dir: Path, name: str) -> None:
    """Mutated and truncated models: the fast reader raises nothing but ModelError, and
    where both readers accept the bytes the graphs and peaks agree."""
    raw = (models_dir / f"{name}.tflite").read_bytes()
    agreed = 0
    for mutated in _mutations(raw, 150, seed=len(name)):
        fast = _outcome(read_graph, mutated)
        try:
            slow = _slow(mutated)
        except Exception:  # the generated object API raises anything on corrupt input
            continue
        if isinstance(fast, str):
            continue
        assert fast == slow
        orders = fast.stored_orders()
        assert simulate(fast, orders).lower_bound == simulate(slow, orders).lower_bound
        agreed += 1
    assert agreed > 10  # the mutations left enough models valid to compare


def test_loaded_model_and_graph_are_accepted(models_dir: Path) -> None:
    raw = (models_dir / "darts_int8.tflite").read_bytes()
    g = read_graph(raw)
    assert read_graph(parse_model(raw)) == g
    assert read_graph(g) is g
    assert read_graph(models_dir / "darts_int8.tflite") == g


def test_lite_model_is_not_modified_by_reading(models_dir: Path) -> None:
    raw = (models_dir / "nasnet_cells_int8.tflite").read_bytes()
    lite = read_lite(raw)
    before = copy.copy([(t.shape, t.type, t.buffer) for t in lite.subgraphs[0].tensors])
    build_graph(lite, true_shapes(lite))
    assert [(t.shape, t.type, t.buffer) for t in lite.subgraphs[0].tensors] == before


@pytest.mark.parametrize("name", ["dilated_int8", "darts_int8", "while_float32"])
def test_peak_memory_agrees_with_optimize(models_dir: Path, name: str) -> None:
    """The fast reader's peaks are optimize's on the same input (SPACE_TO_BATCH_ND models
    included: their true shapes come from the same inference, and both plan the model made
    safe in TFLM, its padding explicit)."""
    from tflite_reorder import api

    path = models_dir / f"{name}.tflite"
    pm = api.peak_memory(path)
    rep = api.optimize(path, verify=False, plan=False).report
    assert pm.stored == rep.peak_before
    assert pm.optimal == rep.peak_after_no_inplace or not rep.optimal


def _fields(raw: bytes):
    """Every field read_lite reads, as plain values (or its error)."""
    try:
        m = read_lite(raw)
    except ModelError as exc:
        return f"ModelError: {exc}"
    return (
        m.version,
        [(c.builtinCode, c.deprecatedBuiltinCode, c.customCode, c.version)
         for c in m.operatorCodes],
        [([(t.shape, t.type, t.buffer, t.name, t.isVariable, t.sparsity, t.externalBuffer)
           for t in sg.tensors],
          [(o.opcodeIndex, o.inputs, o.outputs, o.intermediates, o.builtinOptionsType,
            o._options_pos) for o in sg.operators],
          sg.inputs, sg.outputs, sg.name) for sg in m.subgraphs],
        [(b._start, b._len, b.offset, b.size, b.external) for b in m.buffers],
        [(d.name, d.buffer) for d in m.metadata],
    )


def test_compiled_field_reads_equal_the_struct_reads(monkeypatch) -> None:
    """``_searchcore.lite_tables`` reads what the struct reads read, on every model, the
    bad-input corpus and mutated bytes; where a read fails it leaves the error to them."""
    import tflite_reorder.fastread as fr

    if fr._compiled_tables is None:
        pytest.skip("extension not built")
    cases = [p.read_bytes() for p in ALL_MODELS + CORPUS]
    for name in ("add_tree_int8", "while_float32", "audio_custom"):
        raw = (ROOT / "models" / f"{name}.tflite").read_bytes()
        cases += list(_mutations(raw, 150, seed=3 * len(name)))
    for raw in cases:
        monkeypatch.setattr(fr, "COMPILED", True)
        got = _fields(raw)
        monkeypatch.setattr(fr, "COMPILED", False)
        assert got == _fields(raw)


def _option_values(raw: bytes) -> list:
    """Every operator's every options field as ``LiteOperator.option`` reads it (None
    where the bytes are refused)."""
    from ai_edge_litert import schema_py_generated as schema
    try:
        model = read_lite(raw)
    except ModelError:
        return []
    out = []
    for sg in model.subgraphs:
        for op in sg.operators:
            cls = fastread._accessor_class(op.builtinOptionsType)
            unpacked = getattr(schema, cls.__name__ + "T", None) if cls is not None else None
            for name in sorted(vars(unpacked()) if unpacked is not None else ()):
                value = op.option(name)
                out.append((name, value.tolist() if hasattr(value, "tolist") else value))
    return out


@pytest.mark.parametrize("name", ["while_float32", "tile_mbv2_float32", "dilated_int8",
                                  "concat_conv_int8"])
def test_scalar_options_read_as_their_accessors_read_them(name: str, monkeypatch) -> None:
    """``option`` reads a scalar field straight from the bytes (``_scalar_plan``, found by
    running the generated accessor on stand-ins): the same values as the accessors, on
    shipped and mutated models, every field of every operator's options."""
    raw = (ROOT / "models" / f"{name}.tflite").read_bytes()
    cases = [raw, *_mutations(raw, 60, seed=len(name) + 1)]
    monkeypatch.setattr(fastread, "_SCALARS", {})
    direct = [_option_values(r) for r in cases]
    assert any(plan is not None for plan in fastread._SCALARS.values())
    monkeypatch.setattr(fastread, "_SCALARS", {})
    monkeypatch.setattr(fastread, "_scalar_plan", lambda kind, read: None)
    assert [_option_values(r) for r in cases] == direct
