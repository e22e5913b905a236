"""The compiled loop of ``scheduler.search`` (the C extension ``_searchcore``) and its tables.

``scheduler.search`` is a best-first search whose inner loop (pop a state, apply free
moves, cost every ready macro, push the successors) runs hundreds of thousands of times on
large stages; in C it runs the same states in the same order 20-60x faster. The Python loop
stays the reference: ``tests/test_searchcore.py`` checks that both give the same order,
peak, proof and state count on random graphs and on every shipped model.

No memory rule is re-implemented in C. ``tables`` packs what the Python loop reads from
``scheduler.Context`` (itself built from ``memory.Problem``, the home of the lifetime and
in-place rules) into flat arrays: per op the macro predecessors, successors, sources run by
its macro, outputs plus nested bytes, kept outputs, arena inputs with their readers, and per
in-place pair the inputs whose death lets the output share their buffer.

Which loop runs: the compiled one when the extension is built, unless the environment
variable ``TFLITE_REORDER_PURE_PYTHON`` is set to a value other than ``""`` or ``"0"``, or
``scheduler.COMPILED_SEARCH`` is False. ``unavailable()`` gives the reason it does not run.
"""

from __future__ import annotations

import os
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .bounds import INF
from .reductions import bits

try:
    from ._searchcore import beam as _beam
    from ._searchcore import decide as _decide
    from ._searchcore import flow_bound as _flow_bound
    from ._searchcore import flow_value as _flow_value
    from ._searchcore import make_flow as _make_flow
    from ._searchcore import make_set_bounds as _make_set_bounds
    from ._searchcore import make_tables as _make_tables
    from ._searchcore import search as _search
    from ._searchcore import set_bound as _set_bound
    from ._searchcore import set_bounds_flow as _set_bounds_flow
except ImportError as exc:  # not built (no compiler at install time) or a foreign platform
    _make_tables = _search = _make_flow = _flow_bound = _flow_value = _beam = _decide = None
    _make_set_bounds = _set_bound = _set_bounds_flow = None
    _IMPORT_ERROR = f"the compiled search core is not built ({exc})"
else:
    _IMPORT_ERROR = ""

ENV = "TFLITE_REORDER_PURE_PYTHON"
FRONTIER = 64  # open states returned when a limit stops the search (scheduler's 4 * tries)


def unavailable() -> str:
    """Why the compiled loop does not run ("" when it does, the switch aside)."""
    if os.environ.get(ENV, "") not in ("", "0"):
        return f"{ENV} is set"
    return _IMPORT_ERROR or ""


def _words(mask: int, W: int) -> bytes:
    return mask.to_bytes(8 * W, "little")


@dataclass
class Compiled:
    """What the C loop keeps per context: its tables and the compiled closure flows."""

    tables: object
    flows: dict[int, object] = field(default_factory=dict)  # op -> make_flow capsule
    closures: dict[int, FlowClosure] = field(default_factory=dict)  # op -> its bounds
    shared: object = None  # make_flow capsule of the bounds.SharedClosure network
    shared_memo: dict[tuple[int, int], int] = field(default_factory=dict)  # its flows


def compiled(ctx) -> Compiled:
    """The compiled tables of ``ctx`` (made once, kept on ``ctx.compiled``)."""
    if ctx.compiled is not None:
        return ctx.compiled
    n = ctx.p.n_ops
    W = max(1, (n + 63) // 64)
    shares = ctx.mshares if ctx.source else ctx.shares
    succ_ptr, succ = array("i", [0]), array("i")
    in_ptr, in_size, in_cptr, cons = array("i", [0]), array("q"), array("i"), array("i")
    spans: dict[int, tuple[int, int]] = {}  # readers mask -> its range in cons (shared)
    al_ptr, al_size, al_cptr, al_c = array("i", [0]), array("q"), array("i", [0]), array("i")
    for v in range(n):
        succ.extend(ctx.msuccs[v])
        succ_ptr.append(len(succ))
        local: dict[int, int] = {}
        for j, (t, size, cmask) in enumerate(ctx.in_info[v]):
            local.setdefault(t, j)
            in_size.append(size)
            span = spans.get(cmask)
            if span is None:
                start = len(cons)
                cons.extend(bits(cmask))
                span = spans[cmask] = (start, len(cons))
            in_cptr.extend(span)
        in_ptr.append(len(in_size))
        for o_size, cand_mask in ctx.alias_info[v]:
            # a candidate that is no arena input of v never dies at v (scheduler._step)
            al_c.extend(local[t] for t in bits(cand_mask) if t in local)
            al_size.append(o_size)
            al_cptr.append(len(al_c))
        al_ptr.append(len(al_size))
    ctx.compiled = Compiled(_make_tables(
        n, W,
        b"".join(_words(m, W) for m in ctx.mpred),
        b"".join(_words(m, W) for m in shares),
        b"".join(_words(m, W) for m in ctx.block),
        _words(ctx.can_free, W),
        array("q", [ctx.out_total[v] + ctx.extra[v] for v in range(n)]),
        array("q", ctx.out_kept),
        succ_ptr, succ, in_ptr, in_size, in_cptr, cons, al_ptr, al_size, al_cptr, al_c,
    ))
    return ctx.compiled


def flow(closure):
    """A ``bounds.StateClosure``'s own flow network, compiled: bound(S) is the same number
    (the value of a maximum flow is unique), computed by Dinic's algorithm in C."""
    nodes, tails, heads, caps = closure.network
    return _make_flow(
        nodes, np.ascontiguousarray(tails, np.int32), np.ascontiguousarray(heads, np.int32),
        np.ascontiguousarray(caps, np.int64), np.ascontiguousarray(closure.arcs, np.int32),
        np.ascontiguousarray(closure.ops, np.int32),
        np.ascontiguousarray(closure.out_arcs, np.int32), closure.big, closure.base, closure.gain)


def flow_bound(flow_capsule, S: int, n_ops: int) -> int:
    """``StateClosure.bound(S)`` on a compiled flow (``flow``)."""
    W = max(1, (n_ops + 63) // 64)
    return _flow_bound(flow_capsule, _words(S, W), W)


def shared_flow(ctx, shared) -> Callable[[int, int], int]:
    """``bounds.SharedClosure.flow_value`` on that network compiled (once per context):
    the forced maximum flow by Dinic's algorithm in C, the same value as OR-tools' (a
    maximum flow's value is unique), remembered per (forced in, forced out): the bounds over
    overlapping sets of ops (``bounds.order_bound``) ask for the same flows again."""
    comp = compiled(ctx)
    if comp.shared is None:
        comp.shared = flow(shared)
    capsule, W = comp.shared, max(1, (ctx.p.n_ops + 63) // 64)
    memo = comp.shared_memo

    def value(S: int, out: int) -> int:
        got = memo.get((S, out))
        if got is None:
            got = memo[(S, out)] = _flow_value(capsule, _words(S, W), _words(out, W), W)
        return got

    return value


class FlowClosure:
    """``bounds.StateClosure.bound(S, out)`` on the closure's compiled flow (``flow``): the
    same checks and arithmetic around the maximum flow, whose value is unique, so the same
    numbers (``tests/test_searchcore.py``) at a fraction of the cost. Bounds asked for again
    (``bounds.order_bound`` over overlapping sets of ops asks for many) are remembered."""

    def __init__(self, closure, flow_capsule, n_ops: int) -> None:
        self.closure, self.capsule, self.W = closure, flow_capsule, max(1, (n_ops + 63) // 64)
        self.memo: dict[tuple[int, int], int] = {}

    def bound(self, S: int, out: int = 0) -> int:
        sc = self.closure
        if (S | sc.down) & (out | sc.up):
            return INF
        got = self.memo.get((S, out))
        if got is None:
            value = _flow_value(self.capsule, _words(S, self.W), _words(out, self.W), self.W)
            got = INF if value >= sc.big else sc.base - (sc.gain - value)
            self.memo[(S, out)] = got
        return got


def flow_closure(ctx, closure_of: Callable, v: int) -> FlowClosure:
    """v's ``FlowClosure`` (``closure_of(v)``: its ``bounds.StateClosure``), made once per
    context; its flow is the one the C search uses for v."""
    comp = compiled(ctx)
    got = comp.closures.get(v)
    if got is None:
        if v not in comp.flows:
            comp.flows[v] = flow(closure_of(v))
        got = comp.closures[v] = FlowClosure(closure_of(v), comp.flows[v], ctx.p.n_ops)
    return got


class SetBounds:
    """``bounds.order_bound_work(ctx, ops, closure, above, PairTable(ctx, closure,
    root).lower)`` for sets of ``cands``, in C (``_setbound.c``): the same bound and the
    same count of placed sets (the same steps in the same order), without the Python
    around the flows and without most flows: a constrained bound comes from a looser
    key's (the same op without one other op's constraint) when one of that key's
    minimising closures meets the constraint, and a step whose looser keys already reach
    the best continuation is skipped (``docs/scheduling.md``). Every flow and cheap bound
    is remembered for all the sets asked, as ``FlowClosure`` and ``PairTable`` do;
    ``closure_of(v)`` gives v's
    ``bounds.StateClosure``, whose network is compiled when a set first holds v (once per
    context, as ``flow_closure``'s: most sets stop at the first pairs on small models)."""

    MAX_OPS = 24  # _setbound.c's SB_MAX_OPS: larger sets are refused (placed sets: 2^k)
    MEMO_BYTES = 256 << 20  # the remembered flows' most bytes (then they are forgotten)

    def __init__(self, ctx, closure_of: Callable, cands: Sequence[int],
                 root: Sequence[int], memo_bytes: int = MEMO_BYTES) -> None:
        self.comp, self.closure_of = compiled(ctx), closure_of
        W = max(1, (ctx.p.n_ops + 63) // 64)
        self.index = {v: i for i, v in enumerate(cands)}
        self.ready: set[int] = set()  # candidates whose flow the C object holds
        self.capsule = _make_set_bounds(
            len(cands), array("q", cands),
            b"".join(_words(ctx.anc[v] | 1 << v, W) for v in cands),
            b"".join(_words(ctx.desc[v] | 1 << v, W) for v in cands),
            array("q", [root[v] for v in cands]), W, memo_bytes)

    def __call__(self, ops: Sequence[int], above: int = -1) -> tuple[int, int]:
        """(the bound, the placed sets it evaluated), as ``order_bound_work``; raises
        ValueError for a set of more than ``MAX_OPS`` ops or an op not among ``cands``,
        MemoryError when its tables do not fit."""
        for v in ops:
            if v not in self.ready:
                if v not in self.index:
                    raise ValueError("searchcore: an op that is not a candidate")
                flows = self.comp.flows
                if v not in flows:  # made when first needed, kept for the C search too
                    flows[v] = flow(self.closure_of(v))
                _set_bounds_flow(self.capsule, self.index[v], flows[v])
                self.ready.add(v)
        return _set_bound(self.capsule, array("i", [self.index[v] for v in ops]), above)


def beam(ctx, start: int, goal: int, ready0: int, mem: int, width: int,
         deadline: float) -> tuple[list[int], int] | None:
    """``improve.beam_order``'s layers in C: (the macros run, in order; the maximum step),
    the same as the Python loop's, or None if ``deadline`` passes first or ``goal`` cannot
    be reached."""
    W = max(1, (ctx.p.n_ops + 63) // 64)
    return _beam(compiled(ctx).tables, _words(start, W), _words(goal, W), _words(ready0, W),
                 mem, width, max(0.0, deadline - time.monotonic()))


def compiled_decide(ctx, start: int, goal: int, ready0: int, mem: int, K: int,
                    deadline: float, max_states: int) -> tuple[list[int] | None, int, str, int]:
    """``decision.decide``'s depth-first loop in C: (the macros of an order within K, in
    order, or None; states explored; why it stopped; the least step above K seen), the
    same as the Python loop's.
    Raises MemoryError when out of memory."""
    W = max(1, (ctx.p.n_ops + 63) // 64)
    return _decide(compiled(ctx).tables, _words(start, W), _words(goal, W), _words(ready0, W),
                   mem, K, max(0.0, deadline - time.monotonic()), max_states)


def run(ctx, start: int, goal: int, ready0: int, mem: int, floor: int, ub: int,
        deadline: float, max_states: int, closure_after: int, cands: Sequence[int],
        closure_of: Callable | None, state_bound: Callable[[int, int], int] | None,
        progress: Callable | None, dominance: bool = True):
    """The search loop in C: (found key or None, states expanded, stopped, the smallest open
    items as the Python loop's heap tuples, {state: (previous state, macros run)} along the
    paths to the goal or to those open states). Raises MemoryError when out of memory.

    Per-state bounds: with ``closure_of(v)`` (v's ``bounds.StateClosure``) the C loop runs
    ``scheduler._state_bound`` on compiled flows of those closures, made when first needed;
    otherwise it calls ``state_bound(S, key)`` (Python) for them. ``dominance``: states
    that ``scheduler.dominated`` finds dominated are closed unexpanded, as in Python.
    """
    W = max(1, (ctx.p.n_ops + 63) // 64)
    comp = compiled(ctx)

    def flow_of(i: int):
        """The compiled flow of cands[i]; None (the C loop then asks ``state_bound``) when
        the closure does not expose its network."""
        v = cands[i]
        if v not in comp.flows:
            closure = closure_of(v)
            comp.flows[v] = flow(closure) if hasattr(closure, "network") else None
        return comp.flows[v]

    return _search(
        comp.tables, _words(start, W), _words(goal, W), _words(ready0, W), mem, floor, ub,
        max(0.0, deadline - time.monotonic()), max_states, closure_after, array("i", cands),
        flow_of if closure_of is not None else None, state_bound, progress, FRONTIER,
        dominance)
