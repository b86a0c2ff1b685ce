"""One cached forward pass of one image that tells the adapters what they need about a model.

What it records depends only on the architecture and the input shape, so it is cached per model
object (weakly: a deleted model drops its entry) and per (C, H, W, dtype, device). Re-initialising
weights in place (the sanity checks) keeps the entry valid. Whether the logits are finite depends
on the image and the weights, not on the architecture: a probe that saw non-finite logits is
returned but never cached, so the next call looks again.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .errors import AttributionError


@dataclass(frozen=True)
class ModuleCall:
    """One module call in execution order (a module's hook fires after its children's)."""

    name: str
    module_type: type
    output_shape: tuple[int, ...] | None  # None when the output is not a single tensor
    calls: int  # how many times this module ran in the forward (a reused ReLU runs several times)


@dataclass(frozen=True)
class ModelProbe:
    """What one forward of a (1, C, H, W) input showed."""

    n_classes: int
    order: tuple[ModuleCall, ...]
    #: Bytes of every leaf module's output for one image: what autograd keeps for a backward pass.
    activation_bytes: int
    #: Whether the probed image's logits were all finite (the probe is not cached when they were not).
    logits_finite: bool = True


_CACHE: "weakref.WeakKeyDictionary[nn.Module, dict[tuple, ModelProbe]]" = weakref.WeakKeyDictionary()


def probe(model: nn.Module, x: Tensor) -> ModelProbe:
    """Probe ``model`` with ``x[:1]`` (x: (N, C, H, W)); cached per model and input shape."""
    key = (tuple(x.shape[1:]), x.dtype, x.device)
    per_model = _CACHE.setdefault(model, {})
    if key in per_model:
        return per_model[key]
    result = _run_probe(model, x[:1].detach())
    if result.logits_finite:
        per_model[key] = result
    return result


def _run_probe(model: nn.Module, x1: Tensor) -> ModelProbe:
    names = {module: name for name, module in model.named_modules()}
    shapes: dict[nn.Module, tuple[int, ...] | None] = {}
    calls: dict[nn.Module, int] = {}
    last_seen: dict[nn.Module, int] = {}
    activation = [x1.numel() * x1.element_size()]
    tick = [0]

    def record(module: nn.Module, _inputs: object, output: object) -> None:
        tick[0] += 1
        calls[module] = calls.get(module, 0) + 1
        last_seen[module] = tick[0]
        shapes[module] = tuple(output.shape) if isinstance(output, Tensor) else None
        if isinstance(output, Tensor) and not any(True for _ in module.children()):
            activation[0] += output.numel() * output.element_size()

    handles = [m.register_forward_hook(record) for m in model.modules() if m is not model]
    try:
        with torch.no_grad():
            out = model(x1)
    except Exception as error:  # noqa: BLE001 - any failure here means the model rejects this input
        raise AttributionError(f"the model failed on an input of shape {tuple(x1.shape)} "
                               f"(C, H, W = {tuple(x1.shape[1:])}): {type(error).__name__}: {error}") from error
    finally:
        for handle in handles:
            handle.remove()
    if not isinstance(out, Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise AttributionError(f"the model must map (N, C, H, W) to logits (N, K), got {shape}")
    ordered = sorted(last_seen, key=last_seen.__getitem__)
    order = tuple(ModuleCall(names[m], type(m), shapes[m], calls[m]) for m in ordered)
    return ModelProbe(n_classes=int(out.shape[1]), order=order, activation_bytes=activation[0],
                      logits_finite=bool(torch.isfinite(out).all()))
