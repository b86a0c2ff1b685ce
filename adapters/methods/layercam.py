"""LayerCAM (Jiang et al., IEEE TIP 2021) on the Grad-CAM layer, upsampled to the input."""
from __future__ import annotations

from torch import Tensor

from ..cam_family import SinglePassCamMethod, channel_sum
from ..registry import register


@register("layercam")
class LayerCamMethod(SinglePassCamMethod):
    """LayerCAM: ReLU(sum_k relu(g_k) * A_k), g = d(target logit)/dA: each position of each
    channel weighted by its own positive gradient (the paper's eq. 5 and 6). Exactly
    pytorch-grad-cam 1.5.5's ``LayerCAM.get_cam_image`` at the layer's resolution (tested on CNNs
    and a ViT); one layer per map (the paper fuses several layers' maps; pass ``layer`` to choose).

    Layer, layout, upsampling and memory knob as for ``gradcam``. Cost: 1 forward + 1 backward per
    image.
    """

    def coarse_map(self, activations: Tensor, gradients: Tensor | None) -> Tensor:
        assert gradients is not None
        return channel_sum(gradients.clamp(min=0) * activations)
