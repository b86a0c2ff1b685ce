"""Faithfulness, localisation and sanity-check scores. Knows nothing of ``bench``.

``metrics.get(name)`` returns a :class:`MetricSpec` (category, direction, protocol parameters);
each metric module also exposes its function by name (``metrics.deletion(...)``).
"""
import importlib as _importlib
import pkgutil as _pkgutil

from .registry import MetricResult, MetricSpec, get, names, register

__all__ = ["MetricResult", "MetricSpec", "get", "names", "register"]


def __getattr__(name: str):  # metrics.deletion(...) is metrics.get("deletion").compute(...)
    if name in _registered_names():
        return get(name).compute
    raise AttributeError(f"module 'metrics' has no attribute {name!r}")


def _registered_names() -> list[str]:
    return names()


from . import scores as _scores  # noqa: E402

for _module in _pkgutil.iter_modules(_scores.__path__):
    _importlib.import_module(f"{_scores.__name__}.{_module.name}")
