"""Guided Grad-CAM (Selvaraju et al. 2017): Guided Backprop times the upsampled Grad-CAM map."""
from __future__ import annotations

import warnings

import torch
from captum.attr import GuidedGradCam
from torch import Tensor, nn

from ..base import AttributionError, Cost, Method
from ..errors import NotApplicable
from ..budget import DEFAULT_MEMORY_MB, check_batch, check_memory_mb, rows_for_budget, spans
from ..layers import resolve_layer
from ..maps import check_reduction, check_upsampling, reduce_channels
from ..probe import probe
from ..rectifiers import RectifiedGuidedBackprop, check_guided_rectifiers
from ..registry import register
from ..tokens import layer_layout


@register("guided_gradcam")
class GuidedGradCamMethod(Method):
    """Captum ``GuidedGradCam(model, layer).attribute(x, target, interpolate_mode=upsample)``: Captum's
    ``GuidedBackprop`` map (N, C, H, W) times ``LayerGradCam(relu_attributions=True)`` at ``layer``,
    upsampled to the input with ``upsample`` (default ``"nearest"``, Captum's; our ``gradcam``
    defaults to bilinear); no normalisation. Channels reduced with ``reduction`` (default
    ``max_abs``, like guided backprop: Grad-CAM is >= 0, so it scales each pixel's max |GBP|).

    ``layer``: a module name, or None for the layer our ``gradcam`` takes on a CNN
    (:func:`adapters.layers.resolve_layer`: the last spatial layer). CNN layers only: on a
    transformer (the automatic layer is then a token layer) or with a layer whose output is not
    (N, C, h, w), it refuses with an AttributionError -- Captum's LayerGradCam pools over every
    dimension after the first, which on tokens is not Grad-CAM, and a ViT has no ``nn.ReLU`` to
    guide (GELU), so the "guided" part would be a plain gradient; use ``gradcam``, which handles
    token layers. Models whose rectifiers are not ``nn.ReLU`` modules are refused as for
    ``deconvolution`` (:func:`adapters.model_support.check_rectified_relus`).

    Cost: 2 forwards + 2 backwards per image (Grad-CAM's, then Guided Backprop's). Memory knob:
    ``batch_size`` images per pass.
    """

    memory_knobs = ("batch_size",)

    def __init__(self, layer: str | None = None, upsample: str = "nearest", reduction: str = "max_abs",
                 batch_size: int | None = None, memory_mb: float = DEFAULT_MEMORY_MB) -> None:
        if layer is not None and not isinstance(layer, str):
            raise AttributionError(f"layer must be a module name (str) or None, got {layer!r}")
        super().__init__(layer=layer, upsample=check_upsampling(upsample), reduction=check_reduction(reduction),
                         batch_size=check_batch("batch_size", batch_size), memory_mb=check_memory_mb(memory_mb))

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        name, layer = resolve_layer(model, x, self.params["layer"])
        self._check_layer(model, x, name)
        self.diagnostics.update(layer=name, rectifiers=check_guided_rectifiers(model, x, self.name))
        size = self.params["batch_size"] or rows_for_budget(model, x, self.params["memory_mb"], backward=True)
        self.diagnostics["batch_size"] = size
        method = GuidedGradCam(model, layer)
        method.guided_backprop = RectifiedGuidedBackprop(model)  # Captum's, guiding ReLU6 as well
        maps = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for s in spans(len(x), size):
                attributions = method.attribute(x[s].detach().requires_grad_(), target=target[s],
                                                interpolate_mode=self.params["upsample"])
                if attributions.shape != x[s].shape:
                    # Captum warns and returns an empty tensor when the upsampling fails.
                    detail = "; ".join(str(w.message) for w in caught if "interpolate" in str(w.message))
                    raise AttributionError(f"guided_gradcam: Captum's GuidedGradCam returned shape "
                                           f"{tuple(attributions.shape)} for layer {name!r}: {detail or 'no map'}")
                maps.append(reduce_channels(attributions.detach(), self.params["reduction"]))
        return torch.cat(maps)

    def _check_layer(self, model: nn.Module, x: Tensor, name: str) -> None:
        call = next((c for c in probe(model, x).order if c.name == name), None)
        if call is None:
            raise AttributionError(f"guided_gradcam: layer {name!r} did not run in the model's forward")
        if call.calls > 1:
            raise AttributionError(f"guided_gradcam: layer {name!r} runs {call.calls} times per forward; pick a layer "
                                   "that is called once")
        shape = call.output_shape
        if shape is None or layer_layout(shape, *x.shape[-2:]) != "nchw":
            kind = "tokens of a transformer" if shape is not None and len(shape) == 3 else f"shape {shape}"
            raise NotApplicable(
                f"guided_gradcam needs a CNN layer with a (N, C, h, w) output; layer {name!r} gives {kind}. Captum's "
                "GuidedGradCam is not applied to token layers (its Grad-CAM would pool over tokens and features, and "
                "a transformer has no nn.ReLU for guided backprop to rectify): use gradcam, which handles token layers")

    def cost(self, **context: object) -> Cost:
        return Cost(forward=2, backward=2)
