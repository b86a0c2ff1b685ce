"""What the CAM methods share: the layer, the batched capture of its activations (and gradients),
the ReLU and the upsampling to the input. Each method (one file in ``adapters/methods/``) only says
how a coarse map is made from the layer's activations A and gradients g, both (N, C, h, w).

Built on :func:`adapters.cam.capture_layer`, so CNN layers, ViT token layers and Swin's
channels-last grids are handled alike; the layer is found as for Grad-CAM
(:func:`adapters.layers.resolve_layer`). The maps are pytorch-grad-cam's ``get_cam_image`` after
its ReLU, at the layer's resolution, before its per-image min-max scaling and OpenCV resize; they
are then upsampled with ``upsample`` (Captum's ``LayerAttribution.interpolate``, bilinear,
align_corners=False by default) like Grad-CAM's.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .base import AttributionError, Cost, Method
from .budget import DEFAULT_MEMORY_MB, check_batch, check_memory_mb, rows_for_budget, spans
from .cam import LayerCapture, capture_layer, check_layout
from .layers import resolve_layer
from .maps import check_upsampling, upsample
from .probe import probe
from .tokens import layer_layout


def check_layer(layer: Any) -> str | None:
    if layer is not None and not isinstance(layer, str):
        raise AttributionError(f"layer must be a module name (str) or None, got {layer!r}")
    return layer


class SinglePassCamMethod(Method):
    """Base of the CAMs computed from one pass over a layer (no perturbation): subclasses set
    ``uses_gradients`` and implement :meth:`coarse_map`.

    ``layer``: a module name as in ``model.named_modules()``, or ``None`` for the automatic layer
    (the last spatial layer of a CNN, the last block's first layer norm of a transformer; the one
    Grad-CAM takes). ``layout``: ``"nchw"``, ``"nhwc"`` or ``"tokens"``; None detects it.
    ``upsample``: how the layer-resolution map reaches the input size. Memory knob: ``batch_size``
    images per pass (default: what ``memory_mb`` holds). The layer, layout and grid used are in
    ``diagnostics``.
    """

    memory_knobs = ("batch_size",)
    #: Whether the map needs d(target logit)/dA (one backward that stops at the layer).
    uses_gradients: ClassVar[bool] = True

    def __init__(self, layer: str | None = None, upsample: str = "bilinear", layout: str | None = None,
                 batch_size: int | None = None, memory_mb: float = DEFAULT_MEMORY_MB) -> None:
        super().__init__(layer=check_layer(layer), upsample=check_upsampling(upsample), layout=check_layout(layout),
                         batch_size=check_batch("batch_size", batch_size), memory_mb=check_memory_mb(memory_mb))

    def coarse_map(self, activations: Tensor, gradients: Tensor | None) -> Tensor:
        """(N, C, h, w) activations and gradients (None without ``uses_gradients``) -> (N, 1, h, w),
        before the ReLU."""
        raise NotImplementedError

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        name, layer = resolve_layer(model, x, self.params["layer"])
        size = self.params["batch_size"] or rows_for_budget(model, x, self.params["memory_mb"],
                                                            backward=self.uses_gradients)
        maps = []
        for s in spans(len(x), size):
            captured = capture_layer(model, name, layer, x[s], target[s] if self.uses_gradients else None,
                                     self.params["layout"])
            cam = self.coarse_map(captured.activations, captured.gradients).clamp(min=0)
            maps.append(upsample(cam, tuple(x.shape[-2:]), self.params["upsample"]))
        record_layer(self, name, captured, size)
        return torch.cat(maps)

    def cost(self, **context: Any) -> Cost:
        return Cost(forward=1, backward=1 if self.uses_gradients else 0)


def record_layer(method: Method, name: str, captured: LayerCapture, batch_size: int) -> None:
    method.diagnostics.update(layer=name, layout=captured.layout, grid=tuple(captured.activations.shape[-2:]),
                              channels=captured.activations.shape[1], batch_size=batch_size)


def spatial_sum(t: Tensor) -> Tensor:
    """Sum over the grid (N, C, h, w) -> (N, C, 1, 1)."""
    return t.sum(dim=(2, 3), keepdim=True)


def channel_sum(t: Tensor) -> Tensor:
    """Sum over the channels (N, C, h, w) -> (N, 1, h, w)."""
    return t.sum(dim=1, keepdim=True)


def layer_channels(model: nn.Module, layer: str | None, layout: str | None, height: int, width: int,
                   channels: int) -> int:
    """How many channels (C of the (N, C, h, w) grid) ``layer`` (None: the automatic one) has for an
    input of ``channels`` x ``height`` x ``width``, from the cached probe forward."""
    device = next((t.device for t in [*model.parameters(), *model.buffers()]), torch.device("cpu"))
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    x = torch.zeros(1, channels, height, width, device=device, dtype=dtype)
    name, _ = resolve_layer(model, x, layer)
    shape = next((call.output_shape for call in probe(model, x).order if call.name == name), None)
    found = layout or (layer_layout(shape, height, width) if shape is not None else None)
    if shape is None or found is None:
        raise AttributionError(f"layer {name!r} gives {shape}: not a feature map or token grid of a "
                               f"{height}x{width} input")
    return int({"nchw": shape[1], "nhwc": shape[-1], "tokens": shape[-1]}[found])
