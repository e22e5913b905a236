"""The operator DAG of every subgraph of a TFLite model.

Edges come from data (a tensor's producer before its consumers) and, conservatively, from
state: operators that touch variable or resource tensors, custom operators and other ops
with side effects keep their stored relative order, so no reorder can change what they see.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from ai_edge_litert import schema_py_generated as schema

from .dtypes import TYPE_NAMES, align, tensor_bytes
from .flatbuffer_io import ModelError
from .options import builtin_code
from .tensors import ints, is_constant, stored_shape, text

BUILTIN_NAMES: dict[int, str] = {
    v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")
}
# Builtins whose effect is not captured by their tensors (state, I/O, randomness).
SIDE_EFFECT_OPS = frozenset({
    "CALL_ONCE", "VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "HASHTABLE",
    "HASHTABLE_FIND", "HASHTABLE_IMPORT", "HASHTABLE_SIZE", "RANDOM_STANDARD_NORMAL",
    "RANDOM_UNIFORM", "MULTINOMIAL", "CUSTOM",
})
# Tensor types whose operators keep their stored relative order (state held in the runtime).
STATE_TYPES = frozenset({"RESOURCE", "VARIANT"})
# Control-flow builtins whose subgraphs TFLM nests inside the calling operator's scope, with
# the options fields that name them, in the order TFLM marks them.
CONTROL_FLOW = {
    "IF": ("thenSubgraphIndex", "elseSubgraphIndex"),
    "WHILE": ("condSubgraphIndex", "bodySubgraphIndex"),
    "CALL_ONCE": ("initSubgraphIndex",),
}


@dataclass(frozen=True)
class TensorInfo:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int  # bytes the kernels use (true shape where known, else stored shape)
    in_arena: bool  # TFLM plans it: no constant data, not a variable, nbytes > 0
    stored_shape: tuple[int, ...] = ()

    @property
    def arena_bytes(self) -> int:
        """Bytes this tensor takes in the arena (rounded to TFLM's 16-byte alignment)."""
        return align(self.nbytes) if self.in_arena else 0


@dataclass(frozen=True)
class OpNode:
    index: int  # position in the stored order
    opcode: str
    inputs: tuple[int, ...]  # tensor indices, optional (-1) inputs removed
    outputs: tuple[int, ...]
    calls: tuple[int, ...] = ()  # subgraphs nested by TFLM (IF, WHILE, CALL_ONCE)


@dataclass
class SubgraphGraph:
    index: int
    name: str
    tensors: list[TensorInfo]
    ops: list[OpNode]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    producer: dict[int, int] = field(default_factory=dict)
    consumers: dict[int, list[int]] = field(default_factory=dict)
    preds: list[tuple[int, ...]] = field(default_factory=list)
    # tables derived from this (never edited) graph, each computed once: ``memory`` keeps
    # the in-place candidates here, asked for by every problem built and every replay
    memo: dict = field(default_factory=dict, repr=False, compare=False)

    @cached_property
    def succs(self) -> list[tuple[int, ...]]:
        out: list[list[int]] = [[] for _ in self.ops]
        for v, ps in enumerate(self.preds):
            for u in ps:
                out[u].append(v)
        return [tuple(s) for s in out]

    def is_topological(self, order: list[int] | tuple[int, ...]) -> bool:
        if sorted(order) != list(range(len(self.ops))):
            return False
        pos = {v: i for i, v in enumerate(order)}
        return all(pos[u] < pos[v] for v, ps in enumerate(self.preds) for u in ps)


@dataclass
class ModelGraph:
    subgraphs: list[SubgraphGraph]

    @property
    def n_ops(self) -> int:
        return sum(len(sg.ops) for sg in self.subgraphs)

    @property
    def n_tensors(self) -> int:
        return sum(len(sg.tensors) for sg in self.subgraphs)

    def stored_orders(self) -> list[list[int]]:
        return [list(range(len(sg.ops))) for sg in self.subgraphs]


def opcode_name(model: schema.ModelT, opcode_index: int) -> str:
    """The builtin's name (``CUSTOM:<code>`` for custom ops, ``BUILTIN_<n>`` when newer than
    the schema).

    Raises ``ModelError`` for an index outside the operator codes.
    """
    codes = model.operatorCodes or []
    if not 0 <= opcode_index < len(codes):
        raise ModelError(f"operator code index {opcode_index} out of range ({len(codes)} codes)")
    code = codes[opcode_index]
    builtin = builtin_code(code)
    name = BUILTIN_NAMES.get(builtin, f"BUILTIN_{builtin}")
    if name == "CUSTOM":
        custom = text(code.customCode)
        return f"CUSTOM:{custom}" if custom else "CUSTOM"
    return name


def opcode_namer(model: schema.ModelT) -> Callable[[int], str]:
    """``opcode_name`` for one model, each operator code's name worked out once: the passes
    over every operator (graph, shape inference, hazards) ask for 50,000 names at 50,000
    ops. Raises as ``opcode_name`` for an index outside the operator codes."""
    names = [opcode_name(model, i) for i in range(len(model.operatorCodes or []))]

    def name(index: int) -> str:
        return names[index] if 0 <= index < len(names) else opcode_name(model, index)
    return name


def _tensor_info(
    model: schema.ModelT, t: schema.TensorT, index: int, true_shape: tuple[int, ...] | None
) -> TensorInfo:
    stored = stored_shape(t)
    shape = true_shape if true_shape is not None else stored
    dtype = TYPE_NAMES.get(t.type, f"TYPE_{t.type}")
    nbytes = tensor_bytes(shape, dtype)
    in_arena = not is_constant(model, t.buffer) and not t.isVariable and nbytes > 0
    return TensorInfo(index, text(t.name), shape, dtype, nbytes, in_arena, stored)


def _calls(op: schema.OperatorT, opcode: str) -> tuple[int, ...]:
    """The subgraphs a control-flow op calls. Without options (none stored, or another
    op's, which the reader clears: ``options.drop_foreign_options``) the runtimes' parsers
    keep zeroed parameters: every branch is subgraph 0."""
    fields = CONTROL_FLOW.get(opcode)
    if not fields:
        return ()
    return tuple(int(getattr(op.builtinOptions, f, 0)) for f in fields)


def stateful_opcode(opcode: str) -> bool:
    """Whether operators of this name keep their stored relative order whatever their
    tensors: custom ops and builtins newer than our schema (``BUILTIN_<n>``) may have any
    effect, and ``SIDE_EFFECT_OPS`` do."""
    return opcode.startswith(("CUSTOM", "BUILTIN_")) or opcode in SIDE_EFFECT_OPS


def _stateful(opcode: str, tensors: list[TensorInfo], ts: tuple[int, ...], model_t) -> bool:
    if stateful_opcode(opcode):
        return True
    return any(tensors[t].dtype in STATE_TYPES or model_t[t].isVariable for t in ts)


def op_nodes(model: schema.ModelT, sg_index: int,
             op_name: Callable[[int], str] | None = None) -> list[OpNode]:
    """One subgraph's operators as ``OpNode``s, in stored order: opcode names, inputs
    (optional ``-1`` and repeats left out), outputs and called subgraphs. What the graph
    builder and the writer's self-check (which compares the operators it wrote) both read.

    Raises ``ModelError`` for tensor indices outside the subgraph, an output index -1 and
    calls of missing subgraphs.
    """
    sg = model.subgraphs[sg_index]
    nt = len(sg.tensors or [])
    where = f"subgraph {sg_index}"
    n_sub = len(model.subgraphs)
    op_name = op_name or opcode_namer(model)
    ops: list[OpNode] = []
    for i, op in enumerate(sg.operators or []):
        name = op_name(op.opcodeIndex)

        def what(i=i, name=name) -> str:
            return f"operator {i} ({name})"

        ins = checked_indices(op.inputs, nt, where, what)
        outs = checked_indices(op.outputs, nt, where, what)
        if -1 in outs:
            raise ModelError(f"{where}: operator {i} ({name}) has an output index -1")
        calls = _calls(op, name)
        for c in calls:
            if not 0 <= c < n_sub:
                raise ModelError(f"{where}: operator {i} ({name}) calls missing subgraph {c}")
        used = tuple(dict.fromkeys(t for t in ins if t >= 0))
        ops.append(OpNode(i, name, used, tuple(dict.fromkeys(outs)), calls))
    return ops


def checked_indices(vec, nt: int, where: str, what: Callable[[], str]) -> tuple[int, ...]:
    """A vector of tensor indices as a tuple; ``ModelError`` for one outside ``-1..nt-1``."""
    ts = ints(vec)
    if ts and not (-1 <= min(ts) and max(ts) < nt):
        t = next(t for t in ts if not -1 <= t < nt)
        raise ModelError(f"{where}: {what()} refers to tensor {t}, but there are {nt} "
                         f"tensors")
    return ts


def producers(ops: Sequence[OpNode], where: str,
              name: Callable[[int], str] = str) -> dict[int, int]:
    """Tensor -> the position of the operator that writes it; ``ModelError`` for a tensor
    two operators write (``name``: how a tensor is named in that message)."""
    producer: dict[int, int] = {}
    for pos, op in enumerate(ops):
        for t in op.outputs:
            if t in producer:
                raise ModelError(
                    f"{where}: tensor {t} ({name(t)}) is produced by operators "
                    f"{ops[producer[t]].index} and {op.index}"
                )
            producer[t] = pos
    return producer


def build_subgraph(
    model: schema.ModelT,
    sg_index: int,
    true_shapes: dict[int, tuple[int, ...]] | None = None,
) -> SubgraphGraph:
    """One subgraph's DAG (``true_shapes``: tensor index -> the shape kernels use).

    Raises ``ModelError`` for bad indices, tensors written twice, operators writing a
    constant, reads of memory nothing writes (also before its writer, in the stored order,
    which is the order the runtimes run) and cycles.
    """
    sg = model.subgraphs[sg_index]
    raw_tensors = sg.tensors or []
    nt = len(raw_tensors)
    where = f"subgraph {sg_index}"
    true_shapes = true_shapes or {}
    tensors = [_tensor_info(model, t, i, true_shapes.get(i)) for i, t in enumerate(raw_tensors)]
    ops = op_nodes(model, sg_index)
    io_in = checked_indices(sg.inputs, nt, where, lambda: "subgraph inputs")
    io_out = checked_indices(sg.outputs, nt, where, lambda: "subgraph outputs")
    if -1 in io_in or -1 in io_out:
        raise ModelError(f"{where}: subgraph input/output index -1")

    producer = producers(ops, where, lambda t: tensors[t].name)
    _check_writes_no_constant(model, sg, ops, producer, where)
    consumers: dict[int, list[int]] = {}
    for op in ops:
        for t in op.inputs:
            consumers.setdefault(t, []).append(op.index)
            if t not in producer and t not in io_in and tensors[t].in_arena \
                    and not getattr(raw_tensors[t], "externalBuffer", 0):
                # Its bytes are whatever the arena held: no order or plan can be checked.
                raise ModelError(
                    f"{where}: operator {op.index} ({op.opcode}) reads tensor {t} "
                    f"({tensors[t].name}), which no operator writes and is neither a "
                    f"subgraph input nor a constant (uninitialized memory)"
                )

    for t in io_out:
        if t not in producer and t not in io_in and tensors[t].in_arena \
                and not getattr(raw_tensors[t], "externalBuffer", 0):
            # the caller (or the user) reads whatever the arena held; a WHILE whose
            # condition is such a tensor may never stop
            raise ModelError(
                f"{where}: output tensor {t} ({tensors[t].name}) is written by no "
                f"operator and is neither a subgraph input nor a constant (uninitialized "
                f"memory)")

    preds: list[set[int]] = [set() for _ in ops]
    early_reads = []  # (op, tensor): an arena tensor read before its writer runs
    for op in ops:
        for t in op.inputs:
            p = producer.get(t)
            if p is None:
                continue
            variable = bool(raw_tensors[t].isVariable)  # holds the last run's value
            if p == op.index:  # its own output: read before the kernel writes it
                if not variable:
                    early_reads.append((op, t))
                continue
            if p > op.index:  # the runtimes run the stored order: the read comes first
                if variable:
                    continue  # the stateful order keeps the reader first
                # any other tensor, zero-sized ones too (fuzz seed 6001 case 47564: an
                # edge skipped for an empty tensor hid a cycle from the check below)
                early_reads.append((op, t))
            preds[op.index].add(p)
    # Ops with state or side effects keep their stored relative order.
    last_stateful = None
    for op in ops:
        if _stateful(op.opcode, tensors, op.inputs + op.outputs, raw_tensors):
            if last_stateful is not None:
                preds[op.index].add(last_stateful)
            last_stateful = op.index

    graph = SubgraphGraph(
        index=sg_index, name=text(sg.name), tensors=tensors, ops=ops, inputs=io_in,
        outputs=io_out, producer=producer, consumers=consumers,
        preds=[tuple(sorted(p)) for p in preds],
    )
    _check_acyclic(graph, where)
    if early_reads:  # a valid order exists, but not the one the runtimes run
        op, t = early_reads[0]
        p = producer[t]
        if p == op.index:
            raise ModelError(
                f"{where}: operator {op.index} ({op.opcode}) reads its own output tensor {t} "
                f"({tensors[t].name}), which holds nothing before the operator writes it "
                f"(uninitialized memory)")
        raise ModelError(
            f"{where}: operator {op.index} ({op.opcode}) reads tensor {t} "
            f"({tensors[t].name}) before operator {p} ({ops[p].opcode}) writes it: LiteRT "
            f"and TFLM run the stored order, so it reads uninitialized memory")
    return graph


def _check_writes_no_constant(model: schema.ModelT, sg: schema.SubGraphT, ops: list[OpNode],
                              producer: dict[int, int], where: str) -> None:
    """``ModelError`` for an operator that writes a tensor holding constant data.

    Both runtimes point such a tensor at the model's own bytes and the kernel writes its
    output there (measured: LiteRT and TFLM ran one and the model bytes handed to them
    changed); on a microcontroller those bytes are in flash. No order or plan of ours can
    make that right, and the writer would find the weight changed."""
    for t, p in producer.items():
        tensor = sg.tensors[t]
        if is_constant(model, tensor.buffer):
            raise ModelError(
                f"{where}: operator {ops[p].index} ({ops[p].opcode}) writes tensor {t} "
                f"({text(tensor.name)}), which holds constant data (buffer {tensor.buffer}): "
                f"the runtimes would write into the model's weights")


def topological_order(preds: Sequence[Iterable[int]]) -> list[int]:
    """Kahn's order of ops ``0..n-1`` given each op's predecessors; stable: of the ready ops
    the lowest index goes first, so an order that already is topological comes back as is.

    On a cycle the result is shorter than ``preds``: the ops on or behind a cycle are left
    out (callers say which). Never raises.
    """
    succs: list[list[int]] = [[] for _ in preds]
    indeg = [0] * len(preds)
    for v, ps in enumerate(preds):
        for u in set(ps):
            succs[u].append(v)
            indeg[v] += 1
    ready = [v for v, d in enumerate(indeg) if d == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        v = heapq.heappop(ready)
        order.append(v)
        for w in succs[v]:
            indeg[w] -= 1
            if indeg[w] == 0:
                heapq.heappush(ready, w)
    return order


def _check_acyclic(graph: SubgraphGraph, where: str) -> None:
    order = topological_order(graph.preds)
    if len(order) != len(graph.ops):
        done = set(order)
        stuck = [v for v in range(len(graph.ops)) if v not in done]
        raise ModelError(
            f"{where}: operator graph has a cycle (through operators {stuck[:5]})"
        )


def build_graph(
    model: schema.ModelT,
    true_shapes: dict[tuple[int, int], tuple[int, ...]] | None = None,
) -> ModelGraph:
    """Build every subgraph's DAG; ``true_shapes`` maps (subgraph, tensor) to a repaired shape.

    Raises ``ModelError`` as ``build_subgraph`` does, and for recursive control flow
    or arena tensors past 32 bits.
    """
    true_shapes = true_shapes or {}
    subgraphs = []
    for s in range(len(model.subgraphs)):
        per = {t: shp for (si, t), shp in true_shapes.items() if si == s}
        subgraphs.append(build_subgraph(model, s, per))
    graph = ModelGraph(subgraphs)
    _check_calls_acyclic(graph)
    _check_arena_size(graph)
    return graph


MAX_ARENA = 2**31 - 1  # offline-plan offsets and TFLM's arena sizes are 32-bit


def _check_arena_size(graph: ModelGraph) -> None:
    """Reject arena tensors whose sizes add up past 32 bits: no plan of them is representable
    (``OfflineMemoryAllocation`` offsets are int32); it takes a corrupt or absurd shape."""
    tensors = [(t.arena_bytes, s, t) for s, sg in enumerate(graph.subgraphs) for t in sg.tensors]
    if sum(b for b, _, _ in tensors) > MAX_ARENA:
        size, s, t = max(tensors, key=lambda x: x[0])
        raise ModelError(
            f"subgraph {s}: arena tensors need more than {MAX_ARENA} bytes (tensor {t.index} "
            f"({t.name}) alone {size} bytes, shape {list(t.shape)}); TFLM arenas are 32-bit"
        )


def _check_calls_acyclic(graph: ModelGraph) -> None:
    """Reject control flow that calls itself: TFLM's lifetime marking (and ours) would recurse
    forever, and TFLite has no recursive subgraphs."""
    state = [0] * len(graph.subgraphs)  # 0 new, 1 on the current path, 2 done
    for root in range(len(graph.subgraphs)):
        if state[root]:
            continue
        state[root] = 1
        stack = [(root, iter(_callees(graph, root)))]
        while stack:
            s, it = stack[-1]
            c = next(it, None)
            if c is None:
                state[s] = 2
                stack.pop()
            elif state[c] == 1:
                raise ModelError(f"subgraph {s}: control flow calls subgraph {c} recursively")
            elif state[c] == 0:
                state[c] = 1
                stack.append((c, iter(_callees(graph, c))))


def _callees(graph: ModelGraph, s: int) -> list[int]:
    return [c for op in graph.subgraphs[s].ops for c in op.calls]


def callees_first(graph: ModelGraph) -> list[int]:
    """Every subgraph once, each after all the subgraphs it calls."""
    return post_order(graph, range(len(graph.subgraphs)))


def post_order(graph: ModelGraph, roots: Iterable[int]) -> list[int]:
    """The subgraphs reachable from ``roots``, each once and after all it calls (a root
    another root calls included): the post-order of one depth-first search forest, without
    recursion (control flow may nest thousands deep)."""
    seen: set[int] = set()
    out: list[int] = []
    for root in roots:
        if root in seen:
            continue
        seen.add(root)
        stack = [(root, iter(_callees(graph, root)))]
        while stack:
            s, it = stack[-1]
            c = next(it, None)
            if c is None:
                out.append(s)
                stack.pop()
            elif c not in seen:
                seen.add(c)
                stack.append((c, iter(_callees(graph, c))))
    return out


def marking_visits(graph: ModelGraph, root: int = 0) -> int:
    """How many subgraph visits TFLM's lifetime marking makes from ``root``: it walks every
    path of nested control flow, so a subgraph called by both branches of an IF nested 30
    deep is visited 2^30 times."""
    visits = [0] * len(graph.subgraphs)
    visits[root] = 1
    for s in reversed(callees_first(graph)):  # callers first
        for c in _callees(graph, s):
            visits[c] += visits[s]
    return sum(visits)
