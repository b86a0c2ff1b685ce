"""Registry of model specs, like timm's: ``@register_model`` on a function returning a ModelSpec."""
from __future__ import annotations

import fnmatch
from typing import Callable

from .spec import ModelSpec

_SPECS: dict[str, ModelSpec] = {}


def register_model(factory: Callable[[], ModelSpec]) -> Callable[[], ModelSpec]:
    """Register the spec returned by ``factory`` under its ``name``; a duplicate name raises."""
    spec = factory()
    if spec.name in _SPECS:
        raise ValueError(f"model {spec.name!r} is already registered")
    _SPECS[spec.name] = spec
    return factory


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern``."""
    return sorted(n for n in _SPECS if fnmatch.fnmatch(n, pattern))


def get_spec(name: str) -> ModelSpec:
    if name not in _SPECS:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")
    return _SPECS[name]
