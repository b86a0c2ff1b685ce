"""Kernel SHAP (Lundberg and Lee 2017) on superpixels."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from captum.attr import KernelShap
from torch import Tensor, nn

from ..base import Cost
from ..budget import DEFAULT_MEMORY_MB
from ..checks import check_int
from ..lime_common import MAX_SAMPLES
from ..modality import is_token_model
from ..registry import register
from ..segment_attribution import SegmentPerturbation, seeded_global_rng
from ..token_perturbation import kernel_shap_maps


@register("kernel_shap")
class KernelShapMethod(SegmentPerturbation):
    """Captum ``KernelShap`` with LIME's superpixels as the feature mask
    (:mod:`adapters.segment_attribution`): ``n_samples`` coalitions of superpixels -- all kept and all
    hidden first (weight 1e6), then a size k drawn with probability proportional to
    (K - 1) / (k (K - k)) and a uniformly random subset of that size (weight 1) -- the target logit
    of each (hidden superpixels at ``hide_value``), and Captum's ``SkLearnLinearRegression`` of the
    logits on the coalitions; a superpixel's value is its coefficient, painted onto its pixels.
    Default 512 coalitions (Captum's 25 is fewer than the 50 superpixels LIME's default asks for; the
    ``shap`` package uses 2K + 2048).

    The coalitions come from torch's global CPU generator, which Captum uses: each image runs
    alone under that generator seeded with the image's own seed, the caller's state given back
    afterwards (:func:`adapters.segment_attribution.seeded_global_rng`), so the map of image i equals
    ``torch.manual_seed(seed_i); KernelShap(model).attribute(x_i, baselines=hide_value, target=t_i,
    feature_mask=segments_i, n_samples=n_samples)`` (tested).

    Cost: ``n_samples`` forwards per image. Memory knob: ``perturbations_per_eval`` coalitions per
    pass (default: as many as the budget holds, at most ``n_samples``). Captum builds each perturbed
    image in a Python loop, one small tensor op chain per coalition.

    Text: each token is a feature, hidden as [MASK] (:mod:`adapters.token_perturbation`); the
    segmentation parameters are not used.
    """

    stochastic = True
    modalities = ("image", "text")

    def __init__(self, n_samples: int = 512, hide_value: float = 0.0, segmentation: str = "slic",
                 segmentation_kwargs: dict[str, Any] | None = None, segmentation_input: str = "minmax",
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None, seed: int = 0,
                 perturbations_per_eval: int | None = None, memory_mb: float = DEFAULT_MEMORY_MB) -> None:
        # At least 2: the all-kept and all-hidden coalitions come first.
        n_samples = check_int("n_samples", n_samples, 2, MAX_SAMPLES, why="the shap package uses 2K + 2048")
        super().__init__(n_samples=n_samples,
                         hide_value=hide_value, segmentation=segmentation, segmentation_kwargs=segmentation_kwargs,
                         segmentation_input=segmentation_input, mean=mean, std=std, seed=seed,
                         perturbations_per_eval=perturbations_per_eval, memory_mb=memory_mb)

    @classmethod
    def quick_params(cls) -> dict[str, Any]:
        return {**super().quick_params(), "n_samples": 32}

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        if is_token_model(model):
            return kernel_shap_maps(self, model, x, target)
        seeds, segments = self.segments(x)
        n = self.params["n_samples"]
        ppe = self.params["perturbations_per_eval"] or max(1, min(n, self.rows(model, x)))
        self.diagnostics["perturbations_per_eval"] = ppe
        maps = []
        for i, seed in enumerate(seeds):
            with seeded_global_rng(seed):
                # A fresh explainer per image: Captum keeps the fitted regression on it.
                maps.append(KernelShap(model).attribute(x[i:i + 1], baselines=self.params["hide_value"],
                                                        target=target[i:i + 1], feature_mask=segments[i][None, None],
                                                        n_samples=n, perturbations_per_eval=ppe))
        return self.paint(torch.cat(maps), segments)

    def cost(self, **context: object) -> Cost:
        return Cost(forward=self.params["n_samples"])
