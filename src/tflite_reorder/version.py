"""The package version (its own module, so any module can name it without import cycles)."""

__version__ = "0.1.0"
