"""Shapley value sampling (Castro et al. 2009) on superpixels."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from captum.attr import ShapleyValueSampling
from torch import Tensor, nn

from ..base import Cost
from ..budget import DEFAULT_MEMORY_MB
from ..checks import check_int
from ..registry import register
from ..segment_attribution import SegmentPerturbation, seeded_global_rng

#: Captum's default is 25 permutations; each costs one forward per superpixel.
MAX_PERMUTATIONS = 10_000


@register("shapley_sampling")
class ShapleySamplingMethod(SegmentPerturbation):
    """Captum ``ShapleyValueSampling`` with LIME's superpixels as the feature mask
    (:mod:`adapters.segment_attribution`): ``n_samples`` random orders of the superpixels; along
    each, starting from the image with every superpixel at ``hide_value``, superpixels are put back
    one at a time and each gets the change of the target logit it causes; a superpixel's value is
    the mean change over the orders (painted onto its pixels). The values sum to
    ``logit_t(x) - logit_t(all hidden)``.

    The orders come from ``torch.randperm`` on torch's global CPU generator, which Captum uses:
    each image runs alone under that generator seeded with the image's own seed and the caller's
    generator state is given back afterwards (:func:`adapters.segment_attribution.seeded_global_rng`),
    so the map of image i equals ``torch.manual_seed(seed_i); ShapleyValueSampling(model).attribute(x_i,
    baselines=hide_value, target=t_i, feature_mask=segments_i, n_samples=n_samples)`` (tested).

    Cost: 1 + n_samples * K forwards per image (K superpixels). Memory knob:
    ``perturbations_per_eval`` superpixels of one order per pass (default: all K if the budget holds them).
    """

    stochastic = True

    def __init__(self, n_samples: int = 25, hide_value: float = 0.0, segmentation: str = "slic",
                 segmentation_kwargs: dict[str, Any] | None = None, segmentation_input: str = "minmax",
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None, seed: int = 0,
                 perturbations_per_eval: int | None = None, memory_mb: float = DEFAULT_MEMORY_MB) -> None:
        super().__init__(n_samples=check_int("n_samples", n_samples, 1, MAX_PERMUTATIONS, why="Captum's default is 25"),
                         hide_value=hide_value, segmentation=segmentation, segmentation_kwargs=segmentation_kwargs,
                         segmentation_input=segmentation_input, mean=mean, std=std, seed=seed,
                         perturbations_per_eval=perturbations_per_eval, memory_mb=memory_mb)

    @classmethod
    def quick_params(cls) -> dict[str, Any]:
        return {**super().quick_params(), "n_samples": 2}

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        seeds, segments = self.segments(x)
        rows = self.rows(model, x)
        shapley = ShapleyValueSampling(model)
        maps, used = [], []
        for i, seed in enumerate(seeds):
            k = int(segments[i].max()) + 1
            ppe = self.params["perturbations_per_eval"] or max(1, min(k, rows))
            used.append(ppe)
            with seeded_global_rng(seed):
                maps.append(shapley.attribute(x[i:i + 1], baselines=self.params["hide_value"], target=target[i:i + 1],
                                              feature_mask=segments[i][None, None], n_samples=self.params["n_samples"],
                                              perturbations_per_eval=ppe))
        self.diagnostics["perturbations_per_eval"] = used
        return self.paint(torch.cat(maps), segments)

    def cost(self, **context: object) -> Cost:
        return Cost(forward=1 + self.params["n_samples"] * self.n_segments(context))
