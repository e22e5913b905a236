"""``peak_memory``'s compiled path: ``.tflite`` bytes answered in C.

A NAS loop calls ``peak_memory`` on thousands of candidates. The general path reads the
model into Python objects (``fastread``), infers shapes, builds the graph and runs the
scheduler with all its reductions; on a small model each costs more than the whole answer
needs. ``_searchcore.fast_peak`` (``_fastpeak.c``) reads the flatbuffer tables into arrays,
builds the operator graph and the scheduling problem on them (``memory.build_problem``'s
lifetimes, no in-place sharing) and finds the minimum peak by an exact best-first search
(the scheduler's cut points, keys and free moves, its floor raised by closure bounds when
a segment needs more than a few states; none of its other reductions), in one call.

It answers only what the general path would answer the same: a proven minimum, for a model
it accepts. Anything else it declines, and ``api.peak_memory`` runs the general path, which
also gives the one-line errors for bad input. Declined: control flow other than a tree of
calls (below), several subgraphs with a shape to correct or padding to repair; external
or mis-sized constant data (sparse constants are not size-checked, as by
``flatbuffer_io``); dynamic (negative) dimensions; any index out of range, tensor written
twice, read of memory nothing writes, or stored order that is not topological; an arena
tensor no operator refers to that is larger than the answer; a search past ``MAX_STATES``
states or ``TIME_SHARE`` of the time limit (the general path then has the rest).
``inplace=True`` is always asked of the general path.

Control flow (IF, WHILE, CALL_ONCE): answered when the calls form a tree, subgraph 0 calling
the others, each called by exactly one operator, once. Each subgraph is then marked once
(``memory._Marker``), so the composed peak of a control-flow operator's callees
(``memory._NestedPeaks``) is the largest of their peaks, no callee being placed later
elsewhere; C searches the subgraphs callees first (``scheduling.schedule_model``), each
control-flow op's extra bytes the largest minimum peak of its callees, the stored peak
taking their stored orders' peaks, and subgraph 0's minimum is the model's (the
certificate holds: every subgraph proven, each marked once). ``MAX_STATES`` is per subgraph.

The Python pass (``_python_pass``): a model none of whose ops has a shape rule
(``shapes.CHECKED_OPS``: custom ops, say) or is repaired (``candidate.REPAIRED_OPS``) is
answered by one C call on its stored shapes. Otherwise the C reader first checks the bytes,
then the model is read by ``fastread`` and its shapes inferred in Python
(``shapes.infer_subgraph``, as ``shapes.true_shapes`` infers them), and the C call is
given what the general path's graph has that the bytes do not say:

- the inferred sizes of tensors whose stored shapes are wrong (``resized``; e.g. the
  converter stores a lowered dilated convolution's SPACE_TO_BATCH_ND outputs with batch 1
  where the kernel writes batch 4);
- the padding repair ``candidate.read_safe_graph`` makes (``rewrites.padding``: each
  float32/int8 SPACE_TO_BATCH_ND with non-zero constant paddings gets a PAD of its input
  into a new activation tensor, its input grown by the paddings, which the S2B then reads
  with zero paddings): the plan is ``rewrites.padding.plan_repairs``, the rule's one home,
  and C adds each PAD and its tensor to the graph it reads (``_repair_edits``; the new
  constants take no arena and are left out).

``tests/test_fastpeak.py`` checks every shipped model, random graphs (S2B chains and wrong
stored shapes among them), mutated bytes and the bad-input corpus against the general path.

The rules the C code needs come from their one home, as tables built here once per process:
bytes per element (``dtypes``), the alignment, which opcodes and tensor types keep their
stored relative order (``graph.stateful_opcode``, ``graph.STATE_TYPES``), which builtins
the general path treats specially (``graph.CONTROL_FLOW`` declined; the Python pass for
``candidate.REPAIRED_OPS`` and ``shapes.CHECKED_OPS``), and the reader's limits
(``flatbuffer_io``). ``TFLITE_REORDER_PURE_PYTHON`` (as for the search core,
``searchcore.unavailable``) switches it off.
"""

from __future__ import annotations

from array import array

from . import flatbuffer_io as fio
from .candidate import REPAIRED_OPS
from .dtypes import ARENA_ALIGNMENT, FIXED_SIZE, TYPE_NAMES, TYPE_SIZES
from .fastread import read_lite
from .flatbuffer_io import ModelError
from .graph import BUILTIN_NAMES, CONTROL_FLOW, MAX_ARENA, STATE_TYPES, stateful_opcode
from .options import EXPECTED
from .results import PeakMemory
from .rewrites.padding import plan_repairs
from .searchcore import unavailable as _switched_off
from .shapes import CHECKED_OPS, infer_subgraph, true_shapes
from .shapes.rules import prod64
from .tensors import stored_shapes

try:
    from ._searchcore import fast_peak as _peak
except ImportError as exc:  # not built (no compiler at install time)
    _peak = None
    _IMPORT_ERROR = f"the compiled peak_memory path is not built ({exc})"
else:
    _IMPORT_ERROR = ""

ENABLED = True  # tests switch it off to ask the general path
MAX_STATES = 150_000  # search states before declining (randwire_ws_int8 needs 50,000)
TIME_SHARE = 0.5  # of peak_memory's time limit, before declining

_STATEFUL, _DECLINE, _SHAPE_RULE, _CALLS = 1, 2, 4, 8  # _SHAPE_RULE: the Python pass runs
NEEDS_SHAPES = "shape inference needed"  # fast_peak's reason (_fastpeak.c)
_PAD = next(code for code, name in BUILTIN_NAMES.items() if name == "PAD")
_NO_EDITS = (b"", b"", b"")


def _type_tables() -> tuple[bytes, bytes, bytes]:
    size, fixed, state = array("i", [0] * 256), array("i", [0] * 256), bytearray(256)
    for code, name in TYPE_NAMES.items():
        if 0 <= code < 256:
            size[code] = TYPE_SIZES.get(name, 0)
            fixed[code] = FIXED_SIZE.get(code, 0)
            state[code] = name in STATE_TYPES
    return size.tobytes(), fixed.tobytes(), bytes(state)


def _op_flags() -> bytes:
    """Per builtin code: stateful (keeps its stored relative order), has a shape rule,
    nests subgraphs; then per code two bytes: the options type whose table names the
    subgraphs it nests (``options.EXPECTED``) and how many it names (``graph.CONTROL_FLOW``'s
    fields, slots 0.. of that table: ``tests/test_fastpeak.py`` checks the slots)."""
    n = max(BUILTIN_NAMES) + 1
    out, calls = bytearray(), bytearray(2 * n)
    for code in range(n):
        name = BUILTIN_NAMES.get(code, f"BUILTIN_{code}")
        flags = _STATEFUL if stateful_opcode(name) else 0
        if name in CONTROL_FLOW:
            flags |= _CALLS
            calls[2 * code: 2 * code + 2] = bytes((EXPECTED[code], len(CONTROL_FLOW[name])))
        if name in CHECKED_OPS or name in REPAIRED_OPS:  # inferred, repaired in Python
            flags |= _SHAPE_RULE
        out.append(flags)
    return bytes(out + calls)


_TYPES = _type_tables()
_OPS = _op_flags()
_LIMITS = (fio.SUPPORTED_SCHEMA_VERSION, ARENA_ALIGNMENT, MAX_ARENA, fio.MAX_TENSORS,
           fio.MAX_OPERATORS, fio.MAX_BUFFERS, fio.MAX_VECTOR_ENTRIES, len(_OPS) // 3)


def unavailable() -> str:
    """Why the compiled path does not run ("" when it does)."""
    return ("" if ENABLED else "fastpeak.ENABLED is False") or _switched_off() or _IMPORT_ERROR


def answer(raw: bytes, time_limit: float) -> tuple[int, int] | str:
    """(stored peak, minimum peak) of ``.tflite`` bytes, or why the compiled path declines.

    A model with an op that has a shape rule is first read by ``fastread`` and its shapes
    inferred (``shapes.infer_subgraph``, the general path's reader and inference): answered
    only when no stored shape changes. Its SPACE_TO_BATCH_ND padding is then repaired as
    ``candidate.read_safe_graph`` repairs it (``rewrites.padding.plan_repairs``), the
    repair given to the C code as operators and tensors it adds (``_repair_edits``)."""
    why = unavailable()
    if why:
        return why
    limit = TIME_SHARE * time_limit
    got = _peak(raw, *_TYPES, _OPS, *_LIMITS, limit, MAX_STATES, False, *_NO_EDITS)
    if got != NEEDS_SHAPES:
        return got
    edits = _python_pass(raw)
    if isinstance(edits, str):
        return edits
    return _peak(raw, *_TYPES, _OPS, *_LIMITS, limit, MAX_STATES, True, *edits)


def _python_pass(raw: bytes) -> tuple[bytes, bytes, bytes] | str:
    """``fast_peak``'s edits, added tensors and true sizes of the model (or why not): its
    shapes inferred as ``shapes.true_shapes`` infers them, its padding repaired as
    ``candidate.read_safe_graph`` repairs it. The compiled reader has run the reader's
    checks (it declines what they reject)."""
    try:
        model = read_lite(raw, checked=True)
    except ModelError as exc:  # the general path says it again
        return f"unreadable: {exc}"
    if len(model.subgraphs) > 1:
        return _control_flow_pass(model)
    tensors = model.subgraphs[0].tensors
    try:
        shapes = infer_subgraph(model, 0)
    except Exception:  # noqa: BLE001 -- true_shapes keeps the stored shapes then
        shapes = None
    resized: list[int] = []
    if shapes:
        for t, (shape, stored) in enumerate(zip(shapes, stored_shapes(tensors), strict=True)):
            if shape != stored:
                resized += [t, prod64(shape)]
    try:  # infers when shapes is None: raises as the general path's repair does
        plan = plan_repairs(model, 0, shapes)
    except Exception:  # noqa: BLE001 -- the general path answers (or raises) then
        return "shape inference failed"
    if plan and any(op.options_unpacked for op in model.subgraphs[0].operators):
        # the general path infers again after the repair, and a second walk reads such
        # an operator's options from the full unpack, maybe otherwise than the first
        return "options unpacked in full"
    return (*_repair_edits(model, plan), array("q", resized).tobytes() if resized else b"")


def _control_flow_pass(model) -> tuple[bytes, bytes, bytes] | str:
    """A model of several subgraphs is answered when its stored shapes are all true
    (``shapes.true_shapes``, as ``shapes.true_graph`` infers them over every subgraph) and
    nothing in it is repaired (``candidate.read_safe_graph`` then reads it as it is)."""
    names = [BUILTIN_NAMES.get(max(c.builtinCode, c.deprecatedBuiltinCode))
             for c in model.operatorCodes]
    if any(names[op.opcodeIndex] in REPAIRED_OPS
           for sg in model.subgraphs for op in sg.operators):
        return "padding repair with several subgraphs"
    if true_shapes(model):
        return "inferred shapes differ (several subgraphs)"
    return _NO_EDITS


def _repair_edits(model, plan) -> tuple[bytes, bytes]:
    """``fast_peak``'s edits for the repairs: per repair a PAD of its input into a new
    activation tensor (its constant paddings take no arena: left out, as -1), and the
    S2B's new inputs (``PadRepair.s2b_inputs``, its all-zero paddings left out too)."""
    if not plan:
        return b"", b""
    sg = model.subgraphs[0]
    nt = len(sg.tensors)
    records: list[int] = []
    added: list[int] = []
    for k, r in enumerate(plan):
        padded = nt + k
        new_ins = r.s2b_inputs(sg.operators[r.op], padded, -1)
        records += [r.op, _PAD, 2, r.x, -1, 1, padded, len(new_ins), *new_ins]
        added += [int(sg.tensors[r.x].type), prod64(r.grown)]
    return array("q", records).tobytes(), array("q", added).tobytes()


def peak_memory(raw: bytes, time_limit: float) -> PeakMemory | None:
    """``peak_memory(raw, inplace=False)``'s answer, or None when the general path must give
    it (the compiled path declines or is not built; the general path also raises the
    errors of bad bytes). Never raises for any bytes."""
    got = answer(raw, time_limit)
    if isinstance(got, str):
        return None
    stored, best = got
    return PeakMemory(stored, best, best, True, 0.0)
