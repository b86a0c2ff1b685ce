"""Grad-CAM++ (Chattopadhay et al., WACV 2018) on the Grad-CAM layer, upsampled to the input."""
from __future__ import annotations

import torch
from torch import Tensor

from ..cam_family import SinglePassCamMethod, channel_sum, spatial_sum
from ..registry import register

#: pytorch-grad-cam's stabiliser in the denominator of alpha.
EPS = 1e-6


@register("gradcam_pp")
class GradCamPlusPlusMethod(SinglePassCamMethod):
    """Grad-CAM++: ReLU(sum_k w_k A_k) with w_k = sum_ij relu(g_kij) alpha_kij and

        alpha_kij = g_kij^2 / (2 g_kij^2 + (sum_ab A_kab) g_kij^3 + 1e-6),   alpha := 0 where g == 0,

    g = d(target logit)/dA. This is the paper's eq. 19, its closed form for an exponential output
    exp(S_c): the second and third derivatives of exp(S_c) are exp(S_c) g^2 and exp(S_c) g^3, and
    the exp(S_c) factors cancel in alpha and only scale the map. Exactly pytorch-grad-cam 1.5.5's
    ``GradCAMPlusPlus.get_cam_image`` at the layer's resolution (tested on CNNs and a ViT); its
    comment says alpha is zeroed "where activations are 0" but the code (and this one) tests g,
    which changes nothing since alpha is already 0 there. The 1e-6 is pytorch-grad-cam's; the
    paper's code has none, so for layers whose gradients are ~1e-3 or smaller, alpha is damped
    (kept here for equality with the reference).

    Layer, layout, upsampling and memory knob as for ``gradcam``. Cost: 1 forward + 1 backward per
    image (the backward stops at the layer).
    """

    def coarse_map(self, activations: Tensor, gradients: Tensor | None) -> Tensor:
        assert gradients is not None
        g2 = gradients ** 2
        alpha = g2 / (2 * g2 + spatial_sum(activations) * g2 * gradients + EPS)
        alpha = torch.where(gradients != 0, alpha, torch.zeros_like(alpha))
        weights = spatial_sum(gradients.clamp(min=0) * alpha)
        return channel_sum(weights * activations)
