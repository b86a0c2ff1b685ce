"""Targets as class indices: the same rules for an int, a list, a numpy array and a tensor.

A target is an integer class index, or a container of them. Floats are accepted when they are
whole numbers (``[1.0, 2.0]`` is classes 1 and 2, as a label column read from a CSV often is), and
refused otherwise: converting with ``dtype=long`` would silently truncate ``0.9`` to class 0. A
bool is refused too, although Python counts it as an int: ``True`` is not a class index.
"""
from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .errors import AttributionError

PREFIX = "target must hold integer class indices"
#: Whole floats from here on cannot be converted to int64 exactly (2**63).
INT64_LIMIT = 2.0**63


def class_indices(target: Any, device: torch.device | str) -> Tensor:
    """``target`` as an int64 tensor of its own shape (0-d for a scalar) on ``device``.

    Raises :class:`AttributionError` naming the first entry that is not an integer class index
    (fractional, NaN/inf, bool, string, None, complex, beyond int64), or a ragged nested list.
    """
    values = _as_tensor(target)
    if values.dtype == torch.bool and values.numel():
        raise _entry_error(values, torch.ones_like(values), "a bool, not a class index")
    if values.is_complex():
        raise AttributionError(f"{PREFIX}, got a complex {type(target).__name__} (dtype {values.dtype})")
    if values.is_floating_point():
        finite = torch.isfinite(values)
        if not finite.all():
            raise _entry_error(values, ~finite, "not finite")
        if (values.abs() >= INT64_LIMIT).any():
            raise _entry_error(values, values.abs() >= INT64_LIMIT, "beyond the int64 range")
        fractional = values != values.round()
        if fractional.any():
            raise _entry_error(values, fractional, "a fractional float")
    return values.to(device=device, dtype=torch.long)


def _as_tensor(target: Any) -> Tensor:
    if isinstance(target, Tensor):
        return target.detach()
    if isinstance(target, np.ndarray):
        if target.dtype.kind in "iu":
            return torch.from_numpy(target.astype(np.int64))
        if target.dtype.kind == "f":
            return torch.from_numpy(target.astype(np.float64))
        return _as_tensor(target.tolist())  # bools, strings, objects: named entry by entry below
    if isinstance(target, (list, tuple)):
        return _from_entries(*_flatten(target))
    return _from_entries((), [target])  # a scalar (or something that is not a target at all)


def _from_entries(shape: tuple[int, ...], flat: list[Any]) -> Tensor:
    """Entries of a nested list (row-major) as an int64 (all ints) or float64 tensor of ``shape``."""
    for position, value in enumerate(flat):
        if isinstance(value, (bool, np.bool_)):
            raise AttributionError(f"{PREFIX}, got {value!r} (a bool, not a class index){_at(shape, position)}")
        if not isinstance(value, Real):  # strings, None, complex, objects
            kind = "" if value is None else f" (a {type(value).__name__})"
            raise AttributionError(f"{PREFIX}, got {value!r}{kind}{_at(shape, position)}")
    if all(isinstance(v, Integral) for v in flat):
        try:
            return torch.tensor([int(v) for v in flat], dtype=torch.long).reshape(shape)
        except (OverflowError, RuntimeError, ValueError):  # torch's message for ints beyond int64 varies
            position = next(i for i, v in enumerate(flat) if not -2**63 <= int(v) < 2**63)
            raise AttributionError(f"{PREFIX}, got {flat[position]} (beyond the int64 range)"
                                   f"{_at(shape, position)}") from None
    return torch.tensor([float(v) for v in flat], dtype=torch.float64).reshape(shape)


def _flatten(target: list | tuple) -> tuple[tuple[int, ...], list[Any]]:
    """(shape, entries in row-major order) of a nested list; a ragged one is refused."""
    items = [v.item() if isinstance(v, (Tensor, np.ndarray)) and v.ndim == 0 else v for v in target]
    nested = [isinstance(v, (list, tuple, Tensor, np.ndarray)) for v in items]
    if not any(nested):
        return (len(items),), items
    if not all(nested):
        raise AttributionError(f"{PREFIX}, got a ragged nested list (it mixes numbers and lists)")
    parts = [_flatten(list(v.tolist()) if isinstance(v, (Tensor, np.ndarray)) else v) for v in items]
    shapes = sorted({shape for shape, _ in parts})
    if len(shapes) > 1:
        raise AttributionError(f"{PREFIX}, got a ragged nested list (rows of shapes {shapes})")
    return (len(items), *shapes[0]), [v for _, flat in parts for v in flat]


def _entry_error(values: Tensor, bad: Tensor, why: str) -> AttributionError:
    flat = bad.reshape(-1).nonzero()[0, 0].item()
    value = values.reshape(-1)[flat].item()
    return AttributionError(f"{PREFIX}, got {value!r} ({why}){_at(tuple(values.shape), flat)}")


def _at(shape: tuple[int, ...], flat: int) -> str:
    """' at position i' (or a tuple index for nested targets); nothing for a scalar."""
    if not shape:
        return ""
    if len(shape) == 1:
        return f" at position {flat}"
    return f" at position {tuple(int(i) for i in np.unravel_index(flat, shape))}"
