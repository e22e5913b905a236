"""Build of the compiled search core, with peak_memory's compiled path and fastread's field
reads in C (``_fastpeak.c``), the writer's tensor and operator tables (``_fastwrite.c``) and
the set bounds of ``bounds.order_bound`` (``_setbound.c``);
the rest of the package is in pyproject.toml.

``optional=True``: without a C compiler the package still installs and runs the pure-Python
search loop (``searchcore.unavailable()`` says why); CI checks the extension is built.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "tflite_reorder._searchcore",
            sources=["src/tflite_reorder/_searchcore.c", "src/tflite_reorder/_fastpeak.c",
                     "src/tflite_reorder/_fastwrite.c", "src/tflite_reorder/_setbound.c"],
            depends=["src/tflite_reorder/_searchcore.h"],
            optional=True,
        ),
    ]
)
