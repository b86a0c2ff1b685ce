"""Grad-CAM (Selvaraju et al. 2017) on the last spatial feature layer, upsampled to the input."""
from __future__ import annotations

import torch
from captum.attr import LayerGradCam
from torch import Tensor, nn

from ..base import AttributionError, Cost, Method
from ..budget import DEFAULT_MEMORY_MB, check_batch, check_memory_mb, rows_for_budget, spans
from ..layers import resolve_layer
from ..maps import check_upsampling, upsample
from ..registry import register


@register("gradcam")
class GradCamMethod(Method):
    """Captum ``LayerGradCam`` with ``relu_attributions=True`` (one channel: the gradient-weighted sum
    of the layer's channels), upsampled from the layer's grid to the input with ``upsample``
    (default bilinear, ``LayerAttribution.interpolate``, align_corners=False).

    ``layer``: a module name as in ``model.named_modules()`` (``"layer4"``, ``"features.29"``); a
    model spec may supply it. ``None`` finds the last spatial feature layer (see
    :func:`adapters.layers.last_spatial_layer`); the name used is in ``diagnostics["layer"]``.

    Cost: 1 forward + 1 backward per image (the backward stops at the layer). Memory knob:
    ``batch_size`` images per pass.
    """

    memory_knobs = ("batch_size",)

    def __init__(self, layer: str | None = None, upsample: str = "bilinear", batch_size: int | None = None,
                 memory_mb: float = DEFAULT_MEMORY_MB) -> None:
        if layer is not None and not isinstance(layer, str):
            raise AttributionError(f"layer must be a module name (str) or None, got {layer!r}")
        super().__init__(layer=layer, upsample=check_upsampling(upsample),
                         batch_size=check_batch("batch_size", batch_size), memory_mb=check_memory_mb(memory_mb))

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        name, layer = resolve_layer(model, x, self.params["layer"])
        size = self.params["batch_size"] or rows_for_budget(model, x, self.params["memory_mb"], backward=True)
        self.diagnostics.update(layer=name, batch_size=size)
        gradcam = LayerGradCam(model, layer)
        maps = []
        for s in spans(len(x), size):
            cam = gradcam.attribute(x[s], target=target[s], relu_attributions=True)
            if not isinstance(cam, Tensor) or cam.dim() != 4:
                raise AttributionError(f"Grad-CAM needs a layer with a 4-D (N, C, h, w) output; {name!r} "
                                       f"gave {getattr(cam, 'shape', type(cam).__name__)}")
            maps.append(upsample(cam.detach().float(), tuple(x.shape[-2:]), self.params["upsample"]))
        return torch.cat(maps)

    def cost(self, **context: object) -> Cost:
        return Cost(forward=1, backward=1)
