"""fullread: the object tree filled from the compiled reader is the generated reader's,
field for field, on every shipped model, the bad-input corpus and corrupt bytes."""

from __future__ import annotations

from pathlib import Path

import pytest
from ai_edge_litert import schema_py_generated as schema
from conftest import ALL_MODELS, ROOT
from test_fastread import _mutations
from test_flatbuffer_io import _same_tree
from tinymodels import rare_fields_model

from tflite_reorder import fullread
from tflite_reorder.flatbuffer_io import ModelError, parse_model, serialize_model

CORPUS = sorted((ROOT / "tests" / "bad_inputs").glob("*.tflite"))


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
    _same_tree(fast, slow)
    assert serialize_model(fast) == serialize_model(slow)


def test_rare_fields_are_the_generated_readers() -> None:
    fast, slow = _both(rare_fields_model())
    assert not isinstance(fast, str)
    _same_tree(fast, slow)
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
        _same_tree(fast, slow)
        accepted += 1
    assert accepted > 20  # enough mutations stayed readable to compare trees
