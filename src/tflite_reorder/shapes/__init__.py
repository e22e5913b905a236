"""Shape truth: the shapes kernels really produce, and writing them back.

TFLM allocates every arena tensor from the shape stored in the flatbuffer and never re-runs
shape inference, but some kernels (SPACE_TO_BATCH_ND among them) compute their own output
shape. The TF 2.21 converter stores the intermediates of a lowered dilated convolution with
batch 1 where the kernels produce batch 4, so TFLM runs them on a quarter-size buffer and its
outputs depend on the memory plan. ``infer_shapes`` re-derives every shape statically
(``hazards.find_hazards`` reports what disagrees) and ``fix_shapes`` writes the true shapes
back so the model is safe under any plan.

Modules: ``rules`` (one shape rule per builtin), ``values`` (small integer tensors tracked
by value, since shapes flow through them), ``infer`` (the walk, ``fix_shapes``).
"""

from .infer import fix_shapes, infer_shapes, infer_subgraph, true_graph, true_shapes
from .rules import SHAPE_RULES, Key, Shape
from .values import VALUE_RULES, int_value

__all__ = [
    "SHAPE_RULES", "VALUE_RULES", "Key", "Shape", "fix_shapes", "infer_shapes",
    "infer_subgraph", "int_value", "true_graph", "true_shapes",
]
