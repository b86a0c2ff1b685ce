"""Score-CAM (Wang et al., CVPRW 2020) on the Grad-CAM layer, batched over images x channels."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..base import AttributionError, Cost, Method
from ..budget import DEFAULT_MEMORY_MB, check_batch, check_memory_mb, rows_for_budget, spans
from ..cam import capture_layer, check_layout
from ..cam_family import check_layer, layer_channels, record_layer
from ..checks import check_int
from ..layers import resolve_layer
from ..maps import check_upsampling, upsample
from ..registry import register

#: pytorch-grad-cam's stabiliser of each channel's min-max normalisation.
EPS = 1e-8
#: Most channels a layer may have for the cost: past this a layer is not a feature map.
MAX_LAYER_CHANNELS = 2**20


@register("scorecam")
class ScoreCamMethod(Method):
    """Score-CAM: ReLU(sum_k w_k A_k) with w = softmax_k(s_k) over the layer's C channels and

        s_k = target logit of model(x * Â_k),   Â_k = minmax(up(A_k)),

    where up is bilinear upsampling to the input with align_corners=True (torch's
    ``UpsamplingBilinear2d``) and minmax rescales each upsampled channel to [0, 1] over the image,
    (a - min) / (max - min + 1e-8). Exactly pytorch-grad-cam 1.5.5's ``ScoreCAM.get_cam_image`` at the
    layer's resolution (tested), which follows the paper's Algorithm 1 (softmax over the channels'
    scores). The paper's score subtracts a baseline's score f(x_b), the same for every channel, so
    the softmax is unchanged (haofanwang/Score-CAM#6). The authors' own code weights the channels by
    the target's *probability* without a channel softmax; this method, like the reference, uses the
    raw logit and the softmax. The masked input x * Â_k is in the model's (normalised) space, where 0
    is the dataset mean.

    Batched on the device: the C masked copies of every image form rows (image, channel), run in
    forward-only passes of ``batch_size`` rows (default: what ``memory_mb`` holds); each row's mask is
    upsampled and normalised inside its chunk, so memory is O(rows x H x W), not the reference's
    N x C x 3 x H x W stack. Layer, layout and ``upsample`` (of the final map) as for ``gradcam``.

    Cost: 1 + C forwards per image, no backward; C (the layer's channels) comes from the context key
    ``layer_channels``, or from the probe when ``model`` (with ``height``, ``width``, ``channels``) is
    given.
    """

    memory_knobs = ("batch_size",)

    def __init__(self, layer: str | None = None, upsample: str = "bilinear", layout: str | None = None,
                 batch_size: int | None = None, memory_mb: float = DEFAULT_MEMORY_MB) -> None:
        super().__init__(layer=check_layer(layer), upsample=check_upsampling(upsample), layout=check_layout(layout),
                         batch_size=check_batch("batch_size", batch_size), memory_mb=check_memory_mb(memory_mb))

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        name, layer = resolve_layer(model, x, self.params["layer"])
        n, _, height, width = x.shape
        memory_mb = self.params["memory_mb"]
        captures = [capture_layer(model, name, layer, x[s], None, self.params["layout"])
                    for s in spans(n, rows_for_budget(model, x, memory_mb, backward=False))]
        activations = torch.cat([c.activations for c in captures])  # (N, C, h, w)
        channels = activations.shape[1]
        # Per row: the upsampled mask (and its normalised copy) besides the model's activations.
        rows = self.params["batch_size"] or rows_for_budget(model, x, memory_mb, backward=False,
                                                            extra_bytes_per_row=2 * 4 * height * width)
        scores = self._channel_scores(model, x, target, activations, rows)
        weights = scores.view(n, channels).softmax(dim=1)
        cam = (weights[:, :, None, None] * activations).sum(dim=1, keepdim=True).clamp(min=0)
        record_layer(self, name, captures[-1], rows)
        return upsample(cam, (height, width), self.params["upsample"])

    @torch.no_grad()
    def _channel_scores(self, model: nn.Module, x: Tensor, target: Tensor, activations: Tensor,
                        rows: int) -> Tensor:
        """Target logit of every (image, channel) masked copy, (N * C,) in image-major order."""
        n, channels = activations.shape[:2]
        flat = activations.reshape(n * channels, 1, *activations.shape[2:])
        scores = x.new_empty(n * channels, dtype=torch.float32)
        for s in spans(n * channels, rows):
            image = torch.arange(s.start, s.stop, device=x.device) // channels
            masks = F.interpolate(flat[s], size=tuple(x.shape[-2:]), mode="bilinear", align_corners=True)
            low = masks.amin(dim=(2, 3), keepdim=True)
            high = masks.amax(dim=(2, 3), keepdim=True)
            masks = (masks - low) / (high - low + EPS)
            logits = model(x[image] * masks.to(x.dtype))
            scores[s] = logits.gather(1, target[image].view(-1, 1))[:, 0].float()
        return scores

    def cost(self, **context: Any) -> Cost:
        if "layer_channels" in context:
            channels = check_int("layer_channels", context["layer_channels"], 1, MAX_LAYER_CHANNELS)
        elif "model" in context:
            missing = [key for key in ("height", "width", "channels") if key not in context]
            if missing:
                raise AttributionError(f"scorecam's cost from model= also needs {', '.join(k + '=' for k in missing)}")
            channels = layer_channels(context["model"], self.params["layer"], self.params["layout"],
                                      int(context["height"]), int(context["width"]), int(context["channels"]))
        else:
            raise AttributionError("scorecam's cost is 1 + C forwards per image, C the layer's channel count: pass "
                                   "layer_channels=C, or model= with height=, width= and channels=")
        return Cost(forward=1 + channels)
