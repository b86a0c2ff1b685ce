"""Feature ablation on superpixels: the drop of the target logit when one superpixel is hidden."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from captum.attr import FeatureAblation
from torch import Tensor, nn

from ..base import Cost
from ..budget import DEFAULT_MEMORY_MB, spans
from ..registry import register
from ..segment_attribution import SegmentPerturbation


@register("feature_ablation")
class FeatureAblationMethod(SegmentPerturbation):
    """Captum ``FeatureAblation`` with LIME's superpixels as the feature mask
    (:mod:`adapters.segment_attribution`): each superpixel's value is
    ``logit_t(x) - logit_t(x with the superpixel set to hide_value)``, painted onto its pixels.
    Deterministic; ``seed`` only seeds quickshift's segmentation (SLIC, the default, needs none),
    as for ``lime``.

    Captum takes one feature mask per image ((N, 1, H, W)) and hides superpixel k of every image in
    the same pass, so images are batched: superpixel k of one image never touches another image's
    rows. Cost: 1 + K forwards per image, K its number of superpixels (in a batch, K is the largest
    count of the images in the same call). Memory knob: ``perturbations_per_eval`` superpixels per
    image in one pass (default: as many rows as ``memory_mb`` holds).
    """

    def __init__(self, hide_value: float = 0.0, segmentation: str = "slic",
                 segmentation_kwargs: dict[str, Any] | None = None, segmentation_input: str = "minmax",
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None, seed: int = 0,
                 perturbations_per_eval: int | None = None, memory_mb: float = DEFAULT_MEMORY_MB) -> None:
        super().__init__(hide_value=hide_value, segmentation=segmentation, segmentation_kwargs=segmentation_kwargs,
                         segmentation_input=segmentation_input, mean=mean, std=std, seed=seed,
                         perturbations_per_eval=perturbations_per_eval, memory_mb=memory_mb)

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        _, segments = self.segments(x)
        k = int(segments.amax()) + 1
        rows = self.rows(model, x)
        ppe = self.params["perturbations_per_eval"] or max(1, min(k, rows // min(len(x), rows)))
        images = max(1, min(len(x), rows // ppe))
        self.diagnostics.update(perturbations_per_eval=ppe, images_per_call=images)
        ablation = FeatureAblation(model)
        maps = []
        for s in spans(len(x), images):
            attributions = ablation.attribute(x[s], baselines=self.params["hide_value"], target=target[s],
                                              feature_mask=segments[s].unsqueeze(1), perturbations_per_eval=ppe)
            maps.append(attributions)
        return self.paint(torch.cat(maps), segments)

    def cost(self, **context: object) -> Cost:
        return Cost(forward=1 + self.n_segments(context))
