"""The object API's tensors and operators, filled from the compiled reader.

``flatbuffer_io.parse_model`` unpacks a model into the generated object API
(``schema.ModelT``) so that every field survives a round trip. The generated code reads
each field of each tensor and operator through a Python accessor: about 30 calls per
table, most of the time of reading a 50,000-operator model. Here the extension
(``_searchcore.full_tables``) reads every field of those two tables in C, with the bounds
checks of ``fastread``'s compiled reader, and the same ``TensorT``/``OperatorT`` objects
are filled from its tuples: vectors become the same zero-copy numpy views of the input
the generated code makes, nested tables (quantisation, builtin options) are unpacked by
the generated code itself, and the tables this reader does not fill (tensors with
sparsity or variant tensors, operators with ``builtin_options_2``) are unpacked by the
generated code too. Everything else of the model is the generated code's.

:func:`unpack_model` answers None whenever it cannot vouch for the result (the extension
not built, a schema whose classes have other fields than these, any read that fails): the
caller then runs the generated reader, whose errors for corrupt bytes stay the reader's.
``tests/test_fullread.py`` compares both trees on every shipped model and on corrupt bytes.
"""

from __future__ import annotations

import struct

import flatbuffers.number_types as nt
import numpy as np
from ai_edge_litert import schema_py_generated as schema
from flatbuffers.table import Table

try:  # every tensor and operator field in C (None when a read fails)
    from ._searchcore import full_tables as _full_tables
except ImportError:  # not built
    _full_tables = None

TENSOR_FIELDS = ("shape", "type", "buffer", "name", "quantization", "isVariable", "sparsity",
                 "shapeSignature", "hasRank", "variantTensors", "externalBuffer")
OPERATOR_FIELDS = ("opcodeIndex", "inputs", "outputs", "builtinOptionsType", "builtinOptions",
                   "customOptions", "customOptionsFormat", "mutatingVariableInputs",
                   "intermediates", "largeCustomOptionsOffset", "largeCustomOptionsSize",
                   "builtinOptions2Type", "builtinOptions2", "debugMetadataIndex")
# The generated classes as this reader fills them: another schema version has other
# fields, and then the generated reader does all the work.
MATCHES = (tuple(vars(schema.TensorT())) == TENSOR_FIELDS
           and tuple(vars(schema.OperatorT())) == OPERATOR_FIELDS
           and "tensors" in vars(schema.SubGraphT()) and "operators" in vars(schema.SubGraphT()))
ENABLED = True  # tests switch it off to compare with the generated reader

# The dtypes of the generated ``XAsNumpy`` views (``flatbuffers.number_types.to_numpy_type``).
_I32 = nt.to_numpy_type(nt.Int32Flags)
_U8 = nt.to_numpy_type(nt.Uint8Flags)
_BOOL = nt.to_numpy_type(nt.BoolFlags)
_ROOT = struct.Struct("<I").unpack_from


class _SubGraphRest(schema.SubGraph):
    """A subgraph whose tensors and operators the generated unpack skips (filled here)."""

    __slots__ = ()

    def TensorsIsNone(self) -> bool:  # noqa: N802 (the generated API's names)
        return True

    def OperatorsIsNone(self) -> bool:  # noqa: N802
        return True


class _Root(schema.Model):
    """The model table, handing the generated unpack ``_SubGraphRest`` subgraphs."""

    __slots__ = ()

    def Subgraphs(self, j):  # noqa: N802
        sg = super().Subgraphs(j)
        if sg is not None:
            sg.__class__ = _SubGraphRest
        return sg


def available() -> bool:
    """Whether :func:`unpack_model` reads (else it always answers None)."""
    return _full_tables is not None and ENABLED and MATCHES


def unpack_model(raw: bytes) -> schema.ModelT | None:
    """``schema.ModelT.InitFromPackedBuf(raw, 0)``'s tree, or None (see the module doc).

    Call it where the generated reader would run (inside ``flatbuffer_io._fast_tables``,
    whose table readers the nested unpacks use). Never raises for corrupt bytes.
    """
    if not available():
        return None
    try:
        tables = _full_tables(raw)
        if tables is None:
            return None
        filled = [(_tensors(raw, ts), _operators(raw, ops)) for ts, ops in tables]
        root = _Root()
        root.Init(raw, _ROOT(raw, 0)[0])
        model = schema.ModelT.InitFromObj(root)
        for sg, (tensors, operators) in zip(model.subgraphs or [], filled, strict=True):
            sg.tensors, sg.operators = tensors, operators
    except Exception:  # corrupt somewhere: the generated reader says what
        return None
    return model


def _view(raw: bytes, dtype, start: int, n: int) -> np.ndarray | None:
    return None if start < 0 else np.frombuffer(raw, dtype=dtype, count=n, offset=start)


def _generated(table_cls, object_cls, raw: bytes, pos: int):
    table = table_cls()
    table.Init(raw, pos)
    return object_cls.InitFromObj(table)


def _tensors(raw: bytes, rows: list) -> list:
    new, cls, frombuffer = object.__new__, schema.TensorT, np.frombuffer
    out = []
    for r in rows:
        if type(r) is int:  # sparsity or variant tensors: the generated unpack
            out.append(_generated(schema.Tensor, cls, raw, r))
            continue
        sh, shn, type_, buf, name, q, var, sig, sign, rank, ext = r
        t = new(cls)
        t.__dict__ = {
            "shape": None if sh < 0 else frombuffer(raw, dtype=_I32, count=shn, offset=sh),
            "type": type_, "buffer": buf, "name": name,
            "quantization": None if q < 0 else _generated(
                schema.QuantizationParameters, schema.QuantizationParametersT, raw, q),
            "isVariable": var, "sparsity": None,
            "shapeSignature": _view(raw, _I32, sig, sign),
            "hasRank": rank, "variantTensors": None, "externalBuffer": ext,
        }
        out.append(t)
    return out


def _operators(raw: bytes, rows: list) -> list:
    new, cls, frombuffer = object.__new__, schema.OperatorT, np.frombuffer
    creator = schema.BuiltinOptionsCreator
    out = []
    for r in rows:
        if type(r) is int:  # builtin_options_2: the generated unpack
            out.append(_generated(schema.Operator, cls, raw, r))
            continue
        (opcode, i, ni, o, no, otype, opt, cu, ncu, fmt, mu, nmu, it, nit, loff, lsize,
         dbg) = r
        op = new(cls)
        op.__dict__ = {
            "opcodeIndex": opcode,
            "inputs": None if i < 0 else frombuffer(raw, dtype=_I32, count=ni, offset=i),
            "outputs": None if o < 0 else frombuffer(raw, dtype=_I32, count=no, offset=o),
            "builtinOptionsType": otype,
            "builtinOptions": None if opt < 0 else creator(otype, Table(raw, opt)),
            "customOptions": _view(raw, _U8, cu, ncu), "customOptionsFormat": fmt,
            "mutatingVariableInputs": _view(raw, _BOOL, mu, nmu),
            "intermediates": _view(raw, _I32, it, nit),
            "largeCustomOptionsOffset": loff, "largeCustomOptionsSize": lsize,
            "builtinOptions2Type": 0, "builtinOptions2": None, "debugMetadataIndex": dbg,
        }
        out.append(op)
    return out
