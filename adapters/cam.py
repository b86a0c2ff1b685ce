"""A layer's activations and their gradients, on the layer's spatial grid: what every CAM needs.

CNN layers give (N, C, h, w); a ViT's token layer (N, T, D) loses its prefix tokens (class token,
registers) and becomes (N, D, h, w) over the patch grid; Swin's channels-last (N, h, w, C) is
permuted (:mod:`adapters.tokens`). The layer's output is swapped for a detached copy that requires
grad, so the gradient is taken with respect to exactly the tensor the rest of the model used (values
bit-identical), parameters' ``requires_grad`` and ``.grad`` are left alone, and the backward stops
at the layer.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .errors import AttributionError
from .tokens import LAYOUTS, layer_layout, to_channels_first


@dataclass(frozen=True)
class LayerCapture:
    """What one pass over a layer gave: ``activations`` and ``gradients`` (None without a backward),
    both (N, C, h, w), and the layout the layer's output had."""

    activations: Tensor
    gradients: Tensor | None
    layout: str


def check_layout(layout: str | None) -> str | None:
    if layout is not None and layout not in LAYOUTS:
        raise AttributionError(f"layout must be None (detect) or one of {', '.join(LAYOUTS)}, got {layout!r}")
    return layout


class _Swap:
    """Forward hook that keeps a layer's output as a leaf (requiring grad when asked) and lets the
    network continue from a copy of it, once per forward."""

    def __init__(self, name: str, grad: bool) -> None:
        self.name, self.grad = name, grad
        self.output: Tensor | None = None

    def __call__(self, _module: nn.Module, _inputs: object, output: object) -> Tensor:
        if not isinstance(output, Tensor):
            raise AttributionError(f"layer {self.name!r} returns {type(output).__name__}, not a tensor; "
                                   "pick a layer with a single tensor output")
        if self.output is not None:
            raise AttributionError(f"layer {self.name!r} runs more than once per forward; pick a layer "
                                   "that is called once")
        self.output = output.detach().requires_grad_(self.grad)
        # The network goes on with a copy: an in-place module after the layer (VGG's
        # ReLU(inplace=True)) would otherwise overwrite the captured activations (and, with
        # gradients, fail on the leaf). The copy is the layer's own output, so logits are unchanged.
        return self.output.clone()


def capture_layer(model: nn.Module, name: str, layer: nn.Module, x: Tensor, target: Tensor | None,
                  layout: str | None = None) -> LayerCapture:
    """Run ``model`` on ``x`` (N, C, H, W) and return ``layer``'s activations on its grid, with the
    gradients of each image's ``target`` logit (N,) when ``target`` is given (one backward for the
    batch: images do not interact, so summing their logits gives each its own gradient)."""
    swap = _Swap(name, grad=target is not None)
    handle = layer.register_forward_hook(swap)
    try:
        with torch.set_grad_enabled(target is not None):
            logits = model(x)
            if swap.output is None:
                raise AttributionError(f"layer {name!r} did not run in the model's forward")
            gradients = None
            if target is not None:
                selected = logits.gather(1, target.view(-1, 1)).sum()
                (gradients,) = torch.autograd.grad(selected, swap.output)
    finally:
        handle.remove()
    height, width = x.shape[-2:]
    output = swap.output.detach()
    found = layout or layer_layout(output, height, width)
    if found is None:
        raise AttributionError(f"layer {name!r} gives {tuple(output.shape)}: neither a (N, C, h, w) feature map "
                               f"nor tokens that tile the {height}x{width} input; pass layer='<module name>'")
    grid = to_channels_first(output, found, height, width, f"layer {name!r}")
    grads = None if gradients is None else to_channels_first(gradients, found, height, width, f"layer {name!r}")
    return LayerCapture(grid.float(), None if grads is None else grads.float(), found)
