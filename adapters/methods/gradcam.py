"""Grad-CAM (Selvaraju et al. 2017) on a CNN's last spatial layer or a transformer's token layer,
upsampled to the input."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..base import AttributionError, Cost, Method
from ..budget import DEFAULT_MEMORY_MB, check_batch, check_memory_mb, rows_for_budget, spans
from ..cam import capture_layer, check_layout
from ..layers import resolve_layer
from ..maps import check_upsampling, upsample
from ..registry import register


@register("gradcam")
class GradCamMethod(Method):
    """Grad-CAM: ReLU(sum_c w_c A_c) with w_c the spatial mean of d(target logit)/dA_c, one channel,
    upsampled from the layer's grid to the input with ``upsample`` (default bilinear, Captum's
    ``LayerAttribution.interpolate``, align_corners=False). On a CNN layer this is exactly Captum's
    ``LayerGradCam(relu_attributions=True)`` (tested); on a transformer the layer's tokens are put on
    the patch grid first (class and other prefix tokens dropped; Swin's channels-last grid
    permuted), which is pytorch-grad-cam's ``reshape_transform`` (tested against it).

    ``layer``: a module name as in ``model.named_modules()`` (``"layer4"``, ``"features.29"``,
    ``"encoder.layers.encoder_layer_11.ln_1"``); a model spec may supply it. ``None`` finds it
    (:func:`adapters.layers.auto_layer`: the last spatial layer of a CNN, the last block's first
    layer norm of a transformer). ``layout``: how the layer's output is laid out (``"nchw"``,
    ``"nhwc"``, ``"tokens"``); None detects it from the shapes. The layer and layout used are in
    ``diagnostics``.

    Cost: 1 forward + 1 backward per image (the backward stops at the layer). Memory knob:
    ``batch_size`` images per pass.
    """

    memory_knobs = ("batch_size",)

    def __init__(self, layer: str | None = None, upsample: str = "bilinear", layout: str | None = None,
                 batch_size: int | None = None, memory_mb: float = DEFAULT_MEMORY_MB) -> None:
        if layer is not None and not isinstance(layer, str):
            raise AttributionError(f"layer must be a module name (str) or None, got {layer!r}")
        super().__init__(layer=layer, upsample=check_upsampling(upsample), layout=check_layout(layout),
                         batch_size=check_batch("batch_size", batch_size), memory_mb=check_memory_mb(memory_mb))

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        name, layer = resolve_layer(model, x, self.params["layer"])
        size = self.params["batch_size"] or rows_for_budget(model, x, self.params["memory_mb"], backward=True)
        maps = []
        for s in spans(len(x), size):
            captured = capture_layer(model, name, layer, x[s], target[s], self.params["layout"])
            weights = captured.gradients.mean(dim=(2, 3), keepdim=True)
            cam = (weights * captured.activations).sum(dim=1, keepdim=True).clamp(min=0)
            maps.append(upsample(cam, tuple(x.shape[-2:]), self.params["upsample"]))
        self.diagnostics.update(layer=name, layout=captured.layout, grid=tuple(captured.activations.shape[-2:]),
                                batch_size=size)
        return torch.cat(maps)

    def cost(self, **context: object) -> Cost:
        return Cost(forward=1, backward=1)
