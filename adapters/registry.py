"""Registry of attribution methods: ``@register("name")`` on a :class:`Method` subclass."""
from __future__ import annotations

import inspect
from typing import Any, Callable, TypeVar

from .base import Method, UnknownMethodError, UnknownParameterError

_METHODS: dict[str, type[Method]] = {}
M = TypeVar("M", bound=type[Method])


def register(name: str) -> Callable[[M], M]:
    """Class decorator that registers a method under ``name``; a duplicate name raises."""

    def decorator(cls: M) -> M:
        if name in _METHODS:
            raise ValueError(f"attribution method {name!r} is already registered by {_METHODS[name].__qualname__}")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return decorator


def names() -> list[str]:
    """Sorted names of every registered method."""
    return sorted(_METHODS)


def get_class(name: str) -> type[Method]:
    """The registered class; an unknown name raises :class:`UnknownMethodError` (a ``KeyError``)."""
    if name not in _METHODS:
        raise UnknownMethodError(f"unknown attribution method {name!r}; registered methods: {', '.join(names())}")
    return _METHODS[name]


def get(name: str, **params: Any) -> Method:
    """Build the method ``name`` with ``params``; unknown names and parameters are clear errors
    (:class:`UnknownMethodError`, :class:`UnknownParameterError`, both :class:`AttributionError`)."""
    cls = get_class(name)
    accepted = inspect.signature(cls.__init__).parameters
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    unknown = sorted(set(params) - set(accepted) - {"self"})
    if unknown and not takes_kwargs:
        allowed = sorted(k for k in accepted if k != "self")
        raise UnknownParameterError(f"unknown parameter(s) {unknown} for method {name!r}; accepted: {allowed}")
    return cls(**params)
