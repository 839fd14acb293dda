"""The package version, apart from `__init__` (modules import it without importing the package)."""

__version__ = "0.1.0"
