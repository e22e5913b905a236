"""Which builtin options table each operator reads, and what a table of another type means.

LiteRT and TFLM read an operator's options through the generated
``op->builtin_options_as_<Type>()``, which returns null when the stored union type is not
the one the operator's parser asks for; the parser then keeps its zero-initialised
parameters, exactly as for an operator stored without options. A table of another type (a
corrupt or spliced model: a CONCATENATION carrying ADD's options) therefore means *no
options* to the runtimes, and the readers make it so once, at read time
(``drop_foreign_options``): every later stage (shape inference, graph, rewrites, tiler,
writer) sees either the operator's own options or none.

The table is derived from the schema: an operator reads ``<CamelCase name>Options`` when the
``BuiltinOptions`` union has it (``CONV_2D`` -> ``Conv2DOptions``, ``BATCH_MATMUL`` ->
``BatchMatMulOptions``), and ``SHARED`` lists the union's tables that operators of other
names read (the parsers' shared cases). ``tests/test_options.py`` checks that every table
of the union is read by some operator, so a schema that adds one outside the naming rule
fails there.
"""

from __future__ import annotations

from ai_edge_litert import schema_py_generated as schema

NONE = schema.BuiltinOptions.NONE

# Options tables whose operators' names do not spell them (the runtimes' parsers).
SHARED: dict[str, tuple[str, ...]] = {
    "Pool2DOptions": ("AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D"),
    "ReducerOptions": ("MEAN", "SUM", "REDUCE_PROD", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_ANY",
                       "REDUCE_ALL"),
    "MaximumMinimumOptions": ("MAXIMUM", "MINIMUM"),
    "RandomOptions": ("RANDOM_STANDARD_NORMAL", "RANDOM_UNIFORM", "MULTINOMIAL"),
    "L2NormOptions": ("L2_NORMALIZATION",),
    "SequenceRNNOptions": ("UNIDIRECTIONAL_SEQUENCE_RNN",),
    "Conv3DOptions": ("CONV_3D_TRANSPOSE",),
}


def _members(enum: type) -> dict[str, int]:
    return {k: v for k, v in vars(enum).items() if not k.startswith("_")}


def _expected() -> dict[int, int]:
    """Builtin operator code -> the ``BuiltinOptions`` type its parser reads (NONE: none)."""
    tables = _members(schema.BuiltinOptions)
    by_key = {name.lower(): value for name, value in tables.items() if value != NONE}
    out: dict[int, int] = {}
    for name, code in _members(schema.BuiltinOperator).items():
        out[code] = by_key.get(name.replace("_", "").lower() + "options", NONE)
    for table, ops in SHARED.items():
        for name in ops:
            out[getattr(schema.BuiltinOperator, name)] = tables[table]
    return out


EXPECTED: dict[int, int] = _expected()


def builtin_code(code) -> int:
    """An ``OperatorCode``'s builtin operator (the larger of the two fields, as the
    runtimes' ``GetBuiltinCode`` reads it: old models fill only the deprecated one)."""
    return max(int(code.builtinCode), int(code.deprecatedBuiltinCode))


def drop_foreign_options(model) -> int:
    """Clear every operator's options table that is not of the type its operator reads
    (see the module docstring); returns how many were cleared. Operators of builtins newer
    than the schema keep theirs (what they read is unknown; nothing here reads it).

    ``model`` is a ``ModelT`` or ``fastread.LiteModel`` whose operator code indices are
    checked (``flatbuffer_io.check_model``)."""
    wanted = [EXPECTED.get(builtin_code(c)) for c in model.operatorCodes or []]
    cleared = 0
    for sg in model.subgraphs or []:
        for op in sg.operators or []:
            kind = op.builtinOptionsType
            if kind != NONE:
                want = wanted[op.opcodeIndex]
                if want is not None and kind != want:
                    op.builtinOptionsType, op.builtinOptions = NONE, None
                    cleared += 1
    return cleared
