"""Declarations of protocol parameters: default, type and accepted range in one object.

A metric registers ``params={"n_steps": Int(32, low=1, high=2**16), ...}``; the registry reads the
defaults from the declarations and checks every given value against them before any work, so a bad
value is refused in one line (what is accepted, what was given) instead of failing deep inside torch
or silently giving NaN scores. Each declaration checks its own default when it is built.

Every count has an upper bound: a typo such as ``10**6`` must be refused before it allocates
anything. The bounds are generous for real use; a bound that depends on the input (``n_steps`` at
most H * W) is checked again at run time by the score.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

from torch import Tensor

from adapters.checks import interval_text

from .validation import MetricInputError


class Rejected(Exception):
    """Raised by :meth:`Param.convert` for a value outside the declaration (turned into a message)."""


def show(value: Any) -> str:
    """A short description of a given value for an error message: its repr, or a tensor's shape."""
    if isinstance(value, Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _within(value: float, low: float | None, high: float | None, open_low: bool, open_high: bool) -> bool:
    above = low is None or (value > low if open_low else value >= low)
    below = high is None or (value < high if open_high else value <= high)
    return above and below


def _finite_float(value: Any, low: float | None, high: float | None, open_low: bool, open_high: bool) -> float:
    """``value`` as a float if it is a finite real number (not a bool) in the range; else :class:`Rejected`."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise Rejected
    if not _within(float(value), low, high, open_low, open_high):
        raise Rejected
    return float(value)


class Param:
    """Base of the declarations: ``default``, :meth:`accepts` (one line) and :meth:`convert`."""

    default: Any

    def __post_init__(self) -> None:
        try:
            self.convert(self.default)
        except Rejected:
            raise ValueError(f"default {show(self.default)} is not {self.accepts()}") from None

    def accepts(self) -> str:
        raise NotImplementedError

    def convert(self, value: Any) -> Any:
        """The canonical form of ``value``; raises :class:`Rejected` for a value not accepted."""
        raise NotImplementedError

    def check(self, name: str, value: Any, owner: str = "") -> Any:
        """``value`` in canonical form, or a :class:`MetricInputError` naming ``owner`` and ``name``."""
        try:
            return self.convert(value)
        except Rejected:
            prefix = f"{owner}: " if owner else ""
            raise MetricInputError(f"{prefix}{name} must be {self.accepts()}, got {show(value)}") from None


@dataclass(frozen=True)
class Int(Param):
    """An integer (not a bool, a float or a string) in [low, high]; ``odd`` for kernel sizes."""

    default: int
    low: int | None = None
    high: int | None = None
    odd: bool = False

    def accepts(self) -> str:
        return " ".join(filter(None, ["an odd integer" if self.odd else "an integer",
                                      interval_text(self.low, self.high, False, False)]))

    def convert(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, Integral):
            raise Rejected
        value = int(value)
        if not _within(value, self.low, self.high, False, False) or (self.odd and value % 2 == 0):
            raise Rejected
        return value


@dataclass(frozen=True)
class Float(Param):
    """A finite number (ints accepted, bools not), returned as a float, in the given range."""

    default: float
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def accepts(self) -> str:
        return " ".join(filter(None, ["a finite float", interval_text(self.low, self.high, self.open_low, self.open_high)]))

    def convert(self, value: Any) -> float:
        return _finite_float(value, self.low, self.high, self.open_low, self.open_high)


@dataclass(frozen=True)
class Fractions(Param):
    """A non-empty list (or tuple) of at most ``max_length`` fractions in (0, 1), as a tuple of floats:
    a fraction of the pixels to change, where 0 and 1 would leave nothing to compare."""

    default: tuple[float, ...]
    max_length: int

    def accepts(self) -> str:
        return f"a non-empty list of at most {self.max_length} floats in (0, 1)"

    def convert(self, value: Any) -> tuple[float, ...]:
        if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= self.max_length:
            raise Rejected
        return tuple(_finite_float(v, 0.0, 1.0, True, True) for v in value)


@dataclass(frozen=True)
class Choice(Param):
    """One of ``options`` (compared by type as well, so ``True`` is not the option ``1``)."""

    default: Any
    options: tuple[Any, ...]

    def accepts(self) -> str:
        return "one of " + ", ".join(repr(o) for o in self.options)

    def convert(self, value: Any) -> Any:
        if not any(type(value) is type(o) and value == o for o in self.options):
            raise Rejected
        return value


@dataclass(frozen=True)
class Bool(Param):
    """True or False, not 0, 1 or a string."""

    default: bool

    def accepts(self) -> str:
        return "a bool (true or false)"

    def convert(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise Rejected
        return value


_INNER_DEFAULT = object()


@dataclass(frozen=True)
class OrNone(Param):
    """None, or a value accepted by ``inner``; the default is ``inner``'s unless one is given."""

    inner: Param
    default: Any = _INNER_DEFAULT

    def __post_init__(self) -> None:
        if self.default is _INNER_DEFAULT:
            object.__setattr__(self, "default", self.inner.default)
        super().__post_init__()

    def accepts(self) -> str:
        return f"None or {self.inner.accepts()}"

    def convert(self, value: Any) -> Any:
        return None if value is None else self.inner.convert(value)


@dataclass(frozen=True)
class Substrate(Param):
    """One of the named substrates, or a tensor (its shape, device and values are checked against
    ``x`` at run time, when ``x`` is known)."""

    default: str
    options: tuple[str, ...]

    def accepts(self) -> str:
        names = ", ".join(repr(o) for o in self.options)
        return f"one of {names} or a tensor (C, H, W), (1, C, H, W) or (N, C, H, W)"

    def convert(self, value: Any) -> str | Tensor:
        if isinstance(value, Tensor) or (isinstance(value, str) and value in self.options):
            return value
        raise Rejected


@dataclass(frozen=True)
class Norm(Param):
    """The norm of a difference of maps: "fro", or p >= 1 (inf: the max norm). Below 1 ``torch.norm``
    still computes a number, but not a norm (no triangle inequality), so a score would not be a
    relative change; "nuc" needs 2-D inputs, and Captum flattens each map to a vector."""

    default: str | float

    def accepts(self) -> str:
        return "'fro' or a number p >= 1 (inf for the max norm)"

    def convert(self, value: Any) -> str | float:
        if isinstance(value, str) and value == "fro":
            return value
        if isinstance(value, bool) or not isinstance(value, Real) or math.isnan(value) or value < 1:
            raise Rejected
        return float(value)


# Core arguments every score takes. torch's generators take any 64-bit seed, and the per-image seeds
# (adapters.seeding) pack it into 8 signed bytes: the signed 64-bit range is what every consumer takes.
SEED = Int(0, low=-2**63, high=2**63 - 1)
# None: the adapters' default budget. The inner default only serves the declaration's self-check.
DEVICE_BUDGET_BYTES = OrNone(Int(2**30, low=1), default=None)
CORE: dict[str, Param] = {"seed": SEED, "device_budget_bytes": DEVICE_BUDGET_BYTES}
