"""What the native runtimes cannot survive, found before they are called.

LiteRT and TFLM trust their input. Some legal-looking models kill the whole process from
native code instead of returning an error, which no ``try`` can catch:

* a quantisation scale that is 0, negative, infinite or NaN: LiteRT and TFLM ``abort()``
  while preparing the kernels;
* a quantised (int8/int16) ADD, SUB or MUL with an operand or output that has no
  quantisation scale (an int32 constant wired into an int8 ADD, an int8 tensor stored
  without parameters): the kernels derive their multipliers from a scale of 0 and TFLM
  ``abort()``s (LiteRT refuses operands of differing types, and aborts on a missing scale,
  and on per-channel scales: its kernels read one per-tensor scale, 0 for those); or one
  whose output scale is so small against its inputs' that its rescaling multiplier is not
  below 1 (both runtimes ``abort()``);
* an ``OfflineMemoryAllocation`` metadata entry whose buffer is buffer 0 (TFLite's empty
  sentinel) or holds fewer words than its header promises: TFLM reads past the data and
  segfaults; or a plan under which TFLM leaves a called subgraph's variable tensor without
  memory (``flatbuffer_io.unallocated_variables``): TFLM segfaults;
* an int8 SOFTMAX whose input scale × beta is at most 2^-26: the reference kernels (LiteRT's
  and TFLM's) turn it into a fixed-point multiplier that must exceed 1 and ``abort()``
  otherwise; tiny logit scales come from random weights (Keras DenseNet121 untrained);
  without SoftmaxOptions the runtimes take beta as 0 (``softmax_beta``);
* nested control flow whose lifetime marking walks more subgraph visits than anyone can
  wait for (TFLM marks every path: 30 nested IFs sharing one branch are 2^30 visits);
* TFLM only: a subgraph with operators that nothing reachable from subgraph 0 calls (a
  duplicated or spliced subgraph). TFLM prepares every subgraph's kernels but plans only
  the ones its lifetime marking reaches: a MEAN there (its kernel requests a scratch
  buffer) segfaults or corrupts the heap (measured on every builtin of ``models/``; only
  MEAN killed it, but other kernels request scratch too). ``tflm_hazard`` names it and
  TFLM is not run on such a model (LiteRT is: it runs only subgraph 0's calls);
* LiteRT only: an integer SVDF whose weights_time or state tensor is int8 (TFLM's own
  ``keyword_scrambled_8bit`` model). LiteRT's kernel treats both as int16, writes past the
  state buffer and the process dies of heap corruption; TFLM runs it correctly. And an
  8-bit SOFTMAX whose input has per-channel scales: LiteRT ``abort()``s, TFLM runs it.

``check`` raises :class:`~.flatbuffer_io.ModelError` for all of them but the last, which
``check_litert`` adds; every constructor of a runtime interpreter calls them first, so the
user gets one line (the runtime is reported as not run, or exit 2), never a signal.

Some aborts depend on the input data, so the model cannot be refused: an int8 SOFTMAX
over 512 or more classes with an int8 output ``abort()``s in the reference kernels (LiteRT's
and TFLM's) whenever the sum of its exponentials reaches 512, i.e. when that many logits
are close to the largest (Keras DenseNet121's 1000 untrained logits do). ``abort_risks``
names them; ``runtimes`` and ``tflm`` then run such a model in a child process, so an
abort becomes an error ("LiteRT could not run it"), never a signal.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from .dtypes import TYPE_NAMES
from .flatbuffer_io import (
    OFFLINE_PLAN_NAME,
    ModelError,
    derived,
    read_only,
    unallocated_variables,
)
from .graph import build_graph, marking_visits, opcode_name, post_order
from .options import builtin_code
from .tensors import ints, text

# The int8 reference SOFTMAX scales input differences by beta × scale × 2^(31 - 5) (5
# integer bits) and checks that this multiplier exceeds 1 (``PreprocessSoftmaxScaling``).
SOFTMAX_MIN_SCALED = 2.0 ** -26
SOFTMAX_CHECKED_TYPES = (schema.TensorType.INT8, schema.TensorType.UINT8)
# ... and, for an 8-bit output, checks that the sum of exponentials (Q12) has at most 8
# integer bits: 512 classes near the maximum abort it (measured: 511 run, 512 abort).
SOFTMAX_MAX_SAFE_DEPTH = 511

# Quantised kernels that compute multipliers from every operand's scale (and the output's).
SCALED_ARITHMETIC = frozenset({"ADD", "SUB", "MUL"})
QUANTISED_TYPES = (schema.TensorType.INT8, schema.TensorType.UINT8, schema.TensorType.INT16)

# Subgraph visits of TFLM's lifetime marking beyond which its initialisation is refused.
MAX_MARKING_VISITS = 100_000


def check(model_bytes: bytes) -> None:
    """Raise ModelError if running ``model_bytes`` in LiteRT or TFLM could crash or hang
    (checked once per model inside ``flatbuffer_io.shared_reads``)."""
    derived(model_bytes, "preflight.check", lambda raw: _check_model(read_only(raw)))


def _check_model(model: schema.ModelT) -> None:
    _check_quantization(model)
    _check_scaled_arithmetic(model)
    _check_offline_plan(model)
    _check_softmax(model)
    _check_required_inputs(model)
    visits = marking_visits(build_graph(model))
    if visits > MAX_MARKING_VISITS:
        raise ModelError(
            f"TFLM's lifetime marking would visit {visits} subgraphs (nested "
            f"control flow sharing subgraphs); refusing to run it (limit "
            f"{MAX_MARKING_VISITS})")


def tflm_hazard(model_bytes: bytes) -> str:
    """Why TFLM must not be run on ``model_bytes`` although ``check`` passed ("" when
    nothing is known): see the module docstring. ``check`` must have passed."""
    return derived(model_bytes, "preflight.tflm_hazard",
                   lambda raw: _unreached_operators(read_only(raw)))


def _unreached_operators(model: schema.ModelT) -> str:
    graph = build_graph(model)
    reached = set(post_order(graph, [0]))
    for s, sg in enumerate(graph.subgraphs):
        if s not in reached and sg.ops:
            return (f"subgraph {s} has operators but nothing reachable from subgraph 0 "
                    f"calls it: TFLM prepares its kernels without planning them and can "
                    f"crash (a MEAN there segfaults it)")
    return ""


def tflm_risks(model_bytes: bytes) -> list[str]:
    """Why TFLM may crash on ``model_bytes`` though it may also run it (``tflm`` runs such
    a model in a child process): a variable tensor that is an input or output of a called
    subgraph. Measured (fuzzing): a WHILE body whose int32 loop input is marked variable
    runs in TFLM as stored, but with an offline plan TFLM segfaults. One cause found since
    (``flatbuffer_io.unallocated_variables``) is refused by ``check`` and never written by
    us; the risk stays, as others are not ruled out."""
    model = read_only(model_bytes)
    risks = []
    for s, sg in enumerate(model.subgraphs[1:], start=1):
        for t in (*ints(sg.inputs), *ints(sg.outputs)):
            if 0 <= t < len(sg.tensors) and sg.tensors[t].isVariable:
                risks.append(f"subgraph {s} tensor {t} is a variable tensor and a subgraph "
                             f"input or output (TFLM can crash on it)")
                break
    return risks


def check_litert(model_bytes: bytes) -> None:
    """``check`` plus what only LiteRT cannot survive; raises ModelError.

    Remembered for the last few models that passed (one parse each): every LiteRT
    interpreter is built after this check, and the rewrite search and the error
    measurement build several for the same bytes."""
    _litert_checked(bytes(model_bytes))


@lru_cache(maxsize=8)
def _litert_checked(model_bytes: bytes) -> None:
    model = read_only(model_bytes)
    _check_model(model)
    for s, sg in enumerate(model.subgraphs):
        for v, op in enumerate(sg.operators or []):
            builtin = builtin_code(model.operatorCodes[op.opcodeIndex])
            if builtin == schema.BuiltinOperator.SOFTMAX:
                _check_litert_softmax(sg, s, v, op)
            if builtin != schema.BuiltinOperator.SVDF or len(op.inputs) < 5:
                continue
            types = [None if i < 0 else int(sg.tensors[i].type) for i in op.inputs]
            if types[0] != schema.TensorType.INT8 or types[1] != schema.TensorType.INT8:
                continue  # float or hybrid SVDF: LiteRT's other paths
            if types[2] != schema.TensorType.INT16 or types[4] != schema.TensorType.INT16:
                raise ModelError(
                    f"subgraph {s} operator {v} (SVDF): integer SVDF with an int8 "
                    f"weights_time or state tensor corrupts LiteRT's memory (it supports "
                    f"int16 only); LiteRT cannot run this model")


def _check_litert_softmax(sg: schema.SubGraphT, s: int, v: int, op: schema.OperatorT) -> None:
    """A quantised SOFTMAX whose input has per-channel scales (fuzz seed 5103 case 2127: a
    conv weight wired into ``inception_int8``'s SOFTMAX): LiteRT gives such a tensor a
    per-tensor scale of 0 and ``abort()``s preparing the kernel; TFLM ran it."""
    if op.inputs is None or len(op.inputs) == 0 or op.inputs[0] < 0:
        return
    x = sg.tensors[int(op.inputs[0])]
    q = x.quantization
    if x.type in SOFTMAX_CHECKED_TYPES and q is not None and q.scale is not None \
            and len(q.scale) > 1:
        raise ModelError(
            f"subgraph {s} operator {v} (SOFTMAX): its quantised input (tensor "
            f"{int(op.inputs[0])}) has {len(q.scale)} per-channel scales, not one (LiteRT "
            f"gives it a scale of 0 and aborts); LiteRT cannot run this model")


def _check_quantization(model: schema.ModelT) -> None:
    for s, sg in enumerate(model.subgraphs):
        for t, tensor in enumerate(sg.tensors):
            q = tensor.quantization
            scale = None if q is None else q.scale
            if scale is None or len(scale) == 0:
                continue
            with np.errstate(invalid="ignore", over="ignore"):
                values = np.asarray(scale, dtype=np.float64)
            bad = ~np.isfinite(values) | (values <= 0)
            if bad.any():
                value = float(values[np.argmax(bad)])
                raise ModelError(
                    f"subgraph {s} tensor {t} has quantization scale {value:g}; scales must "
                    f"be positive and finite (LiteRT and TFLM abort on it)")


def _check_scaled_arithmetic(model: schema.ModelT) -> None:
    for s, sg in enumerate(model.subgraphs):
        for i, op in enumerate(sg.operators or []):
            outs = [] if op.outputs is None else [int(t) for t in op.outputs]
            if not outs or sg.tensors[outs[0]].type not in QUANTISED_TYPES:
                continue
            name = opcode_name(model, op.opcodeIndex)
            if name not in SCALED_ARITHMETIC:
                continue
            ins = [] if op.inputs is None else [int(t) for t in op.inputs if t >= 0]
            for t in (*ins, outs[0]):
                q = sg.tensors[t].quantization
                if q is None or q.scale is None or len(q.scale) == 0:
                    tensor = sg.tensors[t]
                    raise ModelError(
                        f"subgraph {s} operator {i} ({name}) has a quantised output but its "
                        f"tensor {t} ({TYPE_NAMES.get(tensor.type, tensor.type)}) has no "
                        f"quantization scale (TFLM aborts on it; LiteRT refuses it)")
                if len(q.scale) != 1:
                    raise ModelError(
                        f"subgraph {s} operator {i} ({name}) has a quantised output but its "
                        f"tensor {t} has {len(q.scale)} per-channel scales, not one (LiteRT "
                        f"gives such a tensor a scale of 0 and aborts on it)")
            if name in ("ADD", "SUB") and len(ins) >= 2:
                _check_add_multipliers(sg, s, i, name, ins[0], ins[1], outs[0])


def _check_add_multipliers(sg: schema.SubGraphT, s: int, i: int, name: str, a: int, b: int,
                           out: int) -> None:
    """A quantised ADD/SUB rescales both operands to twice the larger input scale and the
    sum to the output scale over 2^20 (2^15 for int16), and the kernels (LiteRT's and TFLM's
    ``QuantizeMultiplierSmallerThanOneExp``) ``abort()`` unless each of those multipliers
    quantises to a fraction in (0, 1): an output scale at or below about 2^-20 times the
    inputs' (fuzz seed 6001 case 11820: an output scale of 1e-45) kills the process."""
    scale = [float(np.float32(sg.tensors[t].quantization.scale[0])) for t in (a, b, out)]
    twice = 2.0 * max(scale[0], scale[1])
    shift = 15 if sg.tensors[out].type == schema.TensorType.INT16 else 20
    multipliers = (scale[0] / twice, scale[1] / twice, twice / ((1 << shift) * scale[2]))
    if not all(_below_one(m) for m in multipliers):
        raise ModelError(
            f"subgraph {s} operator {i} ({name}): input scales {scale[0]:g} and "
            f"{scale[1]:g} against output scale {scale[2]:g} need a rescaling multiplier of "
            f"{multipliers[2]:g}, not below 1 (LiteRT and TFLM abort on it)")


def _below_one(m: float) -> bool:
    """``QuantizeMultiplierSmallerThanOneExp`` accepts ``m`` (no check fails): 0 < m < 1
    and m, rounded to a Q31 fraction, keeps an exponent of at most 0."""
    if not 0.0 < m < 1.0:
        return False
    fraction, exponent = math.frexp(m)
    if math.floor(fraction * (1 << 31) + 0.5) == 1 << 31:  # std::round, half away from 0
        exponent += 1
    return exponent <= 0


# Inputs a kernel reads without checking that they are present (an index of -1 or a
# shorter list makes it dereference null: fuzz seed 4246 case 6351, LiteRT segfaulted on a
# STRIDED_SLICE whose strides index was -1).
REQUIRED_INPUTS = {"STRIDED_SLICE": 4}


def _check_required_inputs(model: schema.ModelT) -> None:
    for s, sg in enumerate(model.subgraphs):
        for i, op in enumerate(sg.operators or []):
            name = opcode_name(model, op.opcodeIndex)
            need = REQUIRED_INPUTS.get(name)
            if need is None:
                continue
            ins = [] if op.inputs is None else [int(t) for t in op.inputs]
            if len(ins) < need or any(t < 0 for t in ins[:need]):
                raise ModelError(
                    f"subgraph {s} operator {i} ({name}) needs {need} inputs but has "
                    f"{ins} (the runtimes read every one: an absent one crashes them)")


def _check_offline_plan(model: schema.ModelT) -> None:
    n_tensors = sum(len(sg.tensors) for sg in model.subgraphs)
    for entry in model.metadata or []:
        if text(entry.name) != OFFLINE_PLAN_NAME:
            continue
        where = f"offline plan (metadata {OFFLINE_PLAN_NAME})"
        data = model.buffers[entry.buffer].data if entry.buffer > 0 else None
        if data is None or len(data) < 12:
            raise ModelError(f"{where} is in buffer {entry.buffer}, which holds no plan "
                             f"(TFLM would read past it)")
        words = np.frombuffer(np.asarray(data, np.uint8).tobytes()[: len(data) // 4 * 4],
                              dtype="<i4")
        if int(words[2]) != n_tensors or len(words) < 3 + n_tensors:
            raise ModelError(f"{where} has {int(words[2])} offsets in {len(words) - 3} words "
                             f"for {n_tensors} tensors")
        if int(words[1]) != len(model.subgraphs) or (words[3:3 + n_tensors] < -1).any():
            raise ModelError(f"{where} is malformed (subgraph count {int(words[1])}, "
                             f"offsets below -1)")
        if unallocated := unallocated_variables(model, words[3:3 + n_tensors].tolist()):
            s, t = unallocated[0]
            raise ModelError(
                f"{where} leaves subgraph {s}'s variable tensor {t} without memory in TFLM: "
                f"its own entry is -1, but TFLM looks it up at entry {t} (its index within "
                f"its subgraph), which is planned (TFLM segfaults)")


def softmax_beta(op: schema.OperatorT) -> float:
    """The beta the runtimes use: with no SoftmaxOptions stored (or a table of another
    type, cleared at read time) their shared parser leaves the value-initialised
    parameters, beta 0 (``ParseSoftmax`` in ``flatbuffer_conversions.cc``), not the
    schema's default of 1."""
    return float(getattr(op.builtinOptions, "beta", 0.0))


def _check_softmax(model: schema.ModelT) -> None:
    for s, sg in enumerate(model.subgraphs):
        for i, op in enumerate(sg.operators or []):
            if (opcode_name(model, op.opcodeIndex) != "SOFTMAX"
                    or op.inputs is None or len(op.inputs) == 0 or op.inputs[0] < 0):
                continue
            x = sg.tensors[int(op.inputs[0])]
            q = x.quantization
            if x.type not in SOFTMAX_CHECKED_TYPES or q is None or q.scale is None or len(
                    q.scale) != 1:
                continue
            beta = softmax_beta(op)
            if not beta * float(q.scale[0]) > SOFTMAX_MIN_SCALED:
                stored = "" if op.builtinOptions is not None else " (no SoftmaxOptions stored)"
                raise ModelError(
                    f"subgraph {s} operator {i} (SOFTMAX): input scale {float(q.scale[0]):g} "
                    f"× beta {beta:g}{stored} is not above 2^-26; the int8 reference "
                    f"softmax of LiteRT and TFLM aborts on it")


def abort_risks(model_bytes: bytes) -> list[str]:
    """Why running ``model_bytes`` may abort the runtime on some inputs (empty: it cannot,
    as far as known). ``check`` must have passed."""
    model = read_only(model_bytes)
    risks = []
    for s, sg in enumerate(model.subgraphs):
        for i, op in enumerate(sg.operators or []):
            if opcode_name(model, op.opcodeIndex) != "SOFTMAX" or op.inputs is None or len(
                    op.inputs) == 0 or op.outputs is None or len(op.outputs) == 0:
                continue
            x, y = sg.tensors[int(op.inputs[0])], sg.tensors[int(op.outputs[0])]
            depth = int(x.shape[-1]) if x.shape is not None and len(x.shape) else 0
            if (x.type in SOFTMAX_CHECKED_TYPES and y.type in SOFTMAX_CHECKED_TYPES
                    and depth > SOFTMAX_MAX_SAFE_DEPTH):
                risks.append(f"subgraph {s} operator {i} (SOFTMAX) over {depth} int8 classes "
                             f"aborts the reference kernels when 512 logits are near the "
                             f"largest")
    return risks
