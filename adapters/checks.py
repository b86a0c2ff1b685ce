"""One-line checks of method parameters: type, finiteness and range, with the parameter's name.

Every method validates its parameters in ``__init__`` with these, so a wrong type (``"4"``,
``2.5`` or ``True`` for a count), a NaN or an absurd count is refused before any work with one
line that names the parameter and what it accepts.
"""
from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any, Sequence

from .errors import AttributionError


def check_int(name: str, value: Any, low: int, high: int, *, optional: bool = False, why: str = "") -> int | None:
    """``value`` as an int in [low, high] (``None`` too when ``optional``); ``why`` explains the upper bound."""
    if value is None and optional:
        return None
    integer = isinstance(value, Integral) and not isinstance(value, bool)  # True is not a count
    if not integer or not low <= value <= high:
        reason = f" ({why})" if why and integer and value > high else ""
        accepted = f"an integer in [{low}, {high}]" + (" or None" if optional else "")
        raise AttributionError(f"{name} must be {accepted}{reason}, got {value!r}")
    return int(value)


def check_float(name: str, value: Any, low: float | None = None, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float within the bounds (``None``: unbounded on that side)."""
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(float(value))
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        raise AttributionError(f"{name} must be a finite number{_interval(low, high, low_open, high_open)}, "
                               f"got {value!r}")
    return float(value)


def _number(value: float) -> str:
    """Bounds such as 2**63 - 1 read better as powers of two than as 19 digits."""
    if isinstance(value, int) and abs(value) >= 2**20:
        for offset, suffix in ((0, ""), (1, " - 1")):
            power = (abs(value) + offset).bit_length() - 1
            if abs(value) + offset == 2**power:
                return f"{'-' if value < 0 else ''}2**{power}{suffix}"
    return f"{value:g}" if isinstance(value, float) else repr(value)


def interval_text(low: float | None, high: float | None, low_open: bool = False, high_open: bool = False) -> str:
    """An interval as a message says it: "in [1, 2048]", "> 0", "<= 1" ("" when unbounded).
    Shared by the methods' and the scores' parameter checks, so both say ranges the same way."""
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{_number(low)}, {_number(high)}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {_number(low)}"
    if high is not None:
        return f"{'<' if high_open else '<='} {_number(high)}"
    return ""


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    text = interval_text(low, high, low_open, high_open)
    return f" {text}" if text else ""


def check_bool(name: str, value: Any) -> bool:
    # bool(x) would turn "no" or 0.5 into a silent True.
    if not isinstance(value, bool):
        raise AttributionError(f"{name} must be True or False, got {value!r}")
    return value


def check_choice(name: str, value: Any, choices: Sequence[str], what: str | None = None) -> str:
    """``value`` if it is one of ``choices``; ``what`` names the kind of thing in the message."""
    # isinstance first: a list or dict value would make ``in`` raise TypeError (unhashable).
    if not isinstance(value, str) or value not in choices:
        raise AttributionError(f"unknown {what or name} {value!r}; {name} must be one of {list(choices)}")
    return value
