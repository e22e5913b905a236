"""``peak_memory``'s compiled path: one-subgraph ``.tflite`` bytes answered in C.

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
also gives the one-line errors for bad input. Declined: several subgraphs or control flow;
ops ``candidate.read_safe_graph`` rewrites (SPACE_TO_BATCH_ND); external or mis-sized
constant data (sparse constants are not size-checked, as by ``flatbuffer_io``); dynamic
(negative) dimensions; any index out of range, tensor written twice, read of memory nothing
writes, or stored order that is not topological; an arena tensor no operator refers to
that is larger than the answer; a search past ``MAX_STATES`` states or ``TIME_SHARE`` of
the time limit (the general path then has the rest). ``inplace=True`` is always asked of
the general path.

Shapes: the answer is of the shapes the kernels use (``shapes.true_shapes``), as on the
general path. A model none of whose ops has a shape rule (``shapes.CHECKED_OPS``: custom
ops, say) keeps its stored shapes, so nothing is inferred; otherwise the model is read by
``fastread`` and its shapes inferred in Python first, and a model whose inferred shapes
differ from the stored ones is declined. ``tests/test_fastpeak.py`` checks every shipped
model, random graphs, mutated bytes and the bad-input corpus against the general path.

The rules the C code needs come from their one home, as tables built here once per process:
bytes per element (``dtypes``), the alignment, which opcodes and tensor types keep their
stored relative order (``graph.stateful_opcode``, ``graph.STATE_TYPES``), which builtins
the general path treats specially (``graph.CONTROL_FLOW``, ``candidate.REPAIRED_OPS``),
and the reader's limits (``flatbuffer_io``). ``TFLITE_REORDER_PURE_PYTHON`` (as for the
search core, ``searchcore.unavailable``) switches it off.
"""

from __future__ import annotations

from array import array

from . import flatbuffer_io as fio
from .candidate import REPAIRED_OPS
from .dtypes import ARENA_ALIGNMENT, FIXED_SIZE, TYPE_NAMES, TYPE_SIZES
from .fastread import read_lite
from .flatbuffer_io import ModelError
from .graph import BUILTIN_NAMES, CONTROL_FLOW, MAX_ARENA, STATE_TYPES, stateful_opcode
from .results import PeakMemory
from .searchcore import unavailable as _switched_off
from .shapes import CHECKED_OPS, true_shapes

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

_STATEFUL, _DECLINE, _SHAPE_RULE = 1, 2, 4
NEEDS_SHAPES = "shape inference needed"  # fast_peak's reason (_fastpeak.c)


def _type_tables() -> tuple[bytes, bytes, bytes]:
    size, fixed, state = array("i", [0] * 256), array("i", [0] * 256), bytearray(256)
    for code, name in TYPE_NAMES.items():
        if 0 <= code < 256:
            size[code] = TYPE_SIZES.get(name, 0)
            fixed[code] = FIXED_SIZE.get(code, 0)
            state[code] = name in STATE_TYPES
    return size.tobytes(), fixed.tobytes(), bytes(state)


def _op_flags() -> bytes:
    """Per builtin code: stateful (keeps its stored relative order), declined."""
    out = bytearray()
    for code in range(max(BUILTIN_NAMES) + 1):
        name = BUILTIN_NAMES.get(code, f"BUILTIN_{code}")
        flags = _STATEFUL if stateful_opcode(name) else 0
        if name in CONTROL_FLOW or name in REPAIRED_OPS:
            flags |= _DECLINE
        if name in CHECKED_OPS:
            flags |= _SHAPE_RULE
        out.append(flags)
    return bytes(out)


_TYPES = _type_tables()
_OPS = _op_flags()
_LIMITS = (fio.SUPPORTED_SCHEMA_VERSION, ARENA_ALIGNMENT, MAX_ARENA, fio.MAX_TENSORS,
           fio.MAX_OPERATORS, fio.MAX_BUFFERS, fio.MAX_VECTOR_ENTRIES, len(_OPS))


def unavailable() -> str:
    """Why the compiled path does not run ("" when it does)."""
    return ("" if ENABLED else "fastpeak.ENABLED is False") or _switched_off() or _IMPORT_ERROR


def answer(raw: bytes, time_limit: float) -> tuple[int, int] | str:
    """(stored peak, minimum peak) of ``.tflite`` bytes, or why the compiled path declines.

    A model with an op that has a shape rule is first read by ``fastread`` and its shapes
    inferred (``shapes.true_shapes``, the general path's reader and inference): answered
    only when no stored shape changes."""
    why = unavailable()
    if why:
        return why
    got = _peak(raw, *_TYPES, _OPS, *_LIMITS, TIME_SHARE * time_limit, MAX_STATES, False)
    if got != NEEDS_SHAPES:
        return got
    try:  # the compiled reader has run the reader's checks (it declines what they reject)
        changed = true_shapes(read_lite(raw, checked=True))
    except ModelError as exc:  # the general path says it again
        return f"unreadable: {exc}"
    if changed:
        return "inferred shapes differ from the stored ones"
    return _peak(raw, *_TYPES, _OPS, *_LIMITS, TIME_SHARE * time_limit, MAX_STATES, True)


def peak_memory(raw: bytes, time_limit: float) -> PeakMemory | None:
    """``peak_memory(raw, inplace=False)``'s answer, or None when the general path must give
    it (the compiled path declines or is not built; the general path also raises the
    errors of bad bytes). Never raises for any bytes."""
    got = answer(raw, time_limit)
    if isinstance(got, str):
        return None
    stored, best = got
    return PeakMemory(stored, best, best, True, 0.0)
