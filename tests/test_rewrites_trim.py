"""rewrites.trim: padding no consumer reads is dropped, bit-exact, smaller copy."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import model_path

from tflite_reorder import tflm
from tflite_reorder.flatbuffer_io import load_model, serialize_model
from tflite_reorder.rewrites.edit import Editor, NotApplicable, buffers_in_use, compact
from tflite_reorder.rewrites.trim import candidates, trim
from tflite_reorder.runtimes import random_inputs, run_litert


def trimmed(name: str) -> tuple[bytes, bytes, Editor]:
    data = model_path(name).read_bytes()
    model = load_model(data).model
    used = buffers_in_use(model)
    ed = Editor(model, 0)
    for i in candidates(ed):
        trim(ed, ed.sg.operators[i])
    compact(model, used)
    return data, serialize_model(model), ed


def pad_shapes(data: bytes) -> list[tuple[int, ...]]:
    m = load_model(data).model
    sg = m.subgraphs[0]
    ed = Editor(m, 0)
    return [ed.shape(ed.outputs(op)[0]) for op in sg.operators if ed.opcode(op) == "PAD"]


@pytest.mark.tflm
def test_keras_stem_padding_is_trimmed_bit_exact():
    original, new, _ = trimmed("densenet_keras_int8")
    # 7x7/2 conv reads 69 of 70 padded rows; 3x3/2 pool reads 33 of 34.
    assert pad_shapes(original)[:2] == [(1, 70, 70, 3), (1, 34, 34, 16)]
    assert pad_shapes(new)[:2] == [(1, 69, 69, 3), (1, 33, 33, 16)]
    for inputs in random_inputs(original, 3, seed=2):
        want = run_litert(original, inputs)
        for got in (run_litert(new, inputs), tflm.run_tflm(new, inputs)):
            assert all(np.array_equal(w, g) for w, g in zip(want, got, strict=True))


def test_every_row_read_or_same_padding_is_refused():
    data = model_path("densenet_keras_int8").read_bytes()
    model = load_model(data).model
    ed = Editor(model, 0)
    pads = [op for op in ed.sg.operators if ed.opcode(op) == "PAD"]
    _, new, ed2 = trimmed("densenet_keras_int8")
    assert not candidates(ed2)  # trimmed once: nothing left unread
    consumer = ed.consumers(ed.outputs(pads[0])[0])[0]
    consumer.builtinOptions.padding = 0  # SAME: the conv pads again and reads every row
    with pytest.raises(NotApplicable, match="SAME"):
        trim(ed, pads[0])
