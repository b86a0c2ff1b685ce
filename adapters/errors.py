"""The adapters' error type, in a module of its own so that every helper module can raise it
without importing :mod:`adapters.base` (which imports them)."""
from __future__ import annotations


class AttributionError(ValueError):
    """Bad input to a method, or a method that produced an unusable map."""
