"""In-place aliasing is only allowed for kernels shown safe on TFLM itself.

Each ``models/inplace_<op>_<dtype>.tflite`` (``tools/make_inplace_models.py``) has the op
reading an intermediate that dies there. We plan it twice, once letting the op's output
take that input's buffer (``simulate(inplace={op})``) and once without aliasing, write
each plan as TFLM's offline plan, and require bit-identical outputs on random inputs.
Every op type in ``INPLACE_OPS`` must have passed this for every dtype it was built for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import INPLACE_MODELS

from tflite_reorder import tflm
from tflite_reorder.arena import plan_arena, write_plan
from tflite_reorder.flatbuffer_io import load_model
from tflite_reorder.graph import build_graph
from tflite_reorder.memory import INPLACE_OPS, simulate
from tflite_reorder.runtimes import structured_inputs

SEEDS = (0, 1, 2)

# Model name -> op types it proves ("squeeze_expand_dims" holds one of each).
COMPOUND = {"squeeze_expand_dims": ("SQUEEZE", "EXPAND_DIMS")}
# Op types whose models exist but whose kernels failed the test (none so far).
UNSAFE: frozenset[str] = frozenset()

pytestmark = pytest.mark.tflm


def ops_of(path: Path) -> tuple[str, ...]:
    stem = path.stem.removeprefix("inplace_")
    name = stem.rsplit("_", 1)[0]  # drop the dtype
    return COMPOUND.get(name, (name.upper(),))


def aliased_ops(graph, use) -> set[str]:
    """Op types whose output shares a buffer with one of its inputs in ``use``."""
    groups = [set(b.tensors) for b in use.buffers if len(b.tensors) > 1]
    found = set()
    for s, sg in enumerate(graph.subgraphs):
        for op in sg.ops:
            for o in op.outputs:
                if any((s, o) in g and any((s, i) in g for i in op.inputs) for g in groups):
                    found.add(op.opcode)
    return found


def planned_model(data: bytes, inplace) -> tuple[bytes, int, set[str]]:
    model_t = load_model(data).model
    graph = build_graph(model_t)
    use = simulate(graph, graph.stored_orders(), inplace=inplace)
    plan = plan_arena(use)
    return write_plan(model_t, graph, plan), plan.head, aliased_ops(graph, use)


@pytest.mark.parametrize("path", INPLACE_MODELS, ids=lambda p: p.stem)
def test_aliasing_keeps_outputs_bit_identical(path: Path) -> None:
    data = path.read_bytes()
    ops = ops_of(path)
    aliased, aliased_head, which = planned_model(data, frozenset(ops))
    plain, plain_head, none = planned_model(data, False)
    assert set(ops) <= which, f"{path.name}: the model does not alias {ops} (only {which})"
    assert not none
    assert tflm.measure_arena(aliased).head == aliased_head
    assert tflm.measure_arena(plain).head == plain_head
    for seed in SEEDS:
        inputs = structured_inputs(data, seed)
        want = tflm.run_tflm(plain, inputs)
        got = tflm.run_tflm(aliased, inputs)
        for w, g in zip(want, got, strict=True):
            assert w.dtype == g.dtype and w.shape == g.shape
            assert np.array_equal(w.view(np.uint8), g.view(np.uint8)), (
                f"{path.name}: in-place {ops} changed the output (seed {seed})"
            )


def test_every_inplace_op_was_proven() -> None:
    """No op type may be in INPLACE_OPS without a passing model for it."""
    proven = {op for p in INPLACE_MODELS for op in ops_of(p)} - UNSAFE
    assert INPLACE_OPS <= proven, f"unproven in-place ops: {sorted(INPLACE_OPS - proven)}"
    assert not (INPLACE_OPS & UNSAFE)
