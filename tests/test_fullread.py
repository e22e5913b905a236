"""fullread: the object tree filled from the compiled reader is the generated reader's,
field for field, on every shipped model, the bad-input corpus and corrupt bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from conftest import ALL_MODELS, ROOT
from test_fastread import _mutations

from tflite_reorder import fullread
from tflite_reorder.flatbuffer_io import ModelError, parse_model, serialize_model

CORPUS = sorted((ROOT / "tests" / "bad_inputs").glob("*.tflite"))


def _same(a, b, where: str = "model") -> None:
    """``a`` and ``b`` equal as trees: the same classes, attributes and values; numpy
    arrays of the same dtype, shape, values and writability (both zero-copy views)."""
    assert type(a) is type(b), where
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert a.flags.writeable == b.flags.writeable, where
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), where
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    elif hasattr(a, "__dict__"):
        assert list(vars(a)) == list(vars(b)), where
        for k in vars(a):
            _same(getattr(a, k), getattr(b, k), f"{where}.{k}")
    else:
        assert a == b, where


def _both(raw: bytes):
    """parse_model's outcome with the compiled fill and with the generated reader alone."""
    out = []
    for enabled in (True, False):
        fullread.ENABLED = enabled
        try:
            out.append(parse_model(raw).model)
        except ModelError as exc:
            out.append(f"ModelError: {exc}")
        finally:
            fullread.ENABLED = True
    return out


def test_the_reader_runs_here() -> None:
    """CI builds the extension; these tests would compare the generated reader with itself."""
    assert fullread.available()
    raw = (ROOT / "models" / "inception_int8.tflite").read_bytes()
    from tflite_reorder.flatbuffer_io import _fast_tables

    with _fast_tables(raw):
        assert isinstance(fullread.unpack_model(raw), schema.ModelT)


@pytest.mark.parametrize("path", ALL_MODELS + CORPUS, ids=lambda p: p.name)
def test_same_tree_or_same_error(path: Path) -> None:
    fast, slow = _both(path.read_bytes())
    if isinstance(slow, str) or isinstance(fast, str):
        assert fast == slow
        return
    _same(fast, slow)
    assert serialize_model(fast) == serialize_model(slow)


def _rare_fields_model() -> bytes:
    """A shipped model with every field the compiled fill hands to the generated code or
    reads rarely: sparsity, variant tensors, builtin_options_2, custom options, mutating
    inputs, intermediates, a shape signature, large custom options."""
    model = parse_model((ROOT / "models" / "add_tree_int8.tflite").read_bytes()).model
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


def test_rare_fields_are_the_generated_readers() -> None:
    fast, slow = _both(_rare_fields_model())
    assert not isinstance(fast, str)
    _same(fast, slow)
    sg = fast.subgraphs[0]
    assert sg.tensors[1].sparsity is not None and sg.tensors[2].variantTensors
    assert sg.operators[1].builtinOptions2.dimension == 2
    assert list(sg.operators[0].mutatingVariableInputs) == [True, False]


@pytest.mark.parametrize("name", ["while_float32", "add_tree_int8", "dilated_int8",
                                  "inception_int8"])
def test_corrupt_bytes_same_tree_or_same_error(name: str) -> None:
    """Mutated and truncated models: the same tree or the same one-line error."""
    raw = (ROOT / "models" / f"{name}.tflite").read_bytes()
    accepted = 0
    for mutated in _mutations(raw, 200, seed=len(name)):
        fast, slow = _both(mutated)
        if isinstance(slow, str) or isinstance(fast, str):
            assert fast == slow
            continue
        _same(fast, slow)
        accepted += 1
    assert accepted > 20  # enough mutations stayed readable to compare trees
