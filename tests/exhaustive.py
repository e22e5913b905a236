"""An independent exhaustive optimum: memoised recursion over executed-op sets.

Written from TFLM's rules directly (live bytes recomputed from scratch at every step), so it
shares no code with the scheduler's incremental search. Exponential: small graphs only.
"""

from __future__ import annotations

import sys
from functools import cache

from tflite_reorder.memory import Problem, initial_live


class TooLarge(Exception):
    pass


def live_at(p: Problem, done: frozenset[int], v: int) -> int:
    """Bytes live while v runs after exactly the ops in ``done``."""
    after = done | {v}
    live = 0
    for t, size in enumerate(p.size):
        if not size:
            continue
        prod = p.producer[t]
        made = prod in after if prod >= 0 else t in p.inputs
        if not made:
            continue
        if t in p.op_out[v] or p.pinned[t] or any(c not in done for c in p.consumers[t]):
            live += size
    for o, cands in p.alias[v]:
        if any(all(c in after for c in p.consumers[i]) and not p.pinned[i] for i in cands):
            live -= p.size[o]
    return live + p.extra[v]


def optimum(p: Problem, max_states: int = 200_000) -> int:
    preds = [set(ps) for ps in p.preds]
    sys.setrecursionlimit(max(1000, 10 * p.n_ops))

    @cache
    def best(done: frozenset[int]) -> int:
        if best.cache_info().currsize > max_states:
            raise TooLarge
        if len(done) == p.n_ops:
            return 0
        return min(
            max(live_at(p, done, v), best(done | {v}))
            for v in range(p.n_ops)
            if v not in done and preds[v] <= done
        )

    return max(initial_live(p), best(frozenset()))
