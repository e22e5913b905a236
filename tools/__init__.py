"""Scripts that build the test models, fuzz, benchmark and measure limits.

Each runs as ``python tools/NAME.py``; the tests import the ones they exercise as
``tools.NAME`` (the repository root is on pytest's ``pythonpath``).
"""
