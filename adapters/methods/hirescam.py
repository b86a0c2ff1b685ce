"""HiResCAM (Draelos and Carin 2020) on the Grad-CAM layer, upsampled to the input."""
from __future__ import annotations

from torch import Tensor

from ..cam_family import SinglePassCamMethod, channel_sum
from ..registry import register


@register("hirescam")
class HiResCamMethod(SinglePassCamMethod):
    """HiResCAM: ReLU(sum_k g_k * A_k), the element-wise product of the activations with
    g = d(target logit)/dA, without Grad-CAM's spatial averaging of g; for a network ending in global
    average pooling and one linear layer it is exactly the layer's contribution to the logit at
    each position (the paper's guarantee). Exactly pytorch-grad-cam 1.5.5's
    ``HiResCAM.get_cam_image`` at the layer's resolution (tested); no ``eigen_smooth``.

    Layer, layout, upsampling and memory knob as for ``gradcam``. Cost: 1 forward + 1 backward per
    image.
    """

    def coarse_map(self, activations: Tensor, gradients: Tensor | None) -> Tensor:
        assert gradients is not None
        return channel_sum(gradients * activations)
