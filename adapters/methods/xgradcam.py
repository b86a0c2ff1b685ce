"""XGrad-CAM (Fu et al., BMVC 2020) on the Grad-CAM layer, upsampled to the input."""
from __future__ import annotations

from torch import Tensor

from ..cam_family import SinglePassCamMethod, channel_sum, spatial_sum
from ..registry import register

#: pytorch-grad-cam's stabiliser of the activation sum.
EPS = 1e-7


@register("xgradcam")
class XGradCamMethod(SinglePassCamMethod):
    """XGrad-CAM: ReLU(sum_k w_k A_k) with w_k = sum_ij g_kij A_kij / (sum_ij A_kij + 1e-7),
    g = d(target logit)/dA: each channel's gradient averaged with its own activations as weights
    (the paper's eq. 13, derived from its sensitivity and conservation axioms). Exactly
    pytorch-grad-cam 1.5.5's ``XGradCAM.get_cam_image`` at the layer's resolution (tested).
    On layers with signed activations (a transformer's layer norm) a channel's activation sum can be
    near 0 and its weight large; the paper assumes post-ReLU (non-negative) features.

    Layer, layout, upsampling and memory knob as for ``gradcam``. Cost: 1 forward + 1 backward per
    image.
    """

    def coarse_map(self, activations: Tensor, gradients: Tensor | None) -> Tensor:
        assert gradients is not None
        weights = spatial_sum(gradients * activations) / (spatial_sum(activations) + EPS)
        return channel_sum(weights * activations)
