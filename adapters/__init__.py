"""One interface over every attribution method: ``adapters.get(name, **params).attribute(model, x, target)``."""
from .base import AttributionError, Cost, Method, UnknownMethodError, UnknownParameterError, check_inputs
from .registry import get, get_class, names, register

__all__ = ["AttributionError", "Cost", "Method", "UnknownMethodError", "UnknownParameterError", "check_inputs",
           "get", "get_class", "names", "register"]

# Every module in adapters/methods/ registers its methods on import: one file per method.
import importlib as _importlib
import pkgutil as _pkgutil

from . import methods as _methods

for _module in _pkgutil.iter_modules(_methods.__path__):
    _importlib.import_module(f"{_methods.__name__}.{_module.name}")
