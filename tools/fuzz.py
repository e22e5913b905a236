"""Mutation fuzzer: corrupt the models in ``models/`` and check the pipeline fails cleanly.

Every case takes one model, applies one mutation (byte level: bit flips, byte overwrites,
truncation, insertion/deletion, a chunk spliced from another model; or structural, through
the schema object API and ``flatbuffer_io.serialize_model``: shuffled or out-of-range
tensor indices, negative/huge/zero dims, dynamic shape signatures, unknown and custom
opcodes, bad buffer/opcode/subgraph indices, operators and tensor tables spliced from
another model, ...) and runs the whole in-process pipeline on the bytes:
``api.optimize(data, verify=False, time_limit=…)`` (reader → graph → scheduler → arena
plan → writer → re-read check) and ``api.peak_memory``; on a share of the cases
(``--lever-share``, chosen by ``(seed, case index)`` too) also with the graph levers:
``rewrite=True``, ``tile=True`` or both (the output re-read and preflighted).

Outcomes: ``ok`` (both calls succeed; the written model is re-read and has the same
operators), ``rejected`` (a clean ``ModelError``), ``crash`` (any other exception, or a
case slower than ``--case-timeout``). Crashes print the mutation and the traceback.
Each case's mutation depends only on ``(seed, case index)``, so ``--only I`` replays one.

    python tools/fuzz.py --cases 20000 --seed 1 --jobs 2
    python tools/fuzz.py --seed 1 --only 1234        # replay one case, traceback shown
    python tools/fuzz.py --cases 10000 --start 10000 --seed 1   # cases 10000..19999

``--start`` runs a later range of the same sequence, so a long run can be split into
chunks (run niced, one after another) that together are exactly the one long run.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures as cf
import contextlib
import copy
import multiprocessing as mp
import random
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tflite_reorder import api, preflight, runtimes
from tflite_reorder.dtypes import tensor_bytes, type_name
from tflite_reorder.flatbuffer_io import ModelError, parse_model, serialize_model

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
# Small, fast models that still cover every structural feature: elementwise in-place ops,
# SPACE_TO_BATCH_ND shape repair, multiple outputs/SPLIT, control flow (WHILE/IF with five
# subgraphs), concatenation cells.
DEFAULT_MODELS = (
    "inplace_add_int8", "inplace_relu_float32", "inplace_reshape_int8",
    "inplace_squeeze_expand_dims_float32", "inplace_softmax_int8", "dilated_int8",
    "multi_output_int8", "while_float32", "concat_dw_int8", "inception_int8",
    # sites for the levers: H/W concatenations and output splits (exact rewrites, tiles),
    # an ADD tree (a numerics-changing rewrite, tiles)
    "hconcat_int8", "add_tree_int8",
)
LEVERS = ({"rewrite": True}, {"tile": True}, {"rewrite": True, "tile": True})
LEVER_TIMEOUT = 3  # a case with levers may take this many times --case-timeout
# Seconds one runtime run may take inside a case (--verify-timeout; the rewrites' error
# measurement runs LiteRT and TFLM): a loop that never ends (a WHILE whose trip count is a
# junk constant) is cut there and reported, so the case ends well within --case-timeout.
RUN_TIMEOUT = 2.0
INTERESTING_I32 = (0, 1, 2, 3, 4, 7, 8, 15, 16, 255, 256, 0x7FFF, 0xFFFF, 0x7FFFFFFF,
                   -1, -2, -128, -0x80000000)


@dataclass
class Seeds:
    """The models a worker mutates: raw bytes and parsed object trees (deep-copied per case)."""

    names: list[str]
    raw: dict[str, bytes]
    parsed: dict[str, schema.ModelT] = field(default_factory=dict)

    @classmethod
    def load(cls, names: list[str]) -> Seeds:
        raw = {n: (MODELS / f"{n}.tflite").read_bytes() for n in names}
        parsed = {n: parse_model(b, n).model for n, b in raw.items()}
        return cls(list(names), raw, parsed)


# ---------------------------------------------------------------------------------------------
# Byte-level mutations: (rng, data, seeds) -> (description, new bytes)


def _bitflip(rng: random.Random, data: bytes, _s: Seeds) -> tuple[str, bytes]:
    b = bytearray(data)
    flips = [rng.randrange(len(b) * 8) for _ in range(rng.choice((1, 1, 2, 4, 16)))]
    for bit in flips:
        b[bit // 8] ^= 1 << (bit % 8)
    return f"bitflip bits {flips[:4]}{'...' if len(flips) > 4 else ''}", bytes(b)


def _overwrite(rng: random.Random, data: bytes, _s: Seeds) -> tuple[str, bytes]:
    b = bytearray(data)
    # Favour the flatbuffer tables at the front and end (vtables, offsets) over weight bytes.
    pos = _position(rng, len(b)) & ~3 if rng.random() < 0.6 else _position(rng, len(b))
    if rng.random() < 0.5:
        value = rng.choice(INTERESTING_I32)
        chunk = int(value).to_bytes(4, "little", signed=value < 0)
    else:
        chunk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    chunk = chunk[: len(b) - pos]
    b[pos : pos + len(chunk)] = chunk
    return f"overwrite {len(chunk)} bytes at {pos} with {chunk.hex()}", bytes(b)


def _truncate(rng: random.Random, data: bytes, _s: Seeds) -> tuple[str, bytes]:
    cut = rng.randrange(len(data))
    return f"truncate at {cut} of {len(data)}", data[:cut]


def _insert_delete(rng: random.Random, data: bytes, _s: Seeds) -> tuple[str, bytes]:
    pos = _position(rng, len(data))
    n = rng.choice((1, 4, 8, 64))
    if rng.random() < 0.5:
        return f"delete {n} bytes at {pos}", data[:pos] + data[pos + n :]
    return f"insert {n} bytes at {pos}", data[:pos] + bytes(rng.randrange(256) for _ in range(n)) \
        + data[pos:]


def _splice_bytes(rng: random.Random, data: bytes, s: Seeds) -> tuple[str, bytes]:
    other = s.raw[rng.choice(s.names)]
    n = rng.choice((4, 16, 64, 256, 1024))
    src = rng.randrange(max(1, len(other) - n))
    dst = _position(rng, len(data))
    chunk = other[src : src + n]
    out = data[:dst] + chunk + data[dst + len(chunk) :]
    return f"splice {len(chunk)} bytes from another model @{src} to @{dst}", out[: len(data)]


def _position(rng: random.Random, n: int) -> int:
    """A byte position, biased towards the header and the tables at the end of the file."""
    r = rng.random()
    if r < 0.3:
        return rng.randrange(min(n, 256))
    if r < 0.6:
        return max(0, n - 1 - rng.randrange(min(n, 4096)))
    return rng.randrange(n)


BYTE_MUTATIONS: list[Callable] = [_bitflip, _overwrite, _truncate, _insert_delete, _splice_bytes]


# ---------------------------------------------------------------------------------------------
# Structural mutations on the object tree: (rng, model, seeds) -> description (model edited)


def _pick_sg(rng: random.Random, m: schema.ModelT) -> schema.SubGraphT:
    return rng.choice(m.subgraphs)


def _pick_op(rng: random.Random, m: schema.ModelT) -> tuple[schema.SubGraphT, int]:
    sg = _pick_sg(rng, m)
    if not sg.operators:
        raise _Skip
    return sg, rng.randrange(len(sg.operators))


class _Skip(Exception):
    """This mutation does not apply to this model; the case picks another."""


def _vec(v) -> list[int]:
    return [] if v is None else [int(x) for x in v]


def _bad_index(rng: random.Random, n: int) -> int:
    return rng.choice((n, n + 1, n + 1000, 2**31 - 1, -2, -7, -(2**31)))


def _op_tensor_out_of_range(rng, m, _s) -> str:
    sg, i = _pick_op(rng, m)
    op = sg.operators[i]
    which = rng.choice(("inputs", "outputs", "intermediates"))
    vec = _vec(getattr(op, which)) or [0]
    k = rng.randrange(len(vec))
    vec[k] = _bad_index(rng, len(sg.tensors or []))
    setattr(op, which, vec)
    return f"op {i} {which}[{k}] = {vec[k]}"


def _io_out_of_range(rng, m, _s) -> str:
    sg = _pick_sg(rng, m)
    which = rng.choice(("inputs", "outputs"))
    vec = _vec(getattr(sg, which)) or [0]
    k = rng.randrange(len(vec))
    vec[k] = _bad_index(rng, len(sg.tensors or [])) if rng.random() < 0.8 else -1
    setattr(sg, which, vec)
    return f"subgraph {which}[{k}] = {vec[k]}"


def _shuffle_op_tensors(rng, m, _s) -> str:
    """Swap tensor indices between random operators: cycles, double producers, type clashes."""
    sg = _pick_sg(rng, m)
    ops = sg.operators or []
    if len(ops) < 2:
        raise _Skip
    done = []
    for _ in range(rng.choice((1, 2, 5))):
        a, b = rng.randrange(len(ops)), rng.randrange(len(ops))
        fa, fb = rng.choice(("inputs", "outputs")), rng.choice(("inputs", "outputs"))
        va = _vec(getattr(ops[a], fa))
        vb = va if (a, fa) == (b, fb) else _vec(getattr(ops[b], fb))
        if not va or not vb:
            continue
        ia, ib = rng.randrange(len(va)), rng.randrange(len(vb))
        va[ia], vb[ib] = vb[ib], va[ia]
        setattr(ops[a], fa, va)
        setattr(ops[b], fb, vb)
        done.append(f"op{a}.{fa}[{ia}]<->op{b}.{fb}[{ib}]")
    if not done:
        raise _Skip
    return "swap " + ", ".join(done)


def _rewire_random(rng, m, _s) -> str:
    """Point an op's input or output at a random existing tensor."""
    sg, i = _pick_op(rng, m)
    op = sg.operators[i]
    which = rng.choice(("inputs", "outputs"))
    vec = _vec(getattr(op, which))
    if not vec or not sg.tensors:
        raise _Skip
    k = rng.randrange(len(vec))
    vec[k] = rng.randrange(len(sg.tensors))
    setattr(op, which, vec)
    return f"op {i} {which}[{k}] -> tensor {vec[k]}"


def _shuffle_vector(rng, m, _s) -> str:
    sg, i = _pick_op(rng, m)
    op = sg.operators[i]
    which = rng.choice(("inputs", "outputs"))
    vec = _vec(getattr(op, which))
    rng.shuffle(vec)
    if rng.random() < 0.3 and vec:
        vec.append(rng.choice(vec))  # duplicate entry
    setattr(op, which, vec)
    return f"op {i} {which} shuffled to {vec}"


def _dims(rng, m, _s) -> str:
    sg = _pick_sg(rng, m)
    if not sg.tensors:
        raise _Skip
    t = rng.randrange(len(sg.tensors))
    tensor = sg.tensors[t]
    shape = _vec(tensor.shape)
    kind = rng.choice(("negative", "huge", "zero", "rank", "empty", "none", "signature"))
    if kind == "negative" and shape:
        shape[rng.randrange(len(shape))] = rng.choice((-1, -2, -(2**31)))
    elif kind == "huge" and shape:
        shape[rng.randrange(len(shape))] = rng.choice((2**16, 2**24, 2**31 - 1))
    elif kind == "zero" and shape:
        shape[rng.randrange(len(shape))] = 0
    elif kind == "rank":
        shape = shape + [rng.choice((1, 2, 3))] * rng.randint(1, 6)
    elif kind == "empty":
        shape = []
    elif kind == "none":
        shape = None
    elif kind == "signature":
        tensor.shapeSignature = [-1 if rng.random() < 0.5 else d for d in (shape or [1])]
        return f"tensor {t} shapeSignature {tensor.shapeSignature}"
    tensor.shape = shape
    return f"tensor {t} shape {kind}: {shape}"


def _tensor_fields(rng, m, _s) -> str:
    sg = _pick_sg(rng, m)
    if not sg.tensors:
        raise _Skip
    t = rng.randrange(len(sg.tensors))
    tensor = sg.tensors[t]
    kind = rng.choice(("buffer", "buffer", "type", "variable", "name"))
    if kind == "buffer":
        n = len(m.buffers or [])
        tensor.buffer = rng.choice((n, n + 5, 2**32 - 1, rng.randrange(max(n, 1))))
        return f"tensor {t} buffer = {tensor.buffer}"
    if kind == "type":
        tensor.type = rng.choice((-1, 0, 9, 12, 16, 17, 18, 127))
        return f"tensor {t} type = {tensor.type}"
    if kind == "variable":
        tensor.isVariable = not tensor.isVariable
        return f"tensor {t} isVariable = {tensor.isVariable}"
    tensor.name = bytes(rng.randrange(256) for _ in range(8))
    return f"tensor {t} name = {tensor.name!r}"


def _opcodes(rng, m, _s) -> str:
    kind = rng.choice(("index", "builtin", "custom", "drop"))
    if kind == "index":
        sg, i = _pick_op(rng, m)
        n = len(m.operatorCodes or [])
        sg.operators[i].opcodeIndex = rng.choice((n, n + 3, 2**32 - 1))
        return f"op {i} opcodeIndex = {sg.operators[i].opcodeIndex}"
    if not m.operatorCodes:
        raise _Skip
    c = rng.randrange(len(m.operatorCodes))
    code = m.operatorCodes[c]
    if kind == "builtin":
        code.builtinCode = rng.choice((0, 9, 22, 32, 93, 127, 150, 205, 1000, 2**31 - 1))
        code.deprecatedBuiltinCode = min(code.builtinCode, 127)
        return f"opcode {c} builtin = {code.builtinCode}"
    if kind == "custom":
        code.builtinCode = code.deprecatedBuiltinCode = 32
        code.customCode = rng.choice((b"MyCustomOp", b"", None, b"\xff\xfe"))
        return f"opcode {c} -> CUSTOM {code.customCode!r}"
    m.operatorCodes = m.operatorCodes[:c]
    return f"operator codes truncated to {c}"


def _control_flow(rng, m, _s) -> str:
    for sg in m.subgraphs:
        for i, op in enumerate(sg.operators or []):
            opts = op.builtinOptions
            names = [k for k in vars(opts or object()) if k.endswith("SubgraphIndex")]
            if names and rng.random() < 0.5:
                name = rng.choice(names)
                n = len(m.subgraphs)
                setattr(opts, name, rng.choice((0, n, n + 1, -1, rng.randrange(n))))
                return f"op {i} {name} = {getattr(opts, name)}"
    raise _Skip


def _operators_edit(rng, m, _s) -> str:
    sg = _pick_sg(rng, m)
    ops = sg.operators or []
    if not ops:
        raise _Skip
    kind = rng.choice(("delete", "duplicate", "reverse", "shuffle", "clear"))
    i = rng.randrange(len(ops))
    if kind == "delete":
        del ops[i]
    elif kind == "duplicate":
        ops.insert(rng.randrange(len(ops) + 1), copy.deepcopy(ops[i]))
    elif kind == "reverse":
        ops.reverse()
    elif kind == "shuffle":
        rng.shuffle(ops)
    else:
        sg.operators = []
    return f"operators {kind} (op {i})"


def _subgraphs_edit(rng, m, _s) -> str:
    kind = rng.choice(("drop_last", "swap", "no_tensors", "empty", "dup"))
    if kind == "drop_last" and len(m.subgraphs) > 1:
        m.subgraphs = m.subgraphs[:-1]
    elif kind == "swap" and len(m.subgraphs) > 1:
        m.subgraphs[0], m.subgraphs[-1] = m.subgraphs[-1], m.subgraphs[0]
    elif kind == "no_tensors":
        _pick_sg(rng, m).tensors = []
    elif kind == "empty":
        m.subgraphs = []
    else:
        m.subgraphs.append(copy.deepcopy(m.subgraphs[0]))
    return f"subgraphs {kind}"


def _buffers_edit(rng, m, _s) -> str:
    bufs = m.buffers or []
    kind = rng.choice(("truncate", "external", "clear", "none"))
    if kind == "truncate" and bufs:
        m.buffers = bufs[: rng.randrange(len(bufs))]
    elif kind == "external" and bufs:
        b = rng.choice(bufs)
        b.offset, b.size = rng.choice(((2**40, 16), (17, 2**40), (1 << 20, 1 << 20)))
        b.data = None
        return f"buffer external offset={b.offset} size={b.size}"
    elif kind == "clear" and len(bufs) > 1:
        bufs[rng.randrange(1, len(bufs))].data = None
    else:
        m.buffers = None
    return f"buffers {kind}"


def _metadata_edit(rng, m, _s) -> str:
    """An OfflineMemoryAllocation entry with garbage words or a bad buffer index."""
    entry = schema.MetadataT()
    entry.name = "OfflineMemoryAllocation"
    m.buffers = m.buffers or []
    kind = rng.choice(("garbage", "bad_buffer", "short", "count"))
    if kind == "bad_buffer":
        entry.buffer = len(m.buffers) + rng.choice((0, 7))
    else:
        n = sum(len(sg.tensors or []) for sg in m.subgraphs)
        words = {
            "garbage": [rng.randrange(-(2**31), 2**31) for _ in range(rng.randint(0, 40))],
            "short": [1, 1],
            "count": [1, len(m.subgraphs), n + rng.choice((-1, 1, 2**31 - 1, -5))]
            + [rng.choice((-1, 0, 3, 16)) for _ in range(min(n, 64))],
        }[kind]
        buf = schema.BufferT()
        buf.data = np.asarray(words, dtype="<i4").view(np.uint8).copy() if words else None
        m.buffers.append(buf)
        entry.buffer = len(m.buffers) - 1
    m.metadata = [*(m.metadata or []), entry]
    return f"offline plan metadata {kind}"


def _splice_tables(rng, m, s: Seeds) -> str:
    """Tables from another model: its operators, tensors or whole subgraph into this one."""
    other = s.parsed[rng.choice(s.names)]
    osg = copy.deepcopy(rng.choice(other.subgraphs))
    sg = _pick_sg(rng, m)
    kind = rng.choice(("operators", "tensors", "subgraph", "opcodes", "buffers"))
    if kind == "operators":
        sg.operators = osg.operators
    elif kind == "tensors":
        sg.tensors = osg.tensors
    elif kind == "subgraph":
        m.subgraphs[m.subgraphs.index(sg)] = osg
    elif kind == "opcodes":
        m.operatorCodes = copy.deepcopy(other.operatorCodes)
    else:
        m.buffers = copy.deepcopy(other.buffers)
    return f"spliced {kind} from another model"


STRUCT_MUTATIONS: list[Callable] = [
    _op_tensor_out_of_range, _io_out_of_range, _shuffle_op_tensors, _rewire_random,
    _shuffle_vector, _dims, _dims, _tensor_fields, _opcodes, _control_flow, _operators_edit,
    _subgraphs_edit, _buffers_edit, _metadata_edit, _splice_tables, _splice_tables,
]


# Hostile inputs of the robustness issue: what the native runtimes die on, byte ranges the
# writer must carry (shared data, out-of-line custom options), junk shapes and dims.


def _quant_scales(rng, m, _s) -> str:
    """A quantisation scale LiteRT and TFLM abort on: 0, negative, NaN, inf, subnormal."""
    found = [x for sg in m.subgraphs for x in sg.tensors or []
             if x.quantization is not None and x.quantization.scale is not None
             and len(x.quantization.scale)]
    if not found:
        raise _Skip
    q = rng.choice(found).quantization
    value = rng.choice((0.0, -1.0, float("nan"), float("inf"), 1e-45))
    q.scale = np.full(len(q.scale), value, dtype=np.float32)
    return f"quantization scale {value}"


def _plan_buffer(rng, m, _s) -> str:
    """An offline plan entry in buffer 0, in a weight's buffer, or named twice."""
    bufs = m.buffers or []
    weights = [t.buffer for sg in m.subgraphs for t in sg.tensors or []
               if 0 < t.buffer < len(bufs) and bufs[t.buffer].data is not None]
    kind = rng.choice(("zero", "weight", "twice"))
    entry = schema.MetadataT()
    entry.name = "OfflineMemoryAllocation"
    entry.buffer = rng.choice(weights) if kind != "zero" and weights else 0
    m.metadata = [*(m.metadata or []), entry]
    if kind == "twice":
        m.metadata.append(copy.deepcopy(entry))
    return f"offline plan in buffer {entry.buffer} ({kind})"


def _shared_data(rng, m, _s) -> str:
    """Several buffers share one data array (written once; sizes may now be wrong)."""
    bufs = [b for b in m.buffers or [] if b.data is not None and len(b.data)]
    if len(bufs) < 2:
        raise _Skip
    src = rng.choice(bufs)
    k = rng.randint(1, len(bufs) - 1)
    for b in rng.sample(bufs, k):
        b.data = src.data
    return f"{k} buffers share one data array"


def _large_custom(rng, m, _s) -> str:
    """Out-of-line custom options: carried bytes, or offsets pointing anywhere."""
    sg, i = _pick_op(rng, m)
    op = sg.operators[i]
    if rng.random() < 0.5:
        n = rng.choice((1, 16, 1000))
        op.largeCustomOptions = np.frombuffer(rng.randbytes(n), np.uint8).copy()
        return f"op {i} large custom options, {n} bytes"
    op.largeCustomOptionsOffset = rng.choice((1, 17, 2**31, 2**40, 2**64 - 1))
    op.largeCustomOptionsSize = rng.choice((1, 16, 2**32, 2**63))
    return (f"op {i} large custom options at {op.largeCustomOptionsOffset} "
            f"size {op.largeCustomOptionsSize}")


def _junk_constant(rng, m, _s) -> str:
    """An INT32 or INT64 constant of a nonsensical shape or with values beyond int32,
    unused or wired into an operator's input (shape inference reads such constants)."""
    sg = _pick_sg(rng, m)
    wide = rng.random() < 0.5
    values = [rng.choice((-(2**40), -5, -1, 0, 3, 2**31, 2**33)) for _ in range(4)]
    arr = np.array(values, dtype="<i8") if wide else np.array(values, "<i8").astype("<i4")
    t = schema.TensorT()
    t.name = "junk"
    t.type = schema.TensorType.INT64 if wide else schema.TensorType.INT32
    t.shape = np.array(rng.choice(([-1, -1], [-2, -3], [4], [2, 2], [0, -1], [2**31 - 1, 2])),
                       dtype=np.int32)
    buf = schema.BufferT()
    buf.data = np.frombuffer(arr.tobytes(), np.uint8).copy()
    m.buffers = [*(m.buffers or [schema.BufferT()]), buf]
    t.buffer = len(m.buffers) - 1
    sg.tensors = [*(sg.tensors or []), t]
    where = "unused"
    if sg.operators and rng.random() < 0.6:
        i = rng.randrange(len(sg.operators))
        ins = _vec(sg.operators[i].inputs) or [0]
        k = rng.randrange(len(ins))
        ins[k] = len(sg.tensors) - 1
        sg.operators[i].inputs = ins
        where = f"op {i} input {k}"
    return f"junk constant {list(t.shape)} {values} ({where})"


def _constant_output(rng, m, _s) -> str:
    """An operator's output given a buffer of data (a weight's of its size, or a new one,
    mostly of its size): the runtimes would write into the model's bytes."""
    sg, i = _pick_op(rng, m)
    outs = _vec(sg.operators[i].outputs)
    if not outs or not 0 <= outs[0] < len(sg.tensors or []):
        raise _Skip
    t = sg.tensors[outs[0]]
    shape = tuple(_vec(t.shape))
    size = tensor_bytes(shape, type_name(t.type)) if all(d >= 0 for d in shape) else 0
    weights = [k for k, b in enumerate(m.buffers or [])
               if b.data is not None and len(b.data) == size > 0]
    if weights and rng.random() < 0.5:
        t.buffer = rng.choice(weights)
        return f"op {i} output {outs[0]} given weight buffer {t.buffer}"
    buf = schema.BufferT()
    n = size if 0 < size <= 1 << 20 and rng.random() < 0.8 else rng.choice((1, 4, 64))
    buf.data = np.full(n, 3, np.uint8)
    m.buffers = [*(m.buffers or [schema.BufferT()]), buf]
    t.buffer = len(m.buffers) - 1
    return f"op {i} output {outs[0]} given a new buffer of {n} bytes"


def _read_before_write(rng, m, _s) -> str:
    """An operator moved in the stored order to just before one of its producers (or a
    producer moved after one of its readers): the stored order reads before it writes."""
    sg = _pick_sg(rng, m)
    ops = sg.operators or []
    writer = {t: k for k, op in enumerate(ops) for t in _vec(op.outputs)}
    pairs = [(writer[t], k) for k, op in enumerate(ops) for t in _vec(op.inputs)
             if writer.get(t, k) < k]
    if not pairs:
        raise _Skip
    p, c = rng.choice(pairs)
    if rng.random() < 0.5:
        ops.insert(p, ops.pop(c))
        return f"op {c} moved before its producer {p}"
    ops.insert(c, ops.pop(p))
    return f"op {p} moved after its reader {c}"


STRUCT_MUTATIONS += [_quant_scales, _plan_buffer, _shared_data, _large_custom,
                     _junk_constant, _junk_constant, _constant_output, _read_before_write]


# ---------------------------------------------------------------------------------------------
# Cases


def make_case(seed: int, index: int, seeds: Seeds) -> tuple[str, bytes]:
    """The mutated bytes of case ``index`` (deterministic in ``seed`` and ``index``)."""
    rng = random.Random(f"{seed}:{index}")
    name = rng.choice(seeds.names)
    for _ in range(20):
        if rng.random() < 0.45:
            mutation = rng.choice(BYTE_MUTATIONS)
            data = seeds.raw[name]
            what = []
            for _ in range(rng.choice((1, 1, 1, 2, 3))):
                desc, data = mutation(rng, data, seeds) if data else ("empty", data)
                what.append(desc)
            return f"{name}: " + "; ".join(what), data
        model = copy.deepcopy(seeds.parsed[name])
        what = []
        try:
            for _ in range(rng.choice((1, 1, 2, 3))):
                what.append(rng.choice(STRUCT_MUTATIONS)(rng, model, seeds))
            return f"{name}: " + "; ".join(what), serialize_model(model)
        except _Skip:
            continue
        except Exception as exc:  # a mutation the writer cannot pack: not the tool's input
            what.append(f"(unpackable: {type(exc).__name__})")
            continue
    return f"{name}: unmutated", seeds.raw[name]


class CaseTimeout(Exception):
    """Raised by the alarm when a case runs longer than allowed (a hang)."""


def _alarm(_signum, _frame) -> None:
    raise CaseTimeout


def levers_of(seed: int, index: int, share: float) -> dict[str, bool]:
    """The graph levers case ``index`` also runs with (none for most cases)."""
    rng = random.Random(f"{seed}:{index}:levers")
    return dict(rng.choice(LEVERS)) if rng.random() < share else {}


def run_case(data: bytes, time_limit: float,
             levers: dict[str, bool] | None = None) -> tuple[str, str]:
    """Run the pipeline on ``data`` (and again with ``levers``, ``api.optimize``'s
    ``rewrite``/``tile``): ('ok' | 'rejected' | 'crash', detail)."""
    try:
        result = api.optimize(data, verify=False, time_limit=time_limit)
        _check_output(data, result)
        _check_figures(result, api.peak_memory(data, time_limit=time_limit))
        _preflight(data)
        _preflight(result.data)
        if levers:
            _run_levers(data, time_limit, levers)
    except ModelError as exc:
        msg = str(exc)
        if "\n" in msg or not msg:
            return "crash", f"ModelError message not one line: {msg!r}"
        if "internal check" in msg:  # our own consistency check failed: a bug, not bad input
            return "crash", traceback.format_exc()
        return "rejected", msg
    except CaseTimeout:
        return "crash", "case timed out (hang)"
    except Exception:
        return "crash", traceback.format_exc()
    return "ok", ""


def _run_levers(data: bytes, time_limit: float, levers: dict[str, bool]) -> None:
    """``optimize`` with the levers: the output re-reads and passes (or is refused by) the
    preflight."""
    result = api.optimize(data, verify=False, time_limit=time_limit, **levers)
    parse_model(result.data, "<output>")
    _preflight(result.data)
    # No "never worse" check here: with the levers the report's figures are not the same
    # quantity (peak_without_rewrites leaves out repairs and kernel scratch); never worse
    # is tested on valid models (tests/test_rewrites.py, tests/test_models.py) and, for
    # the plain pipeline, on every fuzz case (``_check_figures``).


def _check_figures(result: api.Optimized, pm) -> None:
    """Never worse and bounds below what they bound, for ``optimize`` and ``peak_memory``
    (a stored order that reads before it writes is refused, so ``peak_before`` is a valid
    order's peak)."""
    r = result.report
    if not r.lower_bound <= r.peak_after <= r.peak_before:
        raise AssertionError(f"optimize: lower bound {r.lower_bound}, after {r.peak_after}, "
                             f"before {r.peak_before}")
    if not pm.lower_bound <= pm.optimal <= pm.stored:
        raise AssertionError(f"peak_memory: {pm}")


def _preflight(data: bytes) -> None:
    """The check run before LiteRT or TFLM sees a model: a refusal is fine, nothing else."""
    with contextlib.suppress(ModelError):
        preflight.check(data)


def _check_output(data: bytes, result: api.Optimized) -> None:
    """The written model re-reads and holds the input's operators (as a multiset) per
    subgraph, except for the documented repairs: a PAD inserted ahead of a padding
    SPACE_TO_BATCH_ND (``report.repairs``), which then reads the PAD's output."""
    before = parse_model(data).model
    after = parse_model(result.data, "<output>").model
    if len(before.subgraphs) != len(after.subgraphs):
        raise AssertionError("subgraph count changed")
    for s, (a, b) in enumerate(zip(before.subgraphs, after.subgraphs, strict=True)):
        repairs = [r for r in result.report.repairs if r["subgraph"] == s]
        added = {r["tensor"] for r in repairs}
        ka = [_op_key(before, op) for op in a.operators or []]
        rewired = {ka[r["op"]][3] for r in repairs}  # outputs of the repaired ops
        ka = [k[:2] + ((None,) if k[3] in rewired else k[2:3]) + k[3:] for k in ka]
        kb = []
        for op in b.operators or []:
            k = _op_key(after, op)
            if len(k[3]) == 1 and k[3][0] in added:
                continue  # an inserted PAD
            kb.append(k[:2] + ((None,) if k[3] in rewired else k[2:3]) + k[3:])
        if sorted(ka, key=repr) != sorted(kb, key=repr):
            raise AssertionError(f"subgraph {s}: operators changed")


def _op_key(m: schema.ModelT, op: schema.OperatorT) -> tuple:
    code = m.operatorCodes[op.opcodeIndex]
    return (max(code.builtinCode, code.deprecatedBuiltinCode), str(code.customCode),
            tuple(_vec(op.inputs)), tuple(_vec(op.outputs)))


@dataclass
class Tally:
    counts: collections.Counter = field(default_factory=collections.Counter)
    crashes: list[tuple[int, str, str]] = field(default_factory=list)
    reasons: collections.Counter = field(default_factory=collections.Counter)
    slowest: tuple[float, int] = (0.0, -1)


def run_range(args: tuple) -> Tally:
    """Worker: run the given case indices; returns the tally (crash details included).

    ``args``: (seed, indices, model names, time limit, case timeout, verbose[, lever
    share[, runtime timeout]]); without a share no case runs the levers; every runtime
    run may take the runtime timeout (``RUN_TIMEOUT`` by default)."""
    seed, indices, names, time_limit, case_timeout, verbose = args[:6]
    share = args[6] if len(args) > 6 else 0.0
    bound = args[7] if len(args) > 7 else RUN_TIMEOUT
    seeds = Seeds.load(names)
    tally = Tally()
    use_alarm = hasattr(signal, "setitimer")
    previous = signal.signal(signal.SIGALRM, _alarm) if use_alarm else None
    try:
        with runtimes.run_budget(bound):
            _run_cases(seed, indices, seeds, time_limit, case_timeout, verbose, use_alarm,
                       tally, share)
    finally:
        if use_alarm:
            signal.signal(signal.SIGALRM, previous)
    return tally


_RUNNING = None  # shared array: the case each worker runs (a native crash kills the worker)


def _share_running(running, slots) -> None:
    global _RUNNING
    _RUNNING = (running, slots.get())


def _run_cases(seed, indices, seeds, time_limit, case_timeout, verbose, use_alarm, tally,
               share=0.0):
    for i in indices:
        if _RUNNING is not None:
            _RUNNING[0][_RUNNING[1]] = i
        what, data = make_case(seed, i, seeds)
        levers = levers_of(seed, i, share)
        if levers:
            what += " [" + "+".join(sorted(levers)) + "]"
            tally.counts["with levers"] += 1
        t0 = time.monotonic()
        if use_alarm:  # the levers run the pipeline again, tiling searches for seconds
            signal.setitimer(signal.ITIMER_REAL, case_timeout * (LEVER_TIMEOUT if levers else 1))
        try:
            outcome, detail = run_case(data, time_limit, levers)
        except CaseTimeout:
            outcome, detail = "crash", "case timed out (hang)"
        finally:
            if use_alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
        dt = time.monotonic() - t0
        tally.slowest = max(tally.slowest, (dt, i))
        tally.counts[outcome] += 1
        if outcome == "rejected":
            tally.reasons[_reason(detail)] += 1
        if outcome == "crash":
            tally.crashes.append((i, what, detail))
            print(f"CRASH case {i}: {what}\n{detail}", file=sys.stderr, flush=True)
        elif verbose:
            print(f"{i} {outcome}: {what} | {detail}", flush=True)


def _reason(msg: str) -> str:
    """A message without the numbers, to group rejections by kind."""
    body = msg.split(": ", 1)[-1]
    return " ".join("#" if any(c.isdigit() for c in w) else w for w in body.split())[:90]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--start", type=int, default=0, help="index of the first case")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1, help="worker processes")
    ap.add_argument("--time-limit", type=float, default=0.2, help="scheduler seconds per call")
    ap.add_argument("--case-timeout", type=float, default=20.0,
                    help="a slower case is a hang (x3 for a case with levers)")
    ap.add_argument("--verify-timeout", type=float, default=RUN_TIMEOUT,
                    help="seconds one LiteRT or TFLM run may take inside a case")
    ap.add_argument("--lever-share", type=float, default=0.1,
                    help="share of cases also run with rewrite/tile (0 for none)")
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS),
                    help="comma-separated model names from models/ ('all' for every model)")
    ap.add_argument("--only", type=int, default=None, help="run just this case index")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--results", type=Path, default=None, help="write a markdown summary")
    args = ap.parse_args(argv)
    names = sorted(p.stem for p in MODELS.glob("*.tflite")) if args.models == "all" \
        else args.models.split(",")
    t0 = time.monotonic()
    if args.only is not None:
        tally = run_range((args.seed, [args.only], names, args.time_limit, args.case_timeout,
                           True, args.lever_share, args.verify_timeout))
        return 1 if tally.crashes else 0
    indices = list(range(args.start, args.start + args.cases))
    chunks = [indices[j :: args.jobs] for j in range(args.jobs)]
    work = [(args.seed, c, names, args.time_limit, args.case_timeout, args.verbose,
             args.lever_share, args.verify_timeout) for c in chunks]
    if args.jobs == 1:
        tallies = [run_range(work[0])]
    else:
        tallies = _in_workers(work, args.seed)
        if tallies is None:
            return 1
    total = Tally()
    for t in tallies:
        total.counts.update(t.counts)
        total.reasons.update(t.reasons)
        total.crashes += t.crashes
        total.slowest = max(total.slowest, t.slowest)
    seconds = time.monotonic() - t0
    c = total.counts
    print(f"cases {args.start}..{args.start + args.cases - 1}  ok {c['ok']}  "
          f"rejected {c['rejected']}  crashes {c['crash']}  "
          f"(with levers {c['with levers']})  "
          f"({seconds:.0f} s, {args.jobs} jobs, slowest case {total.slowest[1]}: "
          f"{total.slowest[0]:.2f} s)")
    for reason, n in total.reasons.most_common(15):
        print(f"  {n:6d}  {reason}")
    for i, what, _ in total.crashes[:20]:
        print(f"  crash case {i}: {what}")
    if args.results:
        _write_results(args, names, total, seconds)
    return 1 if total.crashes else 0


def _in_workers(work: list[tuple], seed: int) -> list[Tally] | None:
    """``run_range`` of each chunk in its own process; None (after naming the cases then
    running) when a worker dies: a native crash, which no ``try`` in the worker catches."""
    ctx = mp.get_context("fork")
    running, slots = ctx.Array("q", [-1] * len(work), lock=False), ctx.Queue()
    for j in range(len(work)):
        slots.put(j)
    with cf.ProcessPoolExecutor(len(work), mp_context=ctx, initializer=_share_running,
                                initargs=(running, slots)) as pool:
        try:
            return list(pool.map(run_range, work))
        except cf.process.BrokenProcessPool:
            cases = [int(i) for i in running if i >= 0]
            print(f"CRASH: a worker process died (native crash) while running one of the "
                  f"cases {cases}; replay each with --seed {seed} --only N", file=sys.stderr)
            return None


def _write_results(args, names: list[str], total: Tally, seconds: float) -> None:
    c = total.counts
    lines = [
        "# Fuzzing results",
        "",
        f"`python tools/fuzz.py --cases {args.cases} --seed {args.seed} --jobs {args.jobs} "
        f"--time-limit {args.time_limit}` mutates {len(names)} models from `models/` "
        "(byte-level and structural mutations, see `tools/fuzz.py`) and runs "
        "`api.optimize(verify=False)` and `api.peak_memory` on every case.",
        "",
        "| cases | ok | rejected (clean ModelError) | crashes | seconds |",
        "|---:|---:|---:|---:|---:|",
        f"| {args.cases} | {c['ok']} | {c['rejected']} | {c['crash']} | {seconds:.0f} |",
        "",
        f"Models: {', '.join(f'`{n}`' for n in names)}.",
        f"Slowest case: {total.slowest[0]:.2f} s.",
        "",
        "Most frequent rejections (numbers elided):",
        "",
        *[f"- {n} × {reason}" for reason, n in total.reasons.most_common(12)],
        "",
    ]
    args.results.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
