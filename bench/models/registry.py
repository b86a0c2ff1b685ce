"""Registry of model specs, like timm's: ``@register_model`` on a function returning a ModelSpec."""
from __future__ import annotations

import fnmatch
from typing import Callable

from .spec import ModelSpec

_SPECS: dict[str, ModelSpec] = {}
#: Name prefixes resolved on demand (``"timm/"`` -> a spec for any timm ViT), for families too large
#: to register one by one; a resolver raises KeyError with the reason when it cannot build the spec.
_RESOLVERS: dict[str, Callable[[str], ModelSpec]] = {}
_RESOLVED: dict[str, ModelSpec] = {}  # kept apart: list_models() lists what was registered


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


def register_resolver(prefix: str, resolve: Callable[[str], ModelSpec]) -> None:
    """Resolve every name starting with ``prefix`` with ``resolve(name)`` (cached once resolved)."""
    if prefix in _RESOLVERS:
        raise ValueError(f"model prefix {prefix!r} is already registered")
    _RESOLVERS[prefix] = resolve


def get_spec(name: str) -> ModelSpec:
    if name not in _SPECS:
        for prefix, resolve in _RESOLVERS.items():
            if name.startswith(prefix) and len(name) > len(prefix):
                if name not in _RESOLVED:
                    _RESOLVED[name] = resolve(name)
                return _RESOLVED[name]
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(list_models())}; "
                       f"on demand: {', '.join(p + '<name>' for p in _RESOLVERS)}")
    return _SPECS[name]
