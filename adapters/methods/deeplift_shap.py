"""DeepLiftShap (Lundberg and Lee 2017): DeepLIFT averaged over a distribution of baselines."""
from __future__ import annotations

import warnings
from typing import Any

import torch
from captum.attr import DeepLift
from torch import Tensor, nn

from ..base import Cost, Method
from ..baselines import BaselineDistribution
from ..budget import DEFAULT_MEMORY_MB, check_batch, check_fits, check_memory_mb, rows_for_budget
from ..maps import check_reduction, reduce_channels
from ..module_attributes import attributes_restored
from ..model_support import check_rescale_rule
from ..noise_tunnel import in_passes
from ..registry import register
from ..seeding import check_seed, image_seeds


@register("deeplift_shap")
class DeepLiftShapMethod(Method):
    """Captum ``DeepLiftShap``: DeepLIFT (rescale rule, multiplied by inputs) of each image against
    each of its ``n_baselines`` baselines, averaged. The baselines come from the seeded distribution
    ``baselines`` (:mod:`adapters.baselines`; default ``"gaussian"``: N(0, ``baseline_std``^2) noise
    images, i.e. images with the dataset's mean and std for normalised inputs; ``"uniform"``,
    ``"blur"``, ``"zero"``), drawn per image from its own seed. Channels reduced with ``reduction``
    (default ``sum``: signed, the map sums to the logit's change from the average baseline).

    The map of image i equals ``DeepLiftShap(model).attribute(x_i, baselines=B_i, target=t_i)`` with
    B_i the image's baselines (tested). Captum pairs every input of a call with every baseline, so
    it is not called on the batch: the (image, baseline) pairs of all images share passes of
    ``internal_batch_size`` pairs through the DeepLift that ``DeepLiftShap`` runs on its pairs, and
    each image's pairs are averaged. The models refused are DeepLift's
    (:func:`adapters.model_support.check_rescale_rule`).

    Cost: 2 forwards + 2 backwards per (image, baseline) pair, 2 * n_baselines per image. Memory
    knob: ``internal_batch_size`` pairs (2 rows each) per pass.
    """

    stochastic = True
    memory_knobs = ("internal_batch_size",)

    def __init__(self, baselines: str = "gaussian", n_baselines: int = 16, baseline_std: float = 1.0,
                 baseline_blur: float = 0.1, reduction: str = "sum", seed: int = 0,
                 internal_batch_size: int | None = None, memory_mb: float = DEFAULT_MEMORY_MB) -> None:
        # Captum's DeepLiftShap asserts more than one baseline (one is plain DeepLift).
        self.distribution = BaselineDistribution.build(baselines, n_baselines, baseline_std, baseline_blur, minimum=2)
        super().__init__(**self.distribution.params(), reduction=check_reduction(reduction), seed=check_seed(seed),
                         internal_batch_size=check_batch("internal_batch_size", internal_batch_size),
                         memory_mb=check_memory_mb(memory_mb))

    @classmethod
    def quick_params(cls) -> dict[str, Any]:
        return {"n_baselines": 3}

    def baselines_of(self, x: Tensor) -> list[Tensor]:
        """The baselines (n_baselines, C, H, W) of each image of ``x`` (N, C, H, W)."""
        return [self.distribution.draw(x_i, seed) for x_i, seed in zip(x, image_seeds(x, self.params["seed"]))]

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        self.diagnostics["rescaled_modules"] = check_rescale_rule(model, x, self.name)
        n = self.distribution.n
        what = f"deeplift_shap's {n} baselines of one {tuple(x.shape[1:])} image"
        check_fits(what, n * x[0].numel() * x.element_size(),
                   self.params["memory_mb"], "lower n_baselines or raise memory_mb")
        pairs = self.params["internal_batch_size"] or max(
            1, rows_for_budget(model, x, self.params["memory_mb"], backward=True) // 2)
        self.diagnostics["internal_batch_size"] = pairs
        deeplift = DeepLift(model)
        total = torch.zeros(x.shape, device=x.device, dtype=torch.float32)

        def run(rows: tuple[Tensor, ...], owner: Tensor) -> None:
            inputs, baselines = (t.detach().requires_grad_() for t in rows)  # as DeepLiftShap's expansion
            attributions = deeplift.attribute(inputs, baselines=baselines, target=target[owner])
            total.index_add_(0, owner, attributions.detach().float())

        seeds = image_seeds(x, self.params["seed"])
        pieces = ((i, (x[i].detach().expand(n, *x.shape[1:]), self.distribution.draw(x[i], seed)))
                  for i, seed in enumerate(seeds))
        with warnings.catch_warnings(), attributes_restored(model):
            warnings.filterwarnings("ignore", message="Setting forward, backward hooks and attributes")
            in_passes(pieces, pairs, run)
        return reduce_channels(total / n, self.params["reduction"])

    def cost(self, **context: object) -> Cost:
        return Cost(forward=2 * self.distribution.n, backward=2 * self.distribution.n)
