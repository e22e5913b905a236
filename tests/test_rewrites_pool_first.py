"""rewrites.pool_first: a transition's 1x1 conv runs after its average pool.

int8 rounding changes (measured here, small); TFLM computes what LiteRT computes; the
convolution writes the pooled size.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import model_path

from tflite_reorder import tflm
from tflite_reorder.flatbuffer_io import load_model, serialize_model
from tflite_reorder.rewrites.edit import Editor, NotApplicable, buffers_in_use, compact
from tflite_reorder.rewrites.measure import Reference
from tflite_reorder.rewrites.pool_first import candidates, move
from tflite_reorder.runtimes import random_inputs, run_litert


def moved(name: str) -> tuple[bytes, bytes, int]:
    data = model_path(name).read_bytes()
    model = load_model(data).model
    used = buffers_in_use(model)
    ed = Editor(model, 0)
    sites = [ed.sg.operators[i] for i in candidates(ed)]
    for op in sites:
        move(ed, op)
    compact(model, used)
    return data, serialize_model(model), len(sites)


def conv_pool_pairs(data: bytes) -> list[tuple[str, str]]:
    """(first, second) opcodes of every conv/pool pair linked by a tensor."""
    m = load_model(data).model
    ed = Editor(m, 0)
    pairs = []
    for op in ed.sg.operators:
        for e in ed.consumers(ed.outputs(op)[0]):
            codes = (ed.opcode(op), ed.opcode(e))
            if set(codes) == {"CONV_2D", "AVERAGE_POOL_2D"}:
                pairs.append(codes)
    return pairs


@pytest.mark.tflm
def test_transitions_pool_first_bounded_error():
    original, new, n = moved("densenet_keras_int8")
    assert n == 2  # two transitions (blocks 3-4-3)
    assert conv_pool_pairs(original).count(("CONV_2D", "AVERAGE_POOL_2D")) == 2
    assert conv_pool_pairs(new).count(("AVERAGE_POOL_2D", "CONV_2D")) == 2
    for inputs in random_inputs(original, 2, seed=4):
        got = run_litert(new, inputs)
        assert all(np.array_equal(a, b) for a, b in
                   zip(got, tflm.run_tflm(new, inputs), strict=True))
    ref = Reference(original, load_model(original).model, 6, 1)
    stats = ref.compare(new)
    assert not stats.identical and stats.max_lsb <= 3  # int8 rounding moved: small


def test_only_a_linear_1x1_conv_before_an_average_pool():
    model = load_model(model_path("densenet_keras_int8").read_bytes()).model
    ed = Editor(model, 0)
    i = candidates(ed)[0]
    conv = ed.sg.operators[i]
    conv.builtinOptions.fusedActivationFunction = 1  # RELU: pool(relu(y)) != relu(pool(y))
    with pytest.raises(NotApplicable, match="activation"):
        move(ed, conv)
    stem = ed.sg.operators[1]  # the 7x7 stem conv
    with pytest.raises(NotApplicable, match="1x1"):
        move(ed, stem)
