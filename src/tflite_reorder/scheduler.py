"""Exact minimum-peak operator order for one subgraph, with a certificate.

The peak of a partial schedule depends only on the set S of operators already run
(SERENITY, Ahn et al., MLSys 2020), so the optimum is a bottleneck (minimax) path in the
lattice of downsets. We search it best-first and make the lattice small:

* **Floor.** Every order peaks at least at ``lower_bound`` (the bytes that must be live at
  each operator whatever the order). Costs below the floor are all equal, so the search
  keys states by ``max(peak so far, floor)`` and dives (deepest first) among equal keys.
* **Free moves.** A ready operator whose kept outputs are no larger than the inputs that die
  at it, and whose step stays under the key, can be run at once: moving it to the front of
  any completion lowers or keeps every later step (checked against brute force in tests).
* **Sources run late.** Ops that free nothing (DEQUANTIZE of a weight, ...) run as part of
  a macro just before their first consumer (``reductions``: proven, brute-force checked).
* **Cut points.** An operator comparable to every other splits the problem: the state at it
  is forced, so the pieces are solved apart, hardest first, each under the floor raised by
  the pieces already solved; large problems are split into sub-problems in linear time
  first (``decompose``), so no work before the deadline is quadratic.
* **Per-state bounds.** A long search keys states also by an op's minimum-cut bound with
  the executed set forced in (``bounds.StateClosure``, A*).
* **Decisions.** Before any best-first search, each segment is asked "an order within
  the floor?" (cheap probes, ``PROBE_STATES``) and then "an order better than the
  incumbent?" until the answer is no (``decision``: a depth-first search under a fixed
  bound, free moves under that bound, one visited set): a no proves the incumbent optimal.
* **Anytime, never worse.** Starting orders: the stored order (canonical form), a step-
  greedy order and a depth-first post-order. A first search pass (a share of the time,
  ``QUICK_STATES``) settles most problems the decisions left open. Segments it leaves open
  get, each in a share of the time by its size (not first come, first served): beam starts
  (``improve``), every op's closure bound (which then ranks the per-state bounds), a second
  search pass under the better incumbents, pair bounds at the root (``bounds.pair_bounds``)
  and window re-solves of the best order (``improve``). The answer carries the proven lower
  bound (the largest of the floor, the searches' smallest open keys and the pair bounds) and
  the gap. Its peak is never above the stored order's.

Why one module of ~1,000 lines: the search, its starting orders and the assembly of pieces all
work on one per-problem ``Context`` (bitmask-encoded predecessors, step-cost tables, source
macros) in the hot loop; what stands apart from it already lives apart (``bounds``,
``decompose``, ``reductions``, ``improve``, ``decision``).
"""

from __future__ import annotations

import functools
import heapq
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .bounds import (
    PairTable,
    SetBound,
    SharedClosure,
    StateClosure,
    _ortools_flow,
    closure_bound,
    pair_bounds,
    set_bound,
    static_bounds,
)
from .decision import decide, ready_at
from .decision import free_moves as _free_moves
from .decision import newly_ready as _newly_ready
from .decompose import Piece, cut_positions, is_order, split, topological
from .improve import beam_improve, improve_order
from .lns import lns_order
from .memory import Problem, initial_live, peak, resident_after_inputs
from .reductions import (
    SourceMacros,
    bits,
    canonical,
    find_sources,
    in_class_order,
    interchangeable,
    ordered,
    run_macro,
    source_macros,
)
from .searchcore import SetBounds, flow_closure, shared_flow
from .searchcore import run as compiled_search
from .searchcore import unavailable as compiled_unavailable

SPLIT_OPS = 1000  # larger problems are split into sub-problems first (decompose.split)
CLOSURE_AFTER = 20_000  # states expanded before per-state closure bounds are used
CLOSURE_CANDIDATES = 3  # ops tried per state (largest static bounds first)
CLOSURE_MAX_OPS = 600  # larger pieces: one flow graph per candidate costs too much
DECIDE_SHARE = 0.1  # of the time left after bounds: "is there a better order?" (decision),
DECIDE_STATES = 400_000  # ... up to this many states per segment (the 56-node proof: 373k)
PROBE_STATES = 5_000  # decisions from below (K = the floor) first, up to this many states
QUICK_SHARE = 0.3  # of the time left then (decisions included): the first exact search pass
# (0.5 before: the two-stage 2 x 48 network's first pass proved nothing in it, and the beam
# that finds its second stage's optimum then missed its widest width in 5 of 8 runs; 0.3:
# proven in 4.2-4.9 s, 6 of 6; 52-60-node stages proven as fast as with 0.5)
QUICK_STATES = 1_000_000  # ... up to this many states (randwire_ws_int8 needs 50,000)
ROOT_SHARE = 0.1  # of what is left then, for open segments: every op's closure bound ...
PAIR_SHARE = 0.4  # ... then bounds over sets of ops at the root (bounds.pair_bounds) ...
SET_WIDTH = 8  # ... growing the best 8 sets of k ops by one op ...
SET_MAX_OPS = 16  # ... up to 16 ops (memoised over the placed sets; the time stops it first)
SMALL_SET_MAX_OPS = 8  # ... 8 when a segment is below LNS_MIN_OPS (see _pair_floor)
BEAM_SHARE = 0.3  # ... then beam starts (improve.py)
BEAM_MAX_OPS = 2000  # larger segments get no beam start
SEARCH_SHARE = 0.75  # ... then a second exact search pass; the rest: window re-solves
ROOT_CLOSURE_AFTER = 0
# Segments of LNS_MIN_OPS ops or more (RandWire stages of 64 nodes and up) also get lns.py:
# in the time their beams leave, and for 1 - WINDOW_SHARE of the last phase; when every
# open segment is that large the second pass gets LARGE_SEARCH_SHARE (at 80-128 nodes it
# raised no bound and found no better order with 0.75).
LNS_MIN_OPS = 120
WINDOW_SHARE = 0.3
LARGE_SEARCH_SHARE = 0.4
# When every segment left after the starting orders is that large, pass 0 and pass 1 get
# LARGE_QUICK_SHARE of the time (at 64-128 nodes they proved nothing and found no better
# order with 0.5) and the set bounds LARGE_PAIR_SHARE of what the root closures leave.
LARGE_QUICK_SHARE = 0.2
LARGE_PAIR_SHARE = 0.5
PAIR_WORK = 600_000  # candidates of the set bounds: the most ops (largest closure bounds)
PAIR_MIN_CANDIDATES = 24  # whose pairs times the problem's ops stay within PAIR_WORK (only
# when every open segment has LNS_MIN_OPS ops; smaller ones keep 24 candidates)
COMPILED_SEARCH = True  # run search's loop in C where built (searchcore; tests switch it off)
COMPILED_BOUNDS = True  # ... with its per-state closure bounds on compiled flows too
Progress = Callable[[int, int, int], None]  # (states expanded, best peak, lower bound)


@dataclass
class Schedule:
    """The result: an order of the subgraph's ops, its peak and how sure we are of it."""

    order: list[int]
    peak: int
    lower_bound: int
    optimal: bool
    states: int = 0
    seconds: float = 0.0
    stopped: str = ""  # "", "time limit" or "state limit"

    @property
    def gap(self) -> int:
        return self.peak - self.lower_bound


@dataclass
class Context:
    """Per-problem tables in the integer/bitmask form the search loops want."""

    p: Problem
    pred_mask: list[int]
    succs: tuple[tuple[int, ...], ...]
    cons_mask: list[int]
    out_total: list[int]
    out_kept: list[int]
    inputs: list[tuple[int, ...]]
    extra: tuple[int, ...]
    alias: tuple
    anc: list[int] = field(default_factory=list)
    desc: list[int] = field(default_factory=list)
    in_info: list[tuple[tuple[int, int, int], ...]] = field(default_factory=list)
    alias_info: list[tuple[tuple[int, int], ...]] = field(default_factory=list)
    shares: list[int] = field(default_factory=list)  # ops reading an input of v (not v)
    can_free: int = 0  # ops whose kept outputs could ever be paid for by dying inputs
    static_lb: np.ndarray | None = None  # bounds.static_bounds
    # sources run late (reductions.py): ops are run as macros "unrun block sources, then op"
    source: int = 0
    block: list[int] = field(default_factory=list)
    block_ops: list[tuple[int, ...]] = field(default_factory=list)
    mpred: list[int] = field(default_factory=list)
    msuccs: list[tuple[int, ...]] = field(default_factory=list)
    mshares: list[int] = field(default_factory=list)
    owners: list[tuple[int, ...]] = field(default_factory=list)  # source -> macros holding it
    kept_block: list[int] = field(default_factory=list)  # kept bytes of block(x)
    cuts: list[int] = field(default_factory=list)  # cut_points, in topological order
    topo: list[int] = field(default_factory=list)  # decompose.topological
    state_closures: dict = field(default_factory=dict)  # op -> bounds.StateClosure
    general_sources: bool = False  # reductions.find_sources(general=...)
    root_closure: list[int] | None = None  # per op: closure bound at the start (_anytime)
    shared_closure: SharedClosure | None = None  # every op's closure bounds (_shared)
    compiled: object = None  # searchcore.tables(ctx), made on first compiled search


def _context(p: Problem, general_sources: bool = False) -> Context:
    n = p.n_ops
    pred_mask = [0] * n
    for v, ps in enumerate(p.preds):
        for u in ps:
            pred_mask[v] |= 1 << u
    cons_mask = [0] * len(p.size)
    for t, cs in enumerate(p.consumers):
        for c in cs:
            cons_mask[t] |= 1 << c
    out_total = [sum(p.size[t] for t in p.op_out[v]) for v in range(n)]
    out_kept = [
        sum(p.size[t] for t in p.op_out[v] if p.consumers[t] or p.pinned[t]) for v in range(n)
    ]
    inputs = [tuple(t for t in p.op_in[v] if p.size[t] and not p.pinned[t]) for v in range(n)]
    ctx = Context(p, pred_mask, p.succs, cons_mask, out_total, out_kept, inputs, p.extra, p.alias)
    ctx.topo = topological(p)
    ctx.anc, ctx.desc = _closures(ctx, pred_mask)
    ctx.general_sources = general_sources
    ctx.in_info = [tuple((t, p.size[t], cons_mask[t]) for t in inputs[v]) for v in range(n)]
    ctx.alias_info = [
        tuple((p.size[o], sum(1 << i for i in cands)) for o, cands in p.alias[v])
        for v in range(n)
    ]
    ctx.shares = [0] * n
    for v in range(n):
        for t in inputs[v]:
            ctx.shares[v] |= cons_mask[t]
        ctx.shares[v] &= ~(1 << v)
    ctx.static_lb = static_bounds(ctx)
    _macros(ctx)
    for v in range(n):
        if out_kept[v] + ctx.kept_block[v] <= sum(p.size[t] for t in inputs[v]):
            ctx.can_free |= 1 << v
    ctx.can_free &= ~ctx.source
    return ctx


def _macros(ctx: Context) -> None:
    """Tables of the sources-run-late reduction (``reductions``), in the search's form."""
    p = ctx.p
    n = p.n_ops
    topo = topological(p)
    ctx.cuts = cut_points(ctx)
    # a cut op stays a non-source: it splits the problem, which is worth more
    source = find_sources(ctx, ctx.general_sources) & ~sum(1 << c for c in ctx.cuts)
    m = source_macros(ctx, topo, source)
    ctx.source, ctx.block, ctx.block_ops, ctx.mpred = source, m.block, m.block_ops, m.mpred
    ctx.kept_block = [sum(ctx.out_kept[u] for u in m.block_ops[v]) for v in range(n)]
    if not source:
        ctx.msuccs, ctx.mshares, ctx.owners = list(ctx.succs), ctx.shares, [()] * n
        return
    msuccs: list[list[int]] = [[] for _ in range(n)]
    owners: list[list[int]] = [[] for _ in range(n)]
    for y in range(n):
        if (source >> y) & 1:
            continue
        r = m.mpred[y]
        while r:
            low = r & -r
            r ^= low
            msuccs[low.bit_length() - 1].append(y)
        for u in m.block_ops[y]:
            owners[u].append(y)
    own = [sum(1 << y for y in owners[z]) if (source >> z) & 1 else 1 << z for z in range(n)]
    mshares = [0] * n
    for x in range(n):
        if (source >> x) & 1:
            continue
        touched = m.block[x] | (1 << x)
        readers = touched
        for z in (*m.block_ops[x], x):
            for t in ctx.inputs[z]:
                readers |= ctx.cons_mask[t]
        acc = 0
        while readers:
            low = readers & -readers
            readers ^= low
            acc |= own[low.bit_length() - 1]
        mshares[x] = acc & ~(1 << x) & ~source
    ctx.msuccs = [tuple(s) for s in msuccs]
    ctx.owners = [tuple(o) for o in owners]
    ctx.mshares = mshares


def _closures(ctx: Context, pred_mask: list[int]) -> tuple[list[int], list[int]]:
    """Ancestor and descendant bitmasks (excluding the op itself)."""
    p = ctx.p
    n = p.n_ops
    topo = ctx.topo
    anc = [0] * n
    for v in topo:
        m = 0
        for u in p.preds[v]:
            m |= anc[u] | (1 << u)
        anc[v] = m
    desc = [0] * n
    succs = ctx.succs
    for v in reversed(topo):
        m = 0
        for w in succs[v]:
            m |= desc[w] | (1 << w)
        desc[v] = m
    return anc, desc


def _step(ctx: Context, S: int, v: int) -> tuple[int, int, int, int]:
    """Running v in state S: (step cost above resident bytes, change of resident bytes,
    new state, bitmask of the tensors that die at v)."""
    S2 = S | (1 << v)
    freed = dead = 0
    for t, size, cons in ctx.in_info[v]:
        if cons & ~S2 == 0:
            freed += size
            dead |= 1 << t
    saved = 0
    if dead:
        for o_size, cand_mask in ctx.alias_info[v]:
            if cand_mask & dead:
                saved += o_size
    return ctx.out_total[v] + ctx.extra[v] - saved, ctx.out_kept[v] - freed, S2, dead


def _shared(ctx: Context) -> SharedClosure:
    """The problem's ``bounds.SharedClosure``, on the compiled flow where the core is built
    (``COMPILED_BOUNDS``), made once."""
    if ctx.shared_closure is None:
        ctx.shared_closure = SharedClosure(ctx)
        if COMPILED_BOUNDS and COMPILED_SEARCH and not compiled_unavailable():
            ctx.shared_closure.flow_value = shared_flow(ctx, ctx.shared_closure)
    return ctx.shared_closure


def _state_closure(ctx: Context, v: int) -> StateClosure:
    sc = ctx.state_closures.get(v)
    if sc is None:
        sc = ctx.state_closures[v] = StateClosure(ctx, v)
    return sc


def _mstep(ctx: Context, S: int, v: int) -> tuple[int, int, int, int]:
    """``_step`` for v's macro: the unrun sources of block(v), then v (reductions.py).

    The sources free nothing and each costs at most v's step, so the macro's step is v's
    step after them, and its change of resident bytes adds their kept outputs.
    """
    b = ctx.block[v] & ~S
    if not b:
        return _step(ctx, S, v)
    kept = 0
    r = b
    while r:
        low = r & -r
        r ^= low
        kept += ctx.out_kept[low.bit_length() - 1]
    up, delta, S2, dead = _step(ctx, S | b, v)
    return up + kept, delta + kept, S2, dead


def _expand(ctx: Context, S: int, heads: Sequence[int]) -> list[int]:
    """The ops that the macros ``heads`` run from downset S, in order."""
    out: list[int] = []
    for h in heads:
        S = run_macro(ctx.block, ctx.block_ops, h, S, out)
    return out


def _trailing(ctx: Context, start: int, goal: int) -> int:
    """Sources between two states that no macro of a non-source there runs.

    They belong to the block of the cut op after ``goal`` and are run just before it.
    """
    seg = goal & ~start
    src = seg & ctx.source
    if not src:
        return 0
    covered = 0
    r = seg & ~ctx.source
    while r:
        low = r & -r
        r ^= low
        covered |= ctx.block[low.bit_length() - 1]
    return src & ~covered


# ---------------------------------------------------------------------------------------------
# Upper bounds


def greedy_order(ctx: Context, start: int = 0, goal: int | None = None, mem: int | None = None):
    """Run, at each step, the ready macro with the cheapest step; ties by memory left behind.

    Step costs are cached in a heap. Running a macro changes the cost of a ready macro w
    only if w becomes the last unrun reader of a tensor the macro read (counted per
    tensor) or the macro ran a source of w's block; only those and the newly ready macros
    are re-costed (stale heap entries are skipped). Same order as re-costing every ready
    op at every step, in O((n + edges) log n).
    """
    p = ctx.p
    goal = (1 << p.n_ops) - 1 if goal is None else goal
    goal &= ~_trailing(ctx, start, goal)
    S = start
    M = resident_after_inputs(p) if mem is None else mem
    cost: dict[int, tuple[int, int]] = {}  # ready op -> (step cost above M, resident change)
    heap: list[tuple[int, int, int]] = []
    ready = 0
    mpred, msuccs, source = ctx.mpred, ctx.msuccs, ctx.source

    def push(v: int) -> None:
        up, delta, _, _ = _mstep(ctx, S, v)
        cost[v] = (up, delta)
        heapq.heappush(heap, (up, delta, v))

    rest = goal & ~S & ~source
    while rest:
        low = rest & -rest
        rest ^= low
        v = low.bit_length() - 1
        if mpred[v] & ~S == 0:
            ready |= low
            push(v)
    order, worst = [], 0
    while heap:
        up, delta, v = heapq.heappop(heap)
        if cost.get(v) != (up, delta):
            continue  # re-costed since this entry was pushed
        del cost[v]
        worst = max(worst, M + up)
        M += delta
        ran = _expand(ctx, S, (v,))
        order += ran
        for u in ran:
            S |= 1 << u
        ready ^= 1 << v
        touched = 0
        for u in ran:
            for t in ctx.inputs[u]:
                left = ctx.cons_mask[t] & ~S
                if left and left & (left - 1) == 0:  # one unrun reader: t may die there
                    touched |= left
            for w in ctx.owners[u]:
                touched |= 1 << w
        r = touched & ready
        while r:
            low = r & -r
            r ^= low
            push(low.bit_length() - 1)
        for w in msuccs[v]:
            if (goal >> w) & 1 and not (ready >> w) & 1 and mpred[w] & ~S == 0 \
                    and not (S >> w) & 1:
                ready |= 1 << w
                push(w)
    return order, worst


def depth_first_order(ctx: Context, start: int, goal: int) -> list[int]:
    """Post-order from the sinks: every op right after its unrun predecessors, each
    predecessor's subtree finished before the next is begun (a reduction tree is then run
    leaf, leaf, join, ...). An upper bound the step-greedy order misses on wide joins."""
    seg = goal & ~start
    pred_mask = ctx.pred_mask
    sinks = [v for v in ctx.topo if (seg >> v) & 1
             and not any((seg >> w) & 1 for w in ctx.succs[v])]
    done = start
    out: list[int] = []
    for root in sinks:
        stack = [(root, False)]
        while stack:
            v, expanded = stack.pop()
            if (done >> v) & 1:
                continue
            if expanded:
                out.append(v)
                done |= 1 << v
                continue
            stack.append((v, True))
            todo = pred_mask[v] & ~done
            for u in sorted(bits(todo), reverse=True):
                stack.append((u, False))
    return out


# ---------------------------------------------------------------------------------------------
# Exact search between two forced states


@dataclass
class _Result:
    order: list[int]
    worst: int  # max step cost of the order (not floored)
    bound: int  # proven: no order between these states has max(worst, floor) below it
    exact: bool
    states: int
    stopped: str = ""


def search(
    ctx: Context,
    start: int,
    goal: int,
    mem: int,
    floor: int,
    incumbent: tuple[list[int], int],
    deadline: float,
    max_states: int,
    progress: Progress | None = None,
    state_bounds: bool = True,
    dominance: bool = True,
) -> _Result:
    """Best-first bottleneck search from downset ``start`` to ``goal``.

    Returns an order minimising max(step costs, floor) together with the proof status.
    A state is (S, resident bytes, ready ops); its key is max(peak so far, floor) and,
    once evaluated at its first pop, the per-state closure bound (A*: the bound depends on
    S only and never exceeds the peak of a completion from S, so the first goal taken off
    the heap is still optimal, and a free move under the raised key is still free).
    ``state_bounds=False``: no per-state bounds (lns.py's many small window searches, whose
    budgets of a few thousand states the flows would eat). ``dominance``: a state dominated
    by a closed one (``dominated``) is closed without being expanded.
    """
    entered = time.monotonic()
    best_order, best_worst = incumbent
    ub = max(best_worst, floor)
    goal &= ~_trailing(ctx, start, goal)
    shares = ctx.shares if not ctx.source else ctx.mshares
    step = _mstep if ctx.source else _step

    def newly_ready(v: int, S: int) -> int:
        return _newly_ready(ctx, goal, v, S)

    def free_moves(S: int, M: int, key: int, ready: int, check: int):
        return _free_moves(ctx, step, goal, S, M, key, ready, check)

    ready0 = ready_at(ctx, start, goal)
    parent: dict[int, tuple[int, tuple[int, ...]]] = {}
    best_key: dict[int, int] = {start: floor}
    closed: set[int] = set()
    heap = [(floor, -start.bit_count(), mem, start, ready0, ready0)]
    expanded = work = 0
    stopped = ""
    found = None
    # Per-state closure bounds (bounds.StateClosure) for the ops of largest static bound,
    # once the search is past CLOSURE_AFTER states: they cut the states 7x on RandWire
    # stages but cost ~0.1 ms each, more than they save on searches that end sooner.
    closure_after = CLOSURE_AFTER
    seg = goal & ~start
    cands: list[int] = []
    if state_bounds and _ortools_flow is not None and ctx.p.n_ops <= CLOSURE_MAX_OPS:
        rank = ctx.static_lb if ctx.root_closure is None else ctx.root_closure
        cands = sorted((v for v in range(ctx.p.n_ops) if (seg >> v) & 1),
                       key=lambda v: -int(rank[v]))[:CLOSURE_CANDIDATES]
        if ctx.root_closure is not None and ROOT_CLOSURE_AFTER is not None:
            closure_after = ROOT_CLOSURE_AFTER
    bounded: set[int] = set()
    inf = 1 << 62
    compiled = COMPILED_SEARCH and not compiled_unavailable()
    if compiled:  # the same loop in C (searchcore.py): same states, same order, same answer
        bound_cb = (lambda S, key: _state_bound(ctx, cands, S, key)) if cands else None
        closure_of = (lambda v: _state_closure(ctx, v)) if COMPILED_BOUNDS else None
        found, expanded, stopped, heap, parent = compiled_search(
            ctx, start, goal, ready0, mem, floor, ub, deadline, max_states, closure_after,
            cands, closure_of, bound_cb, progress, dominance)
    while heap and not compiled:
        item = heapq.heappop(heap)
        key, negdepth, M, S, ready, check = item
        if key >= ub:
            heap.append(item)
            break
        if best_key.get(S, inf) < key:
            continue  # stale entry
        if cands and expanded >= closure_after and S not in bounded:
            bounded.add(S)
            h = _state_bound(ctx, cands, S, key)
            if h > key:  # every completion from S peaks at h or more: back, under key h
                if h < ub:
                    best_key[S] = h
                    heapq.heappush(heap, (h, negdepth, M, S, ready, ready))
                continue
        # Free moves are applied when a state is taken off the heap (once, not per push).
        S3, M3, ready3, moved = free_moves(S, M, key, ready, check)
        if S3 != S:
            if best_key.get(S3, inf) < key or S3 in closed:
                continue
            best_key[S3] = key
            parent[S3] = (S, moved)
        if S3 in closed:
            continue
        if S3 == goal:
            found = key
            break
        if dominance and dominated(ctx, step, goal, S3, M3, key, ready3, closed):
            closed.add(S3)  # a closed state does all it can at no higher key
            continue
        closed.add(S3)
        expanded += 1
        # Checked after every 16 expansions or 2,000 step evaluations, whichever comes
        # first: one expansion of a 5,000-wide fan-out evaluates 5,000 steps.
        work += ready3.bit_count()
        if expanded & 15 == 0 or work > 2000:
            work = 0
            if time.monotonic() > deadline:
                stopped = "time limit"
            elif len(best_key) > max_states:
                stopped = "state limit"
            if stopped:
                heap.append((key, -S3.bit_count(), M3, S3, ready3, 0))
                break
            if progress and expanded & 1023 == 0:
                progress(expanded, ub, key)
        r = ready3
        while r:
            low = r & -r
            v = low.bit_length() - 1
            r ^= low
            up, delta, S2, _ = step(ctx, S3, v)
            k2 = key if M3 + up <= key else M3 + up
            if k2 >= ub or S2 in closed or best_key.get(S2, inf) <= k2:
                continue
            best_key[S2] = k2
            parent[S2] = (S3, (v,))
            new = newly_ready(v, S2)
            ready2 = (ready3 ^ low) | new
            chk = ready2 if (k2 > key or delta < 0) else new | (shares[v] & ready2)
            heapq.heappush(heap, (k2, -S2.bit_count(), M3 + delta, S2, ready2, chk))
    if found is not None:
        order = _path(ctx, parent, start, goal)
        return _Result(order, _worst(ctx, start, mem, order), found, True, expanded)
    # No order below ub exists (exact), or the search stopped: the smallest open key is a bound.
    bound = ub if not stopped else min(ub, min((h[0] for h in heap), default=ub))
    if stopped:  # completions may overrun the deadline by 5 % of this search's budget
        until = deadline + 0.05 * max(0.0, deadline - entered)
        best_order, best_worst = _complete_frontier(
            ctx, heap, parent, start, goal, mem, (best_order, best_worst), until
        )
    return _Result(best_order, best_worst, bound, not stopped, expanded, stopped)


def dominated(ctx: Context, step, goal: int, S: int, M: int, key: int, ready: int,
              closed) -> bool:
    """Whether state S (resident M bytes, free moves under ``key`` applied) is dominated: a
    ready macro v whose kept outputs are no larger than the inputs dying at it (its step
    is above ``key``, else it would have been a free move) leads, with the free moves under
    ``key`` after it, to a state in ``closed``.

    Why S can then be closed unexpanded (best-first and the decisions alike):
    running v first never raises a step of any completion. Take a completion C of S; for
    an op w before v in C, with X the state before w, v's change of resident bytes in X is
    at most its change in S (more of v's inputs die once more of their readers ran), so
    M(X + v) <= M(X) + delta(v|S) <= M(X), and w's own step above resident bytes (its
    outputs less those placed in a dying input) is no larger in X + v, where more inputs
    die; after v the states are the same. So C without v, from S + v, has every step at
    most C's; free moves under the key keep that (``decision.free_moves``). A closed state
    T was taken off the heap at a key no higher than S's (keys come off in order) and its
    completions include everything S + v can do, hence everything S can do: an optimal
    order through S has one through T at no higher key, and T was expanded (or is itself
    dominated by a larger closed state: the chain ends). The same lemma holds for macros
    (``reductions``): a macro's step and change of resident bytes only fall as S grows.
    Brute-force checked in ``tests/test_scheduler.py``.
    """
    r = ready & ctx.can_free
    while r:
        low = r & -r
        v = low.bit_length() - 1
        r ^= low
        _, delta, T, _ = step(ctx, S, v)
        if delta <= 0:
            ready_t = (ready ^ low) | _newly_ready(ctx, goal, v, T)
            if _free_moves(ctx, step, goal, T, M + delta, key, ready_t, ready_t)[0] in closed:
                return True
    return False


def _state_bound(ctx: Context, cands: Sequence[int], S: int, key: int) -> int:
    """The state's key raised by the first candidate op whose closure bound exceeds it."""
    h = key
    for v in cands:
        if not (S >> v) & 1:
            b = _state_closure(ctx, v).bound(S)
            if b is not None and b > h:
                return b
    return h


def _complete_frontier(ctx, heap, parent, start, goal, mem, incumbent, until: float,
                       tries: int = 16):
    """Anytime answer: finish the most promising open states greedily, keep the best order.

    The open states with the lowest keys (deepest first) are prefixes that stayed cheapest;
    completing them usually beats the greedy order the search started from. A completion
    is started only if one more (as long as the last) ends by ``until``: each is a greedy
    run over the whole rest of the graph (a third of a second at 20,000 ops).
    """
    best_order, best_worst = incumbent
    seen: set[int] = set()
    last = 0.0
    for _key, _negdepth, M, S, _ready, _check in heapq.nsmallest(4 * tries, heap):
        if S in seen or (S not in parent and S != start):
            continue
        t = time.monotonic()
        if t + last > until or t > until:
            break
        seen.add(S)
        prefix = _path(ctx, parent, start, S)
        rest, worst_rest = greedy_order(ctx, S, goal, M)
        worst = max(_worst(ctx, start, mem, prefix), worst_rest)
        if worst < best_worst:
            best_order, best_worst = prefix + rest, worst
        last = time.monotonic() - t
        if len(seen) >= tries:
            break
    return best_order, best_worst


def _path(ctx: Context, parent: dict, start: int, goal: int) -> list[int]:
    """The ops from ``start`` to ``goal`` along the search's parent links (macros expanded)."""
    chunks = []
    S = goal
    while S != start:
        prev, heads = parent[S]
        chunks.append((prev, heads))
        S = prev
    return [v for prev, heads in reversed(chunks) for v in _expand(ctx, prev, heads)]


def _worst(ctx: Context, start: int, mem: int, order: Sequence[int]) -> int:
    S, M, worst = start, mem, 0
    for v in order:
        up, delta, S, _ = _step(ctx, S, v)
        worst = max(worst, M + up)
        M += delta
    return worst


# ---------------------------------------------------------------------------------------------
# Decomposition at cut points and the public entry point


def cut_points(ctx: Context) -> list[int]:
    """Ops comparable to every other op, in topological order (``decompose``)."""
    topo = ctx.topo or topological(ctx.p)
    return [topo[i] for i in cut_positions(ctx.p, topo)]


def _resident(ctx: Context, S: int) -> int:
    """Resident bytes after running exactly the ops in downset S."""
    p = ctx.p
    M = resident_after_inputs(p)
    rest = S
    while rest:  # the ops of S, lowest first
        low = rest & -rest
        M += ctx.out_kept[low.bit_length() - 1]
        rest ^= low
    not_s, cons_mask, inputs = ~S, ctx.cons_mask, p.inputs
    for t, size in enumerate(p.size):
        if size and not p.pinned[t] and p.consumers[t] and not cons_mask[t] & not_s:
            if p.producer[t] < 0 and t not in inputs:
                continue
            M -= size
    return M


def _raise_floor(ctx: Context, seg_data, cuts: list[int], floor: int, deadline: float) -> int:
    """Raise the floor with exact per-op closure bounds where the greedy order is above it.

    An op's closure bound is at most its step in any order, so only ops whose greedy step
    exceeds the floor can raise it; they are tried most expensive first.
    """
    order: list[int] = []
    for i, d in enumerate(seg_data):
        order += d[3]
        if i < len(cuts):
            order.append(cuts[i])
    steps = []
    S, M = 0, resident_after_inputs(ctx.p)
    for v in order:
        up, delta, S, _ = _step(ctx, S, v)
        steps.append((M + up, v))
        M += delta
    for cost, v in sorted(steps, reverse=True):
        if cost <= floor or time.monotonic() > deadline:
            break
        bound = closure_bound(ctx, v, deadline)
        if bound is not None:
            floor = max(floor, bound)
    return floor


@dataclass
class _Prep:
    """One piece made ready for search: its segments with their starting orders."""

    ctx: Context
    segments: list[tuple[int, int]]
    seg_data: list[tuple[int, int, int, list[int], int]]  # start, goal, mem, order, worst
    floor: int  # proven lower bound on the piece's peak (hence on the whole problem's)
    results: dict[int, _Result] = field(default_factory=dict)
    decided: dict[int, _Result] = field(default_factory=dict)  # open after the decisions


def _prepare(ctx: Context, stored: Sequence[int] | None) -> _Prep:
    """Segments between the piece's cut ops, each with the better of the greedy order and
    the canonical form of the stored order (never worse: the stored order is a candidate)."""
    p = ctx.p
    n = p.n_ops
    floor = max(initial_live(p), int(ctx.static_lb.max()))
    known = canonical(ctx_macros(ctx), stored) if stored is not None else None
    segments: list[tuple[int, int]] = []
    prev = 0
    for c in ctx.cuts:
        segments.append((prev, ctx.anc[c]))
        prev = ctx.anc[c] | (1 << c)
    segments.append((prev, (1 << n) - 1))
    seg_data = []
    for start, goal in segments:
        if start == goal:
            seg_data.append((start, goal, 0, [], 0))
            continue
        mem = _resident(ctx, start)
        order, worst = greedy_order(ctx, start, goal, mem)
        inside = goal & ~start & ~_trailing(ctx, start, goal)
        dfs = canonical(ctx_macros(ctx), depth_first_order(ctx, start, goal), start)
        others = [[v for v in dfs if (inside >> v) & 1]]
        if known is not None:  # the stored order's part here (without trailing sources)
            others.append([v for v in known if (inside >> v) & 1])
        for mine in others:
            w = _worst(ctx, start, mem, mine)
            if w < worst or (w == worst and not order):
                order, worst = mine, w
        seg_data.append((start, goal, mem, order, worst))
    for c in ctx.cuts:  # the cut ops' steps are forced (their trailing sources cost less)
        S = ctx.anc[c]
        up, _, _, _ = _step(ctx, S, c)
        floor = max(floor, _resident(ctx, S) + up)
    return _Prep(ctx, segments, seg_data, floor)


def _assemble(prep: _Prep) -> list[int]:
    """The piece's order: segments, each cut op after its block of trailing sources."""
    ctx, cuts = prep.ctx, prep.ctx.cuts
    order: list[int] = []
    for i in range(len(prep.seg_data)):
        order += prep.results[i].order
        if i < len(cuts):
            start, goal = prep.segments[i]
            trail = _trailing(ctx, start, goal)
            order += [u for u in ctx.block_ops[cuts[i]] if (trail >> u) & 1]
            order.append(cuts[i])
    return order


def schedule(
    p: Problem,
    time_limit: float = 10.0,
    max_states: int = 2_000_000,
    progress: Progress | None = None,
    ctx: Context | None = None,
    stored: Sequence[int] | None = None,
) -> Schedule:
    """Minimum-peak topological order of ``p`` (exact unless a limit stops the search).

    A problem of more than ``SPLIT_OPS`` ops is first split at its cut ops in linear time
    (``decompose``); each piece of two or more ops is searched on its own tables. Never
    worse than ``stored`` (default: the ops' own order, the model's stored order): in
    every segment its canonical form (sources late, no higher peak) is a candidate next to
    the other starting orders, so whatever limit stops the search, even ``time_limit=0``,
    the answer's peak is at most the stored order's. A ``stored`` that is not a
    topological order of ``p`` is ignored. ``ctx``
    (tables of the whole problem) skips the split.
    """
    t0 = time.monotonic()
    deadline = t0 + time_limit
    n = p.n_ops
    base = initial_live(p)
    if n == 0:
        return Schedule([], base, base, True)
    stored = list(range(n)) if stored is None else list(stored)
    if not is_order(p, stored):
        stored = None
    classes = interchangeable(p) if ctx is None else []
    if classes:  # run each class of interchangeable ops in op order (reductions.py)
        stored = in_class_order(classes, stored) if stored is not None else None
        p = ordered(p, classes)
    if ctx is not None or n <= SPLIT_OPS:  # small: the segments inside one context do it
        pieces = [Piece(list(range(n)), p, 0)]
    else:
        pieces, _ = split(p)
    floor = base
    preps: list[_Prep | None] = []
    local_stored = _distribute(pieces, stored, n)
    for k, piece in enumerate(pieces):
        if piece.problem is None:
            floor = max(floor, piece.forced_peak)
            preps.append(None)
            continue
        c = ctx if ctx is not None else _context(piece.problem)
        prep = _prepare(c, local_stored[k])
        floor = max(floor, prep.floor)
        preps.append(prep)
    live = [pr for pr in preps if pr is not None]
    if any(d[4] > floor for pr in live for d in pr.seg_data):
        # the bounds may use a quarter of the budget; the search needs the rest
        budget = time.monotonic() + 0.25 * max(0.0, deadline - time.monotonic())
        for pr in sorted(live, key=lambda pr: -max(d[4] for d in pr.seg_data)):
            floor = _raise_floor(pr.ctx, pr.seg_data, pr.ctx.cuts, floor, budget)

    # Hardest first: the floor they raise makes the others easier.
    work = [(pr, i) for pr in live for i in range(len(pr.seg_data))]
    work.sort(key=lambda w: -w[0].seg_data[w[1]][4])
    for pr, i in work:
        start, goal, mem, order, worst = pr.seg_data[i]
        if start == goal:
            pr.results[i] = _Result([], 0, 0, True, 0)
        elif worst <= floor:
            pr.results[i] = _Result(order, worst, floor, True, 0)
    # Pass 0: "is there an order better than the incumbent?" (decision.decide) until no:
    # the incumbent is then optimal. Its time comes out of pass 1's share, so the phases
    # after pass 1 keep the time they had without it.
    before = time.monotonic()
    todo = [(pr, i) for pr, i in work if i not in pr.results]
    large = bool(todo) and all(_ops(pr, i) >= LNS_MIN_OPS for pr, i in todo)
    quick_until = before + (LARGE_QUICK_SHARE if large else QUICK_SHARE) * max(
        0.0, deadline - before)
    states, floor = _decide_pass(work, floor, deadline, DECIDE_SHARE,
                                 min(max_states, DECIDE_STATES))
    # Pass 1: the exact search on every open segment, a share of the time each (by size),
    # up to QUICK_STATES states.
    now = time.monotonic()
    quick = max(0.0, quick_until - now) / max(1e-9, deadline - now)
    more, stopped, floor = _search_pass(work, floor, deadline, quick,
                                          min(max_states, QUICK_STATES), progress)
    states += more
    if any(not pr.results[i].exact for pr, i in work):
        floor, more, stopped = _anytime(work, floor, deadline, max_states, progress)
        states += more
    _merge_decided(work)
    full_order: list[int] = []
    for piece, pr in zip(pieces, preps, strict=True):
        if pr is None:
            full_order += piece.ops
        else:
            full_order += [piece.ops[v] for v in _assemble(pr)]
    pk = peak(p, full_order)
    exact = all(r.exact for pr in live for r in pr.results.values())
    if exact and pk != floor:  # the two views of the memory model must agree
        raise AssertionError(f"scheduler inconsistency: peak {pk} != proven {floor}")
    return Schedule(
        order=full_order,
        peak=pk,
        lower_bound=min(floor, pk),
        optimal=floor >= pk,
        states=states,
        seconds=time.monotonic() - t0,
        stopped=stopped,
    )


def _open(work, floor: int) -> list:
    return [(pr, i) for pr, i in work
            if not pr.results[i].exact and pr.results[i].worst > floor]


def _open_ops(pr: _Prep) -> int:
    """The ops of the piece's segments without an exact result."""
    seg = 0
    for i, (start, goal) in enumerate(pr.segments):
        if not pr.results[i].exact:
            seg |= goal & ~start
    return seg


def _ops(pr: _Prep, i: int) -> int:
    start, goal = pr.segments[i]
    return (goal & ~start).bit_count()


def _decide_pass(work, floor: int, deadline: float, share: float,
                 max_states: int) -> tuple[int, int]:
    """Every segment without a result, hardest first, in a share of ``share`` of the time
    left by its size, answered with ``decision.decide`` (``_decide_segment``). Returns the
    states explored and the (possibly raised) proven floor."""
    until = time.monotonic() + share * max(0.0, deadline - time.monotonic())
    todo = [(pr, i) for pr, i in work if i not in pr.results]
    states = 0
    for k, (pr, i) in enumerate(todo):
        size = sum(_ops(q, j) for q, j in todo[k:])
        left = max(0.0, until - time.monotonic())
        r = _decide_segment(pr, i, floor, time.monotonic() + left * _ops(pr, i) / max(1, size),
                            max_states)
        if r.exact:
            pr.results[i] = r
        else:  # kept aside: the later phases start from the starting orders, as without
            pr.decided[i] = r  # decisions (their local searches are path-dependent)
        states += r.states
        floor = max(floor, r.bound)  # a proven lower bound on the whole problem
    return states, floor


def _merge_decided(work) -> None:
    """Per segment, the better of the final order and the decisions' order, and the larger
    of their bounds (the decisions' is already in the floor)."""
    for pr, i in work:
        d, r = pr.decided.pop(i, None), pr.results.get(i)
        if d is None or r is None:
            continue
        r.bound = max(r.bound, d.bound)
        if d.worst < r.worst:
            r.order, r.worst = d.order, d.worst


def _decide_segment(pr: _Prep, i: int, floor: int, until: float, max_states: int) -> _Result:
    """Segment i by decisions. First from below: "an order within the floor?" (found: it
    is optimal; proved: the least step above the floor that the search saw is a lower
    bound, the new floor), while these probes stay within ``PROBE_STATES`` states; then
    from above: "an order better than the incumbent?" (K = its peak minus one byte), again
    after every better order found, until it is proved that none exists (the incumbent is
    optimal) or a limit stops it (the better incumbent is kept, not exact); at most
    ``max_states`` states in all."""
    ctx = pr.ctx
    start, goal, mem, order, worst = pr.seg_data[i]
    goal &= ~_trailing(ctx, start, goal)
    step = _mstep if ctx.source else _step
    low, probes, n, stopped = floor, 0, 0, ""
    while worst > low and not stopped:
        below = probes < PROBE_STATES
        if n >= max_states:
            stopped = "state limit"
            break
        d = decide(ctx, start, goal, mem, low if below else worst - 1, until,
                   min(max_states - n, PROBE_STATES - probes) if below else max_states - n,
                   step, COMPILED_SEARCH)
        n += d.states
        if below:
            probes += d.states
        if d.heads is not None:
            order = _expand(ctx, start, d.heads)
            worst = _worst(ctx, start, mem, order)
        elif d.proved:
            low = d.over if below else worst  # proved: no order within K
        elif not below or time.monotonic() > until:
            stopped = d.stopped
        else:
            probes = PROBE_STATES  # the probe from below stopped: from above now
    if worst <= low:
        return _Result(order, worst, max(floor, worst), True, n)
    return _Result(order, worst, low, False, n, stopped)


def _search_pass(work, floor: int, deadline: float, share: float, max_states: int,
                 progress: Progress | None) -> tuple[int, str, int]:
    """Exact search on every segment without a result, hardest first, until ``share`` of
    the time left is spent; each gets the share of that time its size bears to the
    segments not yet searched (time a search leaves unused passes to the next)."""
    until = time.monotonic() + share * max(0.0, deadline - time.monotonic())
    todo = [(pr, i) for pr, i in work if i not in pr.results or not pr.results[i].exact]
    states, stopped = 0, ""
    for k, (pr, i) in enumerate(todo):
        start, goal, mem, order, worst = pr.seg_data[i]
        old = pr.results.get(i)
        if old is not None:
            order, worst = old.order, old.worst
        if worst <= floor:
            pr.results[i] = _Result(order, worst, floor, True, old.states if old else 0)
            continue
        size = sum(_ops(q, j) for q, j in todo[k:])
        left = max(0.0, until - time.monotonic())
        r = search(pr.ctx, start, goal, mem, floor, (order, worst),
                   time.monotonic() + left * _ops(pr, i) / max(1, size), max_states, progress)
        states += r.states
        stopped = stopped or r.stopped
        if old is not None:
            r.bound = max(r.bound, old.bound)
            if old.worst < r.worst:
                r.order, r.worst = old.order, old.worst
        pr.results[i] = r
        floor = max(floor, r.bound)  # a proven lower bound on the whole problem
    return states, stopped, floor


def _anytime(work, floor: int, deadline: float, max_states: int,
             progress: Progress | None) -> tuple[int, int, str]:
    """Segments the first search pass left open: every op's closure bound, bounds over
    sets of ops at the root (``bounds.pair_bounds``), beam starts
    (``improve.beam_improve``), a second search pass under the raised floor and the better
    incumbents, then window re-solves (``improve.improve_order``); each phase's time split
    among the open segments by size. Returns the (possibly raised) proven floor, the
    states the second pass expanded and why it stopped."""
    def split_time(share: float, fn) -> None:
        until = time.monotonic() + share * max(0.0, deadline - time.monotonic())
        todo = _open(work, floor)
        todo.sort(key=lambda w: -w[0].results[w[1]].worst)
        for k, (pr, i) in enumerate(todo):
            if pr.results[i].worst <= floor:
                continue
            size = sum(_ops(q, j) for q, j in todo[k:])
            left = max(0.0, until - time.monotonic())
            fn(pr, i, time.monotonic() + left * _ops(pr, i) / max(1, size))

    def beam(pr: _Prep, i: int, until: float) -> None:
        if _ops(pr, i) > BEAM_MAX_OPS:
            return  # a layer of a wide graph holds width x (ready ops) states of n bits
        start, goal, mem, _, _ = pr.seg_data[i]
        r = pr.results[i]
        goal &= ~_trailing(pr.ctx, start, goal)
        order, worst = beam_improve(pr.ctx, start, goal, mem, r.order, r.worst, floor,
                                    until, _mstep if pr.ctx.source else _step)
        if _ops(pr, i) >= LNS_MIN_OPS:  # the time the widest beam that fits leaves
            order, worst = lns_order(pr.ctx, start, mem, order, worst, floor, until, search,
                                     _step)
        if worst < r.worst:
            r.order, r.worst = order, worst

    def improve(pr: _Prep, i: int, until: float) -> None:
        start, goal, mem, _, _ = pr.seg_data[i]
        r = pr.results[i]
        split = until
        if _ops(pr, i) >= LNS_MIN_OPS:
            split = time.monotonic() + WINDOW_SHARE * max(0.0, until - time.monotonic())
        r.order, r.worst = improve_order(pr.ctx, start, goal, mem, r.order, r.worst, floor,
                                         split, search, _step)
        # the rest, and what the window re-solves leave (they stop once all failed): lns.py
        r.order, r.worst = lns_order(pr.ctx, start, mem, r.order, r.worst, floor, until,
                                     search, _step)

    if _ortools_flow is not None:  # bounds first: every later phase runs under them
        until = time.monotonic() + ROOT_SHARE * max(0.0, deadline - time.monotonic())
        for pr in {id(pr): pr for pr, _ in _open(work, floor)}.values():
            if pr.ctx.p.n_ops <= CLOSURE_MAX_OPS and _root_closure(pr, until):
                floor = max([floor] + [pr.ctx.root_closure[v]
                                       for v in bits(_open_ops(pr) & ~pr.ctx.source)])
        large = all(_ops(pr, i) >= LNS_MIN_OPS for pr, i in _open(work, floor))
        until = time.monotonic() + (LARGE_PAIR_SHARE if large else PAIR_SHARE) * max(
            0.0, deadline - time.monotonic())
        for pr in {id(pr): pr for pr, _ in _open(work, floor)}.values():
            if pr.ctx.p.n_ops <= CLOSURE_MAX_OPS:
                floor = max(floor, _pair_floor(pr, floor, until, large))
    split_time(BEAM_SHARE, beam)
    large = all(_ops(pr, i) >= LNS_MIN_OPS for pr, i in _open(work, floor))
    states, stopped, floor = _search_pass(work, floor, deadline,
                                          LARGE_SEARCH_SHARE if large else SEARCH_SHARE,
                                          max_states, progress)
    split_time(1.0, improve)
    return floor, states, stopped


def _root_closure(pr: _Prep, until: float) -> bool:
    """Every op's closure bound (``bounds.SharedClosure`` with nothing forced) in
    ``ctx.root_closure``: it ranks the ops whose per-state bounds the search evaluates and
    the candidates of the pair bounds. False if ``until`` passes first."""
    ctx = pr.ctx
    if ctx.root_closure is not None:
        return True
    vals = []
    shared = _shared(ctx)
    for v in range(ctx.p.n_ops):
        if time.monotonic() > until:
            return False
        b = shared.bound(v) if not (ctx.source >> v) & 1 else None
        vals.append(int(ctx.static_lb[v]) if b is None else max(b, int(ctx.static_lb[v])))
    ctx.root_closure = vals
    return True


def _pair_floor(pr: _Prep, floor: int, until: float, large: bool = True) -> int:
    """``bounds.pair_bounds`` over the ops of largest closure bound in the open segments
    (``set_search``), with sets of up to ``SET_MAX_OPS`` ops (``SMALL_SET_MAX_OPS`` when
    not ``large``, a segment below ``LNS_MIN_OPS``: the wider sets took the time that
    proves the two 48-node stages, 6.4 s with them narrow, open at 10 s with them wide)."""
    ctx = pr.ctx
    if ctx.root_closure is None:
        return floor
    cands, bound = set_search(pr, large)
    floor = max([floor] + [ctx.root_closure[v] for v in cands[:1]])
    return pair_bounds(ctx, cands, floor, until, bound, width=SET_WIDTH,
                       max_ops=SET_MAX_OPS if large else SMALL_SET_MAX_OPS)


def set_search(pr: _Prep, large: bool = True,
               compiled: bool | None = None) -> tuple[list[int], SetBound]:
    """The candidates of ``_pair_floor``'s set bounds (``ctx.root_closure`` must be set)
    and the set bound on them: ``searchcore.SetBounds`` where the core is built, unless
    ``compiled`` is False; otherwise ``bounds.set_bound`` with a ``bounds.PairTable``, on
    compiled flows (``searchcore.FlowClosure``) where the core is built, else on OR-tools'
    (the same values either way; ``tools/setbench.py`` times the two). As many candidates
    as keep (pairs x ops) within ``PAIR_WORK`` when ``large`` (the best sets of RandWire
    stages hold ops whose own closure bounds rank 30th-80th; 80 nodes, 4 s: 24 candidates
    24 tensors, 80 candidates 27), else ``PAIR_MIN_CANDIDATES``."""
    ctx = pr.ctx
    ops = sorted(bits(_open_ops(pr) & ~ctx.source), key=lambda v: -ctx.root_closure[v])
    n_cands = PAIR_MIN_CANDIDATES
    if large:
        n_cands = max(n_cands, math.isqrt(2 * PAIR_WORK // max(1, ctx.p.n_ops)))
    cands = ops[:n_cands]
    closure = functools.partial(_state_closure, ctx)
    core = COMPILED_BOUNDS and COMPILED_SEARCH and not compiled_unavailable()
    if core and compiled is not False:
        return cands, SetBounds(ctx, closure, cands, ctx.root_closure)
    if core:
        closure = functools.partial(flow_closure, ctx, closure)
    return cands, set_bound(ctx, closure, PairTable(ctx, closure, ctx.root_closure).lower)


def _distribute(pieces: list[Piece], stored: list[int] | None, n: int):
    """The stored order cut into the pieces, in each piece's local op ids."""
    out: list[list[int] | None] = [[] if pc.problem is not None else None for pc in pieces]
    if stored is None:
        return [None] * len(pieces)
    where = [(-1, -1)] * n
    for k, pc in enumerate(pieces):
        for i, v in enumerate(pc.ops):
            where[v] = (k, i)
    for v in stored:
        k, i = where[v]
        if out[k] is not None:
            out[k].append(i)
    return out


def ctx_macros(ctx: Context) -> SourceMacros:
    return SourceMacros(ctx.source, ctx.block, ctx.block_ops, ctx.mpred)
