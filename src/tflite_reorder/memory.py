"""TFLM's memory semantics, exactly: lifetimes, live bytes per scope, and in-place aliasing.

TFLM (``micro_allocation_info.cc``, ``MarkAllocationLifetimes``) gives every operator its own
scope, in stored order: subgraph inputs are created at the subgraph's first scope, an
operator's outputs are created at its scope, and every input and output of an operator is
last used at its scope, so all of them are live together; subgraph outputs live to the end.
Control-flow operators (IF, WHILE, CALL_ONCE) nest their subgraphs in new scopes inside their
own, with the caller's inputs and outputs live throughout. Arena sizes are rounded to 16.

Two views of the same rules live here and are tested against each other:
``simulate`` replays TFLM over the whole model (the truth for reports and the arena plan);
``Problem`` is one subgraph reduced to integers for the scheduler, where the nested
subgraphs of a control-flow operator become transient ``extra`` bytes at that operator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .graph import ModelGraph, SubgraphGraph, callees_first, post_order

# Operators whose output may take the buffer of an input of the same size and type that dies
# at the operator. Each entry was run in place on TFLM's kernels with bit-identical results
# (tests/test_inplace.py); the reshape family is a plain copy that TFLM skips when the
# pointers are equal (RESHAPE) or does onto itself (SQUEEZE, EXPAND_DIMS: memcpy with equal
# pointers, formally undefined in C but a no-op in practice). Proven on the reference
# kernels (host) and on TFLM's CMSIS-NN build for Cortex-M4 under QEMU
# (tests/test_target.py); other vendor kernels (Xtensa, …) were not tested.
INPLACE_OPS = frozenset({
    "ADD", "MUL", "RELU", "RESHAPE",
    # tests/test_inplace.py, models/inplace_*: int8 and float32 unless noted
    "SUB", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "RELU6", "LOGISTIC", "TANH",
    "HARD_SWISH", "LEAKY_RELU", "ABS", "SOFTMAX", "SQUEEZE", "EXPAND_DIMS",
    "NEG",  # float32 only: the converter has no int8 NEG
    "QUANTIZE",  # int8 -> int8 requantisation (other type pairs differ in size anyway)
})


@dataclass(frozen=True)
class Problem:
    """One subgraph as a scheduling problem; tensors keep their subgraph indices.

    ``size`` is the arena bytes of each tensor (0 for constants and the like); ``pinned``
    marks subgraph outputs (live to the end); ``alias[v]`` lists, per output of op ``v``,
    the inputs whose buffer it may take if that input dies at ``v``.
    """

    n_ops: int
    size: tuple[int, ...]
    producer: tuple[int, ...]  # -1: not produced by an op (subgraph input, constant, …)
    consumers: tuple[tuple[int, ...], ...]
    pinned: tuple[bool, ...]
    inputs: tuple[int, ...]  # subgraph inputs: live from scope 0
    op_in: tuple[tuple[int, ...], ...]
    op_out: tuple[tuple[int, ...], ...]
    preds: tuple[tuple[int, ...], ...]
    extra: tuple[int, ...]
    alias: tuple[tuple[tuple[int, tuple[int, ...]], ...], ...]

    @property
    def succs(self) -> tuple[tuple[int, ...], ...]:
        out: list[list[int]] = [[] for _ in range(self.n_ops)]
        for v, ps in enumerate(self.preds):
            for u in ps:
                out[u].append(v)
        return tuple(tuple(s) for s in out)


def alias_candidates(
    sg: SubgraphGraph, inplace: bool | frozenset[str] = True
) -> list[tuple[tuple[int, tuple[int, ...]], ...]]:
    """Static in-place candidates per op: output -> inputs of the same size and type
    (worked out once per graph and setting; the list is shared, never edit it)."""
    key = ("alias_candidates", inplace)
    if key not in sg.memo:
        sg.memo[key] = _alias_candidates(sg, inplace)
    return sg.memo[key]


def _alias_candidates(
    sg: SubgraphGraph, inplace: bool | frozenset[str]
) -> list[tuple[tuple[int, tuple[int, ...]], ...]]:
    ops = INPLACE_OPS if inplace is True else (frozenset(inplace) if inplace else frozenset())
    sg_io = set(sg.inputs) | set(sg.outputs)
    result = []
    for op in sg.ops:
        pairs = []
        if op.opcode in ops:
            for o in op.outputs:
                # an input that is a subgraph input or output must keep its contents
                to = sg.tensors[o]
                cands = tuple(
                    i for i in op.inputs
                    if i not in sg_io and sg.tensors[i].in_arena and to.in_arena
                    and sg.tensors[i].nbytes == to.nbytes and sg.tensors[i].dtype == to.dtype
                )
                if cands:
                    pairs.append((o, cands))
        result.append(tuple(pairs))
    return result


def build_problem(
    sg: SubgraphGraph,
    extra: Sequence[int] | None = None,
    inplace: bool | frozenset[str] = True,
) -> Problem:
    """One subgraph as the scheduler's ``Problem`` (``extra``: nested bytes per operator).

    Never raises for a subgraph ``build_graph`` accepted.
    """
    n = len(sg.ops)
    nt = len(sg.tensors)
    producer = [-1] * nt
    for t, p in sg.producer.items():
        producer[t] = p
    consumers = tuple(tuple(sg.consumers.get(t, ())) for t in range(nt))
    pinned = [False] * nt
    for t in sg.outputs:
        pinned[t] = True
    # A non-constant tensor that nothing produces and is no input holds no defined data;
    # TFLM plans it outside every scope, so it takes no part in scheduling.
    inputs = set(sg.inputs)
    size = tuple(
        t.arena_bytes if (producer[t.index] >= 0 or t.index in inputs) else 0
        for t in sg.tensors
    )
    return Problem(
        n_ops=n,
        size=size,
        producer=tuple(producer),
        consumers=consumers,
        pinned=tuple(pinned),
        inputs=tuple(dict.fromkeys(sg.inputs)),
        op_in=tuple(op.inputs for op in sg.ops),
        op_out=tuple(op.outputs for op in sg.ops),
        preds=tuple(sg.preds),
        extra=tuple(extra) if extra is not None else (0,) * n,
        alias=tuple(alias_candidates(sg, inplace)),
    )


# ---------------------------------------------------------------------------------------------
# The scheduler's view: incremental step costs over executed-op sets


def initial_live(p: Problem) -> int:
    """Bytes live at scope 0: every subgraph input (TFLM creates them before the first op)."""
    return sum(p.size[t] for t in p.inputs)


def resident_after_inputs(p: Problem) -> int:
    """Bytes resident before the first op: inputs that are consumed or are outputs."""
    return sum(p.size[t] for t in p.inputs if p.consumers[t] or p.pinned[t])


def step_costs(p: Problem, order: Sequence[int]) -> list[int]:
    """Live bytes at each operator's scope when ops run in ``order`` (TFLM's rule).

    At op v: everything resident (made earlier, still needed) + v's outputs + the nested
    subgraphs' bytes, less outputs that take the buffer of an input dying at v.
    """
    size, pinned, consumers = p.size, p.pinned, p.consumers
    remaining = [len(c) for c in consumers]
    mem = resident_after_inputs(p)
    costs = []
    for v in order:  # one pass over each op's tensors (this runs on 50,000-op replays)
        ins = p.op_in[v]
        for t in ins:
            remaining[t] -= 1
        out = kept = 0
        for t in p.op_out[v]:
            out += size[t]
            if consumers[t] or pinned[t]:
                kept += size[t]
        saved = 0
        for o, cands in p.alias[v]:
            if any(remaining[i] == 0 and not pinned[i] for i in cands):
                saved += size[o]
        costs.append(mem + out + p.extra[v] - saved)
        mem += kept
        for t in ins:
            if remaining[t] == 0 and not pinned[t]:
                mem -= size[t]
    return costs


def peak(p: Problem, order: Sequence[int]) -> int:
    """Peak live bytes of an order: the lower bound any arena plan for it must meet."""
    return max([initial_live(p), *step_costs(p, order)])


# ---------------------------------------------------------------------------------------------
# The truth: TFLM's lifetime marking replayed over the whole model


@dataclass(frozen=True)
class Buffer:
    """One arena allocation: a tensor, or several that share memory in place."""

    tensors: tuple[tuple[int, int], ...]  # (subgraph, tensor); the first owns the buffer
    size: int
    first: int
    last: int

    def overlaps(self, other: Buffer) -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclass(frozen=True)
class ArenaUse:
    """Every arena buffer of a model under given orders, with TFLM's global scopes."""

    buffers: tuple[Buffer, ...]
    n_scopes: int
    op_scope: dict[tuple[int, int], int]  # (subgraph, op) -> the scope TFLM gives it

    def profile(self) -> list[int]:
        """Live bytes at every scope 0 .. n_scopes-1."""
        diff = [0] * (self.n_scopes + 1)
        for b in self.buffers:
            if b.first >= 0:
                diff[b.first] += b.size
                diff[b.last + 1] -= b.size
        out, run = [], 0
        for s in range(self.n_scopes):
            run += diff[s]
            out.append(run)
        return out

    def live_at(self, scopes: Sequence[int]) -> list[int]:
        """Live bytes at each of ``scopes`` (any order), from the buffers' start and end
        events: cheap however many scopes nested control flow gives the model."""
        import bisect

        events: dict[int, int] = {}
        for b in self.buffers:
            if b.first >= 0:
                events[b.first] = events.get(b.first, 0) + b.size
                events[b.last + 1] = events.get(b.last + 1, 0) - b.size
        times = sorted(events)
        running, run = [], 0
        for t in times:
            run += events[t]
            running.append(run)
        out = []
        for s in scopes:
            k = bisect.bisect_right(times, s)
            out.append(running[k - 1] if k else 0)
        return out

    @property
    def lower_bound(self) -> int:
        """Max live bytes over scopes: no plan of these lifetimes can use less arena.

        Computed from the buffers' start and end events, not per scope: nested control
        flow can give a model far more scopes than buffers.
        """
        unplaced = max((b.size for b in self.buffers if b.first < 0), default=0)
        events: dict[int, int] = {}
        for b in self.buffers:
            if b.first >= 0:
                events[b.first] = events.get(b.first, 0) + b.size
                events[b.last + 1] = events.get(b.last + 1, 0) - b.size
        best = run = 0
        for t in sorted(events):
            run += events[t]
            best = max(best, run)
        return max(unplaced, best)


class _Valid:
    """A view of a pattern cache that only shows entries built for the current orders."""

    def __init__(self, cache: dict, orders: Sequence[Sequence[int]]) -> None:
        self.cache, self.orders = cache, orders

    def __contains__(self, s: int) -> bool:
        hit = self.cache.get(s)
        return hit is not None and hit[0] is self.orders[s]

    def __getitem__(self, s: int) -> _Pattern:
        return self.cache[s][1]

    def __setitem__(self, s: int, pattern: _Pattern) -> None:
        self.cache[s] = (self.orders[s], pattern)


@dataclass
class _Pattern:
    """One subgraph's marks relative to the scope at which its marking starts.

    ``span`` is how many scopes marking it (and everything it nests) takes; ``calls`` are
    the nested subgraphs with the relative scope each is entered at.
    """

    first: dict[int, int]
    last: dict[int, int]
    op_scope: dict[int, int]
    calls: list[tuple[int, int]]
    span: int


class _Marker:
    """Replays MarkAllocationLifetimes for the subgraphs it is started on and all they nest.

    TFLM walks every path of nested control flow; a subgraph reached again is marked
    again, its marks overwriting the earlier ones, so the last visit of each subgraph
    decides its tensors' lifetimes. Walking every path is exponential when branches share
    a subgraph (30 nested IFs whose branches are one subgraph: 2^30 visits), so each
    subgraph's marks are computed once relative to its entry scope (``_Pattern``) and
    placed at its last entry, found over the call DAG; no recursion (1,500 nested IFs).
    """

    def __init__(self, graph: ModelGraph, orders: Sequence[Sequence[int]],
                 cache: dict | None = None) -> None:
        self.graph, self.orders = graph, orders
        self.scope = 0
        self.first: dict[tuple[int, int], int] = {}
        self.last: dict[tuple[int, int], int] = {}
        self.op_scope: dict[tuple[int, int], int] = {}
        self.visited: set[int] = set()
        self.entry: dict[int, int] = {}  # visited subgraph -> the scope its last visit starts
        # subgraph -> (the order it was built for, its pattern); may be shared by markers
        # of one graph, an entry is valid while that order object is still the one in use
        self._cache: dict[int, tuple[Sequence[int], _Pattern]] = {} if cache is None else cache

    @property
    def _patterns(self) -> _Valid:
        return _Valid(self._cache, self.orders)

    def mark(self, s: int) -> None:
        """Mark subgraph ``s`` (and what it nests) from the current scope on."""
        self.mark_all([s], new_scope=False)

    def mark_all(self, roots: Sequence[int], new_scope: bool = True) -> None:
        """Mark ``roots`` one after another, each in a new scope (as a control-flow op
        enters its subgraphs); ``new_scope=False`` starts the first at the current one."""
        last_entry: dict[int, int] = {}
        for k, s in enumerate(roots):
            if k or new_scope:
                self.scope += 1
            last_entry[s] = self.scope
            self.scope += self._pattern(s).span
        for s in reversed(post_order(self.graph, list(last_entry))):  # callers first
            for c, rel in self._pattern(s).calls:
                last_entry[c] = max(last_entry.get(c, -1), last_entry[s] + rel)
        for s, entry in last_entry.items():
            pat = self._pattern(s)
            self.visited.add(s)
            self.entry[s] = entry
            self.first.update({(s, t): entry + r for t, r in pat.first.items()})
            self.last.update({(s, t): entry + r for t, r in pat.last.items()})
            self.op_scope.update({(s, v): entry + r for v, r in pat.op_scope.items()})

    def _pattern(self, s: int) -> _Pattern:
        """``s``'s relative marks; callees' patterns are built first, without recursion."""
        todo = [s]
        while todo:
            top = todo[-1]
            if top in self._patterns:
                todo.pop()
                continue
            missing = [c for v in self.orders[top] for c in self.graph.subgraphs[top].ops[v].calls
                       if c not in self._patterns]
            if missing:
                todo.extend(dict.fromkeys(missing))
            else:
                self._patterns[top] = self._relative(top)
                todo.pop()
        return self._patterns[s]

    def _relative(self, s: int) -> _Pattern:
        sg = self.graph.subgraphs[s]
        first: dict[int, int] = {}
        last: dict[int, int] = {}
        op_scope: dict[int, int] = {}
        calls: list[tuple[int, int]] = []
        scope = 0
        for t in (*sg.inputs, *sg.outputs):
            first[t] = last[t] = scope
        for v in self.orders[s]:
            op = sg.ops[v]
            scope += 1
            op_scope[v] = scope
            for t in op.outputs:
                first[t] = last[t] = scope
            for callee in op.calls:
                scope += 1
                calls.append((callee, scope))
                scope += self._patterns[callee].span
            for t in (*op.inputs, *op.outputs):
                last[t] = scope
        for t in sg.outputs:
            last[t] = scope
        return _Pattern(first, last, op_scope, calls, scope)


def simulate(
    graph: ModelGraph,
    orders: Sequence[Sequence[int]],
    inplace: bool | frozenset[str] = True,
    root: int = 0,
) -> ArenaUse:
    """TFLM's lifetimes for ``orders`` (one per subgraph), with in-place groups merged.

    Never raises for a graph ``build_graph`` accepted and one order per subgraph.
    """
    m = _Marker(graph, orders)
    m.mark(root)
    return _arena_use(graph, orders, m, inplace, only_marked=False)


def _arena_use(graph, orders, m: _Marker, inplace, only_marked: bool) -> ArenaUse:
    """The buffers of the subgraphs ``m`` visited, each placed at its last entry; with
    ``only_marked=False`` also every other arena tensor, unplaced (lifetime -1)."""
    buffers = []
    for s in sorted(m.visited) if only_marked else range(len(graph.subgraphs)):
        pat = m._pattern(s) if s in m.visited else None
        if pat is not None:
            entry = m.entry[s]
            buffers += [Buffer(tuple((s, t) for t in members), size, entry + first, entry + last)
                        for members, size, first, last in _own_buffers(graph, orders, s, pat,
                                                                       inplace)]
        if not only_marked:  # never referenced by the marking walk: TFLM plans it at -1
            buffers += [Buffer(((s, t),), info.arena_bytes, -1, -1)
                        for t, info in enumerate(graph.subgraphs[s].tensors)
                        if info.in_arena and (pat is None or t not in pat.first)]
    buffers.sort(key=lambda b: (b.first, b.tensors))
    return ArenaUse(tuple(buffers), m.scope + 1, m.op_scope)


def _own_buffers(graph, orders, s: int, pat: _Pattern, inplace
                 ) -> list[tuple[list[int], int, int, int]]:
    """Subgraph ``s``'s marked arena buffers relative to its entry: (tensors, the first
    owning the buffer; bytes; first scope; last scope). In-place groups never cross
    subgraphs, and shifting a subgraph's marks keeps which input dies where, so these are
    the same at every entry."""
    sg = graph.subgraphs[s]
    parent = _alias_groups(sg, orders[s], pat, inplace)
    groups: dict[int, list[int]] = {}
    for t, info in enumerate(sg.tensors):
        if info.in_arena and t in pat.first:
            groups.setdefault(_find(parent, t), []).append(t)
    out = []
    for members in groups.values():
        if len(members) == 1:  # most buffers hold one tensor
            t = members[0]
            out.append((members, sg.tensors[t].arena_bytes, pat.first[t], pat.last[t]))
            continue
        members.sort(key=lambda t: (pat.first[t], t))
        out.append((members, max(sg.tensors[t].arena_bytes for t in members),
                    min(pat.first[t] for t in members), max(pat.last[t] for t in members)))
    return out


def _find(parent: dict, k):
    while parent.get(k, k) != k:
        k = parent[k]
    return k


def _alias_groups(sg: SubgraphGraph, order: Sequence[int], pat: _Pattern, inplace) -> dict:
    """Union each in-place output with the candidate input that dies at its operator."""
    parent: dict[int, int] = {}
    if not inplace:
        return parent
    cands = alias_candidates(sg, inplace)
    for v in order:
        scope = pat.op_scope[v]
        taken: set[int] = set()
        for o, inputs in cands[v]:
            for i in inputs:
                if i not in taken and pat.last.get(i) == scope:
                    taken.add(i)
                    parent[o] = _find(parent, i)
                    break
    return parent


# Composing nested peaks visits one state per (subgraph, set of its callees marked again
# later); beyond this many (a contrived sharing of callees) each operator is marked instead.
MAX_PEAK_STATES = 200_000


class _TooManyStates(Exception):
    pass


class _NestedPeaks:
    """Peak live bytes of the subgraphs a control-flow operator nests, composed bottom-up.

    Marking ``c`` nests its callees' windows one after another inside its own scopes, and
    a subgraph reached again is placed only at its last visit (``_Marker``). So the
    subgraphs placed inside a window of ``c`` are those its callee reaches that no later
    window of ``c`` reaches, and the live bytes at any scope are the placed subgraphs'
    own bytes along one chain of windows. Hence ``peak(c, X)``, the peak of ``c`` and what
    it nests when the subgraphs in ``X`` are placed later elsewhere, is ``-1`` if ``c`` is
    in ``X`` and otherwise the larger of ``c``'s own peak and, per window, ``c``'s own bytes
    there plus ``peak(callee, X | reach of c's later windows)``. Each state is computed
    once (memoised, iteratively: no recursion at 1,500 nested IFs), so a chain of nested
    IFs costs one state per level, 30 IFs whose branches are one subgraph too.

    Entries are checked against each subgraph's own order object; a caller that keeps
    one instance (through ``nested_extra``'s ``cache``) must only change the order of a
    subgraph before asking about any of its callers (callees first, as the scheduler
    does).
    """

    def __init__(self, graph: ModelGraph, inplace, cache: dict) -> None:
        self.graph, self.inplace, self.cache = graph, inplace, cache
        self.reach: list[int] = [0] * len(graph.subgraphs)  # bit set: s and all it nests
        for c in callees_first(graph):
            bits = 1 << c
            for op in graph.subgraphs[c].ops:
                for e in op.calls:
                    bits |= self.reach[e]
            self.reach[c] = bits
        self.own: dict[int, tuple[Sequence[int], int, list[tuple[int, int, int]]]] = {}
        self.memo: dict[tuple[int, int], int] = {}

    def of_calls(self, orders: Sequence[Sequence[int]], calls: Sequence[int]) -> int:
        """Peak bytes of marking ``calls`` one after another in new scopes."""
        self.orders = orders
        later, kids = 0, []
        for e in reversed(calls):
            kids.append((e, later & self.reach[e]))
            later |= self.reach[e]
        return max([0, *(self._peak(k) for k in kids)])

    def _windows(self, c: int) -> tuple[int, list[tuple[int, int, int]]]:
        """``c``'s own peak and, per callee window: (callee, own bytes, later windows' reach)."""
        hit = self.own.get(c)
        if hit is not None and hit[0] is self.orders[c]:
            return hit[1], hit[2]
        if hit is not None:  # c was re-ordered: what was composed through it is stale
            self.memo.clear()
        pat = _Marker(self.graph, self.orders, self.cache)._pattern(c)
        bufs = _own_buffers(self.graph, self.orders, c, pat, self.inplace)
        use = ArenaUse(tuple(Buffer((), size, f, last) for _, size, f, last in bufs),
                       pat.span + 1, {})
        live = use.live_at([rel for _, rel in pat.calls])
        windows, later = [], 0
        for (e, _), own in zip(reversed(pat.calls), reversed(live), strict=True):
            windows.append((e, own, later))
            later |= self.reach[e]
        windows.reverse()
        self.own[c] = (self.orders[c], use.lower_bound, windows)
        return use.lower_bound, windows

    def _peak(self, key0: tuple[int, int]) -> int:
        memo, stack = self.memo, [key0]
        while stack:
            key = stack[-1]
            if key in memo:
                stack.pop()
                continue
            c, x = key
            if x >> c & 1:
                memo[key] = -1
                stack.pop()
                continue
            own, windows = self._windows(c)
            kids = [(e, (x | later) & self.reach[e]) for e, _, later in windows]
            missing = [k for k in kids if k not in memo]
            if missing:
                stack += missing
                continue
            memo[key] = max([own, *(b + memo[k] for (_, b, _), k in zip(windows, kids,
                                                                          strict=True)
                                    if memo[k] >= 0)])
            stack.pop()
            if len(memo) > MAX_PEAK_STATES:
                raise _TooManyStates
        return memo[key0]


def _peak_by_marking(graph, orders, calls: Sequence[int], inplace, cache: dict) -> int:
    """Peak bytes of marking ``calls`` as TFLM does (the reference ``_NestedPeaks`` composes;
    O(subgraphs reached) per call)."""
    m = _Marker(graph, orders, cache)
    m.mark_all(calls)
    return _arena_use(graph, orders, m, inplace, only_marked=True).lower_bound


def nested_extra(
    graph: ModelGraph, orders: Sequence[Sequence[int]], s: int, inplace=True,
    cache: dict | None = None,
) -> list[int]:
    """Per op of subgraph ``s``: peak bytes of the subgraphs it nests (0 if none).

    ``cache`` (any dict, kept by the caller across calls on one graph) keeps the callees'
    marking patterns and composed peaks; an order may change only before its subgraph's
    callers are asked about (callees first). Never raises for a graph ``build_graph``
    accepted.
    """
    cache = {} if cache is None else cache
    peaks = cache.get(("peaks", inplace))
    if peaks is None:
        peaks = cache[("peaks", inplace)] = _NestedPeaks(graph, inplace, cache)
    extra, known = [], {}
    for op in graph.subgraphs[s].ops:
        if op.calls and op.calls not in known:  # ops calling the same subgraphs agree
            try:
                known[op.calls] = peaks.of_calls(orders, op.calls)
            except _TooManyStates:
                peaks.memo.clear()
                known[op.calls] = _peak_by_marking(graph, orders, op.calls, inplace, cache)
        extra.append(known[op.calls] if op.calls else 0)
    return extra


def subgraph_problems(
    graph: ModelGraph, orders: Sequence[Sequence[int]], inplace: bool | frozenset[str] = True
) -> list[Problem]:
    """One scheduling problem per subgraph, control-flow ops carrying their nested bytes."""
    cache: dict = {}
    return [
        build_problem(sg, nested_extra(graph, orders, s, inplace, cache), inplace)
        for s, sg in enumerate(graph.subgraphs)
    ]
