"""The adapters' error type, in a module of its own so that every helper module can raise it
without importing :mod:`adapters.base` (which imports them)."""
from __future__ import annotations


class AttributionError(ValueError):
    """Bad input to a method, or a method that produced an unusable map."""


class NotApplicable(AttributionError):
    """The method cannot explain this architecture as defined (no attention it can read, an
    activation or layer its rule does not cover, no spatial layer): not bad input and not a bug.
    The grid records such a cell as "not applicable", apart from failures."""
