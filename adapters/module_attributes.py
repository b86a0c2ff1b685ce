"""Put back the plain attributes that Captum's propagation methods set on a model's modules.

Captum's LRP attaches ``rule`` and ``activations`` to every leaf module, deletes every ``rule``
afterwards (a rule the user set included) and leaves ``activations`` behind, holding the last
batch's inputs; a LRP call that fails before its ``try`` leaves its rules in place, and the next call
then takes them for the user's. DeepLift keeps ``input`` and ``output`` on its modules until their
backward runs. :func:`attributes_restored` records each module's public attributes and restores
them exactly on exit, whatever happened in between.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from torch import nn


@contextlib.contextmanager
def attributes_restored(model: nn.Module) -> Iterator[None]:
    """Within the block modules may gain, lose or rebind public attributes; on exit each module has
    exactly the public attributes (same objects) it had on entry. Parameters, buffers, submodules
    and hooks live in ``_``-prefixed dicts and are not touched here."""
    saved = [(module, {k: v for k, v in vars(module).items() if not k.startswith("_")}) for module in model.modules()]
    try:
        yield
    finally:
        for module, before in saved:
            now = vars(module)
            for key in [k for k in now if not k.startswith("_") and k not in before]:
                del now[key]
            for key, value in before.items():
                if now.get(key, _MISSING) is not value:
                    now[key] = value


_MISSING = object()
