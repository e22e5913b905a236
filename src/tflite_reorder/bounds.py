"""Lower bounds on the peak of every order, per operator.

``static_bounds``: the bytes live at an op in *every* order (made before it, read at or after
it). ``closure_bound``: the least an op can cost over *all* states in which it can run,
an exact minimisation: resident bytes of a downset are a cut function (a tensor is resident
when its producer ran and not all its consumers did), so the cheapest downset is a maximum-
weight closure, solved by one minimum cut (Picard, "Maximal closure of a graph and
applications to combinatorial problems", Management Science 1976).
Either bound, maximised over ops, bounds the optimal peak from below.

``order_bound`` / ``pair_bounds``: every order runs a given pair (or triple) of ops in some
sequence, and in each sequence every op's state is constrained further (the earlier ops
and their ancestors in, the later ones and their descendants out); the least over the
sequences of the largest constrained closure bound is a lower bound that the single-op
bounds miss (RandWire stages: 19 -> 23 tensors at 64 nodes).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .reductions import bits

INF = 1 << 60


def mask_bits(mask: int, n: int) -> np.ndarray:
    raw = np.frombuffer(mask.to_bytes((n + 7) // 8, "little"), dtype=np.uint8)
    return np.unpackbits(raw, bitorder="little")[:n].astype(bool)


def _add_bits(need: np.ndarray, mask: int, value: int) -> None:
    """need[i] += value for every set bit i of mask, in time proportional to the bits or to
    the span between the lowest and highest bit (whichever is cheaper), not to len(need)."""
    if mask.bit_count() <= 32:
        while mask:
            low = mask & -mask
            need[low.bit_length() - 1] += value
            mask ^= low
        return
    lo = (mask & -mask).bit_length() - 1
    span = mask.bit_length() - lo
    need[lo:lo + span] += value * mask_bits(mask >> lo, span)


def max_alias_saving(ctx, v: int) -> int:
    """Most bytes op v can save in place: inputs that may die at v (none read later)."""
    p = ctx.p
    ins = set(p.op_in[v])
    return sum(
        p.size[o] for o, cands in p.alias[v]
        if any(i in ins and not p.pinned[i] and ctx.cons_mask[i] & ctx.desc[v] == 0
               for i in cands)
    )


def static_bounds(ctx) -> np.ndarray:
    """Per op: bytes live at it whatever the order (a lower bound on its step)."""
    p = ctx.p
    n = p.n_ops
    full = (1 << n) - 1
    need = np.zeros(n, dtype=np.int64)
    for t, s in enumerate(p.size):
        if not s:
            continue
        prod = p.producer[t]
        if prod < 0 and t not in p.inputs:
            continue
        after = ctx.desc[prod] if prod >= 0 else full
        reach = full if p.pinned[t] else 0
        if not p.pinned[t]:
            for c in p.consumers[t]:
                reach |= ctx.anc[c] | (1 << c)
        live = after & reach
        if live:
            _add_bits(need, live, s)
    for v in range(n):
        need[v] += ctx.out_total[v] + ctx.extra[v] - max_alias_saving(ctx, v)
    return need


COMPILED_FLOW = True  # use OR-tools' max flow where installed (tests switch it off)


def _load_ortools_flow():
    try:
        from ortools.graph.python import max_flow
    except ImportError:  # the optional solver extra is not installed
        return None

    def solve(to: list[int], cap: list[int]) -> int | None:
        """Max flow 0 -> 1 of the edge list (edge 2i: to[2i+1] -> to[2i], cap[2i])."""
        heads = np.asarray(to[0::2], dtype=np.int32)
        tails = np.asarray(to[1::2], dtype=np.int32)
        caps = np.asarray(cap[0::2], dtype=np.int64)
        smf = max_flow.SimpleMaxFlow()
        if len(heads):
            smf.add_arcs_with_capacity(tails, heads, caps)
        else:
            return 0
        if smf.solve(0, 1) != smf.OPTIMAL:
            return None
        return int(smf.optimal_flow())

    return solve


_ortools_flow = _load_ortools_flow()


class _FlowGraph:
    """Dinic's maximum flow on a small graph (adjacency lists of edge indices)."""

    def __init__(self) -> None:
        self.to: list[int] = []
        self.cap: list[int] = []
        self.adj: list[list[int]] = [[], []]  # 0 = source, 1 = sink

    def node(self) -> int:
        self.adj.append([])
        return len(self.adj) - 1

    def edge(self, a: int, b: int, cap: int) -> None:
        self.adj[a].append(len(self.to))
        self.to.append(b)
        self.cap.append(cap)
        self.adj[b].append(len(self.to))
        self.to.append(a)
        self.cap.append(0)

    def max_flow(self, deadline: float = float("inf")) -> int | None:
        """The maximum flow, or None if ``deadline`` (time.monotonic) passes first.

        With OR-tools installed (the optional ``solver`` extra) its compiled max-flow
        solves it; this module's Dinic's algorithm is the reference (tests compare them).
        """
        if COMPILED_FLOW and _ortools_flow is not None:
            flow = _ortools_flow(self.to, self.cap)
            if flow is not None:
                return flow
        return self.dinic(deadline)

    def dinic(self, deadline: float = float("inf")) -> int | None:
        """Dinic's maximum flow in Python, or None if ``deadline`` passes first."""
        flow = 0
        to, cap, adj = self.to, self.cap, self.adj
        while True:
            if time.monotonic() > deadline:
                return None
            level = [-1] * len(adj)
            level[0] = 0
            q = deque([0])
            while q:
                a = q.popleft()
                for e in adj[a]:
                    if cap[e] and level[to[e]] < 0:
                        level[to[e]] = level[a] + 1
                        q.append(to[e])
            if level[1] < 0:
                return flow
            it = [0] * len(adj)
            rounds = 0
            while True:
                pushed = self._augment(level, it)
                if not pushed:
                    break
                flow += pushed
                rounds += 1
                if not rounds & 63 and time.monotonic() > deadline:
                    return None

    def _augment(self, level: list[int], it: list[int]) -> int:
        """One augmenting path in the level graph (iterative DFS)."""
        to, cap, adj = self.to, self.cap, self.adj
        path: list[int] = []
        a = 0
        while True:
            if a == 1:
                f = min(cap[e] for e in path)
                for e in path:
                    cap[e] -= f
                    cap[e ^ 1] += f
                return f
            while it[a] < len(adj[a]):
                e = adj[a][it[a]]
                if cap[e] and level[to[e]] == level[a] + 1:
                    break
                it[a] += 1
            else:
                if not path:
                    return 0
                level[a] = -1  # dead end
                e = path.pop()
                a = to[e ^ 1]
                it[a] += 1
                continue
            path.append(e)
            a = to[e]


@dataclass
class _ClosureGraph:
    """The flow network of ``closure_bound``: op nodes (``node``), the bytes resident
    whatever the closure (``resident``) and the bytes a closure can free (``gain``)."""

    g: _FlowGraph
    node: dict[int, int]
    resident: int
    gain: int


def _closure_graph(ctx, v: int | None, forced: int = 0) -> _ClosureGraph:
    """Source 0 -> "t has died" nodes -> the readers of t; op nodes -> sink 1 (kept outputs).

    A closure (downset) S in which v can run: v's ancestors and ``forced`` are in, v and its
    descendants are out; its resident bytes are ``resident`` + kept outputs of S - the bytes
    of tensors whose readers are all in S, which a minimum cut minimises. ``v=None``: any
    downset holding ``forced`` (every op a node unless forced).
    """
    p = ctx.p
    if v is None:
        forced_in, forced_out = forced, 0
    else:
        forced_in, forced_out = ctx.anc[v] | forced, ctx.desc[v] | (1 << v)
    g = _FlowGraph()
    node: dict[int, int] = {}
    # inputs are made before everything; unread ones are gone after scope 0
    resident = sum(p.size[t] for t in p.inputs if p.consumers[t] or p.pinned[t])
    for u in range(p.n_ops):
        if (forced_out >> u) & 1:
            continue
        if (forced_in >> u) & 1:
            resident += ctx.out_kept[u]
            continue
        node[u] = g.node()
        if ctx.out_kept[u]:
            g.edge(node[u], 1, ctx.out_kept[u])  # running u keeps its outputs resident
    for u, a in node.items():
        for q in p.preds[u]:
            if q in node:
                g.edge(a, node[q], INF)  # a downset holds u's predecessors
    gain = 0
    for t, size in enumerate(p.size):
        if not size or p.pinned[t] or not p.consumers[t]:
            continue
        if p.producer[t] < 0 and t not in p.inputs:
            continue
        if any((forced_out >> c) & 1 for c in p.consumers[t]):
            continue  # read by v or later: cannot have died
        open_cons = [c for c in p.consumers[t] if c in node]
        if not open_cons:
            resident -= size  # all readers already forced in: dead
            continue
        y = g.node()  # "t has died": needs all of its readers in S
        gain += size
        g.edge(0, y, size)
        for c in open_cons:
            g.edge(y, node[c], INF)
    return _ClosureGraph(g, node, resident, gain)


def closure_bound(ctx, v: int, deadline: float = float("inf"), forced: int = 0) -> int | None:
    """min over states S in which v can run of its step cost (minus its best saving);
    None if ``deadline`` (time.monotonic) passes before the minimum cut is found.

    ``forced``: a downset without v; then only states containing it count (a per-state
    bound: every completion from ``forced`` runs v in such a state)."""
    c = _closure_graph(ctx, v, forced)
    flow = c.g.max_flow(deadline)
    if flow is None:
        return None
    best_closure = c.gain - flow  # bytes freed minus bytes kept, at best
    return c.resident - best_closure + ctx.out_total[v] + ctx.extra[v] - max_alias_saving(ctx, v)


class StateClosure:
    """``closure_bound(ctx, v, forced=S)`` for many states S, on one compiled flow graph.

    The graph of ``closure_bound`` for v is built once, with an extra arc from the source
    to every op node and one from every op node to the sink; forcing the ops of S into the
    closure is setting the first arcs' capacities to more than any cut (so the minimum cut
    never cuts them), which is exactly removing S's ops from the choice; forcing ops out is
    the same with the second arcs. Needs OR-tools (the optional ``solver`` extra).
    """

    def __init__(self, ctx, v: int) -> None:
        _forcing_network(self, _closure_graph(ctx, v), ctx)
        self.down, self.up = ctx.anc[v], ctx.desc[v] | (1 << v)  # not nodes of the graph
        self.base = self.resident + ctx.out_total[v] + ctx.extra[v] - max_alias_saving(ctx, v)

    def bound(self, S: int, out: int = 0) -> int | None:
        """v's least step over the states containing downset S (v not in S) and none of
        the ops of ``out`` (an upset); ``INF`` if there is no such state, None if the
        solver fails."""
        if (S | self.down) & (out | self.up):
            return INF
        flow = _solve_forced(self, S, out)
        if flow is None:
            return None
        if flow >= self.big:
            return INF  # S and ``out`` overlap, or v cannot run between them
        return self.base - (self.gain - flow)


def _forcing_network(obj, c: _ClosureGraph, ctx) -> None:
    """``c``'s network with a forcing-in arc (source -> op node) and a forcing-out arc (op
    node -> sink) per op node, capacity 0 until set, loaded into an OR-tools solver; the
    attributes ``StateClosure`` and ``SharedClosure`` share (``searchcore.flow`` compiles
    ``network``, ``arcs``, ``out_arcs``, ``ops``, ``big``, ``base`` and ``gain``)."""
    from ortools.graph.python import max_flow

    g, node = c.g, c.node
    obj.big = c.gain + sum(ctx.out_kept) + 1  # more than any cut of a feasible closure
    first = len(g.to) // 2
    for a in node.values():
        g.edge(0, a, 0)  # the forcing-in arcs, capacity set per state
    for a in node.values():
        g.edge(a, 1, 0)  # the forcing-out arcs
    obj.ops = np.asarray(list(node), dtype=np.int64)
    k = len(node)
    obj.arcs = np.arange(first, first + k, dtype=np.int32)
    obj.out_arcs = np.arange(first + k, first + 2 * k, dtype=np.int32)
    obj.smf = max_flow.SimpleMaxFlow()
    heads = np.asarray(g.to[0::2], dtype=np.int32)
    tails = np.asarray(g.to[1::2], dtype=np.int32)
    caps = np.minimum(np.asarray(g.cap[0::2], dtype=np.int64), obj.big)
    obj.smf.add_arcs_with_capacity(tails, heads, caps)
    obj.network = (len(g.adj), tails, heads, caps)  # searchcore compiles it
    obj.n = ctx.p.n_ops
    obj.gain, obj.resident = c.gain, c.resident
    obj.outs = False  # whether some forcing-out arc is set


def _solve_forced(obj, S: int, out: int) -> int | None:
    """The maximum flow of a ``_forcing_network`` with the ops of S forced in and those of
    ``out`` forced out (OR-tools); None if the solver fails."""
    if len(obj.ops):
        bits = mask_bits(S, obj.n)[obj.ops]
        obj.smf.set_arcs_capacity(obj.arcs, bits.astype(np.int64) * obj.big)
        if out or obj.outs:
            obits = mask_bits(out, obj.n)[obj.ops]
            obj.smf.set_arcs_capacity(obj.out_arcs, obits.astype(np.int64) * obj.big)
            obj.outs = bool(out)
    if obj.smf.solve(0, 1) != obj.smf.OPTIMAL:
        return None
    return int(obj.smf.optimal_flow())


class SharedClosure:
    """Every op's ``StateClosure.bound`` on ONE flow network, built once per problem.

    The network of ``_closure_graph(ctx, None)`` has every op as a node; v's own network is
    this one with v's ancestors forced in and v and its descendants forced out. Forcing
    them is exact (a forced-out op sits on the sink side of every finite cut: its kept
    outputs are then never paid and a tensor it reads never counts as freed, as in v's
    network, where such ops and tensors are left out; a forced-in op's kept outputs are
    always paid and a tensor all of whose readers are forced in always counts as freed,
    as v's network counts them in ``resident``). So v's bound over the states holding S and
    none of ``out`` is ``base - (gain - flow) + own[v]`` with S | anc(v) forced in and
    out | desc(v) | v forced out: the same number as ``StateClosure(ctx, v).bound(S, out)``
    (tested), at one network for all ops instead of one per op (building those costs
    ~3.5 ms per op in Python). ``flow_value(S_in, S_out)``, when set, computes the forced
    maximum flow instead of OR-tools (``searchcore.shared_flow``: compiled, memoised).
    """

    def __init__(self, ctx) -> None:
        _forcing_network(self, _closure_graph(ctx, None), ctx)
        self.ctx = ctx
        self.base = self.resident
        self.own = [ctx.out_total[v] + ctx.extra[v] - max_alias_saving(ctx, v)
                    for v in range(ctx.p.n_ops)]
        self.flow_value = None

    def bound(self, v: int, S: int = 0, out: int = 0) -> int | None:
        ctx = self.ctx
        fin, fout = S | ctx.anc[v], out | ctx.desc[v] | (1 << v)
        if fin & fout:
            return INF
        flow = self.flow_value(fin, fout) if self.flow_value else _solve_forced(self, fin, fout)
        if flow is None:
            return None
        if flow >= self.big:
            return INF
        return self.base - (self.gain - flow) + self.own[v]

    def of(self, v: int) -> _OpClosure:
        """v's view, with ``StateClosure``'s ``bound(S, out)`` (for ``order_bound``)."""
        return _OpClosure(self, v)


@dataclass
class _OpClosure:
    shared: SharedClosure
    v: int

    def bound(self, S: int, out: int = 0) -> int | None:
        return self.shared.bound(self.v, S, out)


def order_bound(ctx, ops: Sequence[int], closure, above: int = -1,
                lower: Callable[[int, int, int], int] | None = None) -> int:
    """``order_bound_work``'s bound alone."""
    return order_bound_work(ctx, ops, closure, above, lower)[0]


def order_bound_work(ctx, ops: Sequence[int], closure, above: int = -1,
                     lower: Callable[[int, int, int], int] | None = None) -> tuple[int, int]:
    """A lower bound on the peak of every order from how it can order ``ops``.

    Every order runs ``ops`` in some sequence x1, x2, ... consistent with the DAG; when it
    runs xi, the ops before xi in that sequence and their ancestors have run, and those after
    it and their descendants have not. So xi costs at least its closure bound with the first
    set forced in and the second forced out, and the order peaks at least at the largest of
    these; the bound is the least of that over all sequences (memoised over the set of ops
    placed first, 2^len(ops) entries). ``closure(v)`` gives v's ``StateClosure``.

    ``above``: the result is exact when it exceeds ``above``; otherwise it is some value
    at most ``above`` (the search of a placed set stops at the first continuation that
    stays at or below ``above``, cheapest op first). Callers that only need bounds above
    a floor save most of the flows.

    ``lower(x, before, after)``, if given: a cheap lower bound on x's constrained bound
    when the ops of the bitmask ``before`` ran before x and those of ``after`` run after it
    (``PairTable.lower``). Each op's flow is then computed only when that lower bound is
    below the best continuation found so far (the others cannot lower it), the ops tried
    in the order of their lower bounds: the same value, fewer flows.

    Returns (the bound, the placed sets it evaluated): at equal bounds, a set whose
    cheap sequences are harder to find is closer to a higher bound (``pair_bounds`` grows
    such sets first).
    """
    k = len(ops)
    down = [ctx.anc[x] | (1 << x) for x in ops]
    up = [ctx.desc[x] | (1 << x) for x in ops]
    below = [sum(1 << j for j in range(k) if j != i and (ctx.anc[ops[i]] >> ops[j]) & 1)
             for i in range(k)]
    full = (1 << k) - 1
    memo: dict[int, int] = {full: 0}
    op_mask = [1 << x for x in ops]

    def value(placed: int) -> int:
        got = memo.get(placed)
        if got is not None:
            return got
        fin = before = 0
        for j in range(k):
            if (placed >> j) & 1:
                fin |= down[j]
                before |= op_mask[j]
        steps = []
        for i in range(k):
            if (placed >> i) & 1 or below[i] & ~placed:
                continue
            fout = after = 0
            for j in range(k):
                if not (placed >> j) & 1 and j != i:
                    fout |= up[j]
                    after |= op_mask[j]
            if lower is None:
                here = closure(ops[i]).bound(fin, fout)
                steps.append((0 if here is None else here, i, fout, after, True))  # None: failed
            else:
                steps.append((lower(ops[i], before, after), i, fout, after, False))
        best = INF
        for here, i, fout, after, exact in sorted(steps):
            if here >= best:
                break
            if not exact:
                here = closure(ops[i]).bound(fin, fout)
                if here is None:  # the solver failed: the cheap bound is still a bound
                    here = lower(ops[i], before, after)
                if here >= best:
                    continue
            best = min(best, max(here, value(placed | (1 << i))))
            if best <= above:
                break
        memo[placed] = best
        return best

    got = value(0)
    return got, len(memo)


class PairTable:
    """Cheap lower bounds for ``order_bound(lower=)``: x's closure bound with one other op
    forced before it (its ancestors and it in) or after it (it and its descendants out),
    one flow each, computed when first asked and kept for every set of ops. Forcing more
    ops in or out only shrinks the set of states, so x's bound under all the constraints
    of a sequence is at least the largest of these and of its unconstrained bound."""

    def __init__(self, ctx, closure, root: Sequence[int]) -> None:
        self.ctx, self.closure, self.root = ctx, closure, root
        self.before: dict[tuple[int, int], int] = {}
        self.after: dict[tuple[int, int], int] = {}

    def lower(self, x: int, before: int, after: int) -> int:
        """x's bound given the ops of mask ``before`` run before it and ``after`` after."""
        best = self.root[x]
        for j in bits(before):
            best = max(best, self._forced(x, j, True))
        for j in bits(after):
            best = max(best, self._forced(x, j, False))
        return best

    def _forced(self, x: int, j: int, first: bool) -> int:
        """x's closure bound with op j forced before it (``first``) or after it, kept."""
        table = self.before if first else self.after
        got = table.get((x, j))
        if got is None:
            low = 1 << j
            if first:
                b = self.closure(x).bound(self.ctx.anc[j] | low, 0)
            else:
                b = self.closure(x).bound(0, self.ctx.desc[j] | low)
            got = table[(x, j)] = self.root[x] if b is None else b
        return got


SetBound = Callable[[Sequence[int], int], tuple[int, int]]


def set_bound(ctx, closure, lower: Callable[[int, int, int], int] | None = None) -> SetBound:
    """``order_bound_work`` on ``closure`` (and ``lower``) as ``pair_bounds`` calls it:
    (ops, above) -> (bound, placed sets); ``searchcore.SetBounds`` is the compiled one."""
    return lambda ops, above: order_bound_work(ctx, ops, closure, above, lower)


def pair_bounds(ctx, cands: Sequence[int], floor: int, deadline: float, bound: SetBound,
                width: int = 0, max_ops: int = 3) -> int:
    """``floor`` raised by ``order_bound`` over incomparable pairs of ``cands``, then over
    ever larger sets: the ``width`` best sets of k ops, each with one more op of ``cands``,
    up to ``max_ops`` ops, until ``deadline`` (time.monotonic). Every value is a lower
    bound, so so is their maximum. A set's bound is at least that of any of its subsets
    (each sequence of the larger set orders the subset too, under more constraints), which
    is why growing the best sets pays; among sets of equal bound, those whose bound took
    more placed sets to settle are grown first (RandWire stage of 80 nodes, 80
    candidates: 27 tensors after 3.6 s ranked by bound alone, 28 after 6.5 s with the tie
    broken so). ``bound(ops, above)``: ``order_bound_work`` of a set (``set_bound``, or
    the compiled ``searchcore.SetBounds``)."""
    best = floor
    scored: list[tuple[tuple[int, int], tuple[int, ...]]] = []
    for i, a in enumerate(cands):
        for b in cands[i + 1:]:
            if time.monotonic() > deadline:
                return best
            if (ctx.anc[a] >> b) & 1 or (ctx.desc[a] >> b) & 1:
                continue  # comparable: the single-op bounds already cover it
            val = bound((a, b), best - 1)
            scored.append((val, (a, b)))
            best = max(best, val[0])
    for _size in range(3, max_ops + 1):
        scored.sort(reverse=True)
        seen: set[tuple[int, ...]] = set()
        grown: list[tuple[tuple[int, int], tuple[int, ...]]] = []
        for _val, ops in scored[:width]:
            for c in cands:
                if time.monotonic() > deadline:
                    return best
                key = tuple(sorted((*ops, c)))
                if c in ops or key in seen:
                    continue
                seen.add(key)
                val = bound(key, best - 1)
                grown.append((val, key))
                best = max(best, val[0])
        scored = grown
    return best
