"""One interface over every attribution method: ``adapters.get(name, **params).attribute(model, x, target)``.

Adding a method: a file in ``adapters/methods/`` with a :class:`Method` subclass decorated with
``@register("name")``; parameters are keyword arguments of ``__init__`` passed to
``super().__init__(**params)``, each validated there with :mod:`adapters.checks` (type, finiteness,
and an upper bound on every count); implement ``_attribute(model, x, target) -> (N, 1, H, W)`` and
``cost(**context) -> Cost``; set ``stochastic`` (then take a ``seed``), ``memory_knobs`` (names of
the internal batch-size parameters) and, for a slow method, ``quick_params()`` (cheap settings).
The contract tests in ``tests/adapters/`` walk ``names()`` and run on it without further changes.
A method that also explains text models sets ``modalities = ("image", "text")`` and returns (N, L)
maps for token ids (N, L) (:mod:`adapters.modality`, :class:`adapters.token_model.TokenClassifier`).
"""
from .base import AttributionError, Cost, Method, UnknownMethodError, UnknownParameterError, check_inputs
from .errors import NotApplicable
from .registry import get, get_class, names, register

__all__ = ["AttributionError", "NotApplicable", "Cost", "Method", "UnknownMethodError", "UnknownParameterError", "check_inputs",
           "get", "get_class", "names", "register"]

# Every module in adapters/methods/ registers its methods on import: one file per method.
import importlib as _importlib
import pkgutil as _pkgutil

from . import methods as _methods

for _module in _pkgutil.iter_modules(_methods.__path__):
    _importlib.import_module(f"{_methods.__name__}.{_module.name}")
