"""Graph rewrites that go below the optimal-order peak (SERENITY, Ahn et al. 2020, §5).

``rewrite_model`` is the one entry point: it returns a rewritten copy of a model with only
the rewrites that lower the optimal-order peak and whose measured error is within bounds.
Modules: ``edit`` (ModelT surgery), ``quant`` (int8 ranges for partial products),
``partition`` (channel-/kernel-wise partitioning around channel concats), ``subsample``
(strided 1×1 ops after a shift), ``add_tree`` (ADD trees to in-place chains), ``measure``
(peak and error), ``search`` (what to apply).
"""

from .search import RewriteResult, rewrite_model

__all__ = ["RewriteResult", "rewrite_model"]
