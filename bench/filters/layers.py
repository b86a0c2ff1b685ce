"""Finding a layer, reading its output with a hook, and leaving the model exactly as it was found."""
from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn


class FilterError(ValueError):
    """Bad input to the filter views: unknown layer, a layer without a spatial output, bad filter indices."""


class _StopForward(Exception):
    """Raised by the capture hook once the layer has run: nothing after it is needed."""


def find_layer(model: nn.Module, layer: str) -> nn.Module:
    """The submodule called ``layer`` (a qualified name such as ``features.5``); a clear error otherwise."""
    modules = dict(model.named_modules())
    if layer in modules:
        return modules[layer]
    names = [name for name in modules if name]
    close = difflib.get_close_matches(layer, names, n=3, cutoff=0.5)
    # The deepest convolutions are the usual choice, so list the last few as examples.
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)][-4:]
    examples = list(dict.fromkeys(close + convs)) or names[:6]
    raise FilterError(f"{type(model).__name__} has no layer {layer!r}; valid names include "
                      f"{', '.join(examples)} ({len(names)} modules in all)")


def layer_output(model: nn.Module, layer: str, x: Tensor) -> Tensor:
    """Output of ``layer`` for input ``x``, checked to be a (N, C, h, w) feature map.

    The forward pass stops right after the layer (the hook raises), which saves the rest of the
    network and means a later in-place op (``ReLU(inplace=True)``) cannot overwrite the captured
    tensor. For a module called several times in one forward pass, the first call's output is taken.
    The hook is removed whatever happens.
    """
    module = find_layer(model, layer)
    captured: list[object] = []

    def hook(_module: nn.Module, _inputs: tuple, output: object) -> None:
        captured.append(output)
        raise _StopForward

    handle = module.register_forward_hook(hook)
    try:
        model(x)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if not captured:
        raise FilterError(f"layer {layer!r} was not called in the forward pass of {type(model).__name__}")
    output = captured[0]
    if not isinstance(output, Tensor) or output.dim() != 4:
        shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
        raise FilterError(f"layer {layer!r} outputs {shape}, not a (N, C, H, W) spatial feature map; "
                          "pick a convolutional layer")
    return output


def check_filters(filters: Sequence[int], channels: int, layer: str) -> list[int]:
    """``filters`` as a list of ints within ``[0, channels)``; a clear error otherwise."""
    filters = list(filters)
    if not filters:
        raise FilterError("no filters given: pass at least one channel index")
    for f in filters:
        if isinstance(f, bool) or not isinstance(f, int):
            raise FilterError(f"filter indices must be integers, got {f!r}")
        if not 0 <= f < channels:
            raise FilterError(f"filter {f} is out of range: layer {layer!r} has {channels} channels "
                              f"(valid indices 0..{channels - 1})")
    return filters


def count_hooks(model: nn.Module) -> int:
    """Forward (pre-)hooks and backward hooks on every submodule (tests check that none are left)."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in model.modules())


@contextmanager
def untouched(model: nn.Module) -> Iterator[None]:
    """Run the block in eval mode with frozen parameters, then restore both exactly.

    Eval mode so that batch-norm running statistics are neither used from the batch nor updated;
    frozen parameters so that no parameter gradient is computed or accumulated. Each module's own
    training flag is restored (a model may mix train and eval submodules), as is each parameter's
    ``requires_grad``, also when the block raises.
    """
    training = [(m, m.training) for m in model.modules()]
    requires_grad = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in requires_grad:
            p.requires_grad_(False)
        yield
    finally:
        for m, flag in training:
            m.training = flag
        for p, flag in requires_grad:
            p.requires_grad_(flag)


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU for a model that has neither)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")
