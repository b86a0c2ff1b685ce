"""GradientShap / expected gradients (Lundberg and Lee 2017; Erion et al. 2019)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from captum.attr import Saliency
from torch import Tensor, nn

from ..base import Cost, Method
from ..baselines import BaselineDistribution
from ..budget import DEFAULT_MEMORY_MB, check_batch, check_fits, check_memory_mb, rows_for_budget
from ..checks import check_float, check_int
from ..lime_common import numpy_seed
from ..maps import check_reduction, reduce_channels
from ..noise_tunnel import MAX_NOISE_LEVEL, MAX_SAMPLES, image_stdevs, in_passes, noisy_copies
from ..registry import register
from ..seeding import check_seed, image_seeds


@register("gradient_shap")
class GradientShapMethod(Method):
    """Captum ``GradientShap`` semantics (expected gradients), batched across images and samples.

    For each of ``n_samples`` samples of image i: a baseline b drawn with replacement from the
    image's ``n_baselines`` baselines, SmoothGrad noise e ~ N(0, s_i^2) with
    ``s_i = noise_level * (max(x_i) - min(x_i))`` (default 0: Captum's ``stdevs=0``), a point
    u ~ U(0, 1) on the path, and ``(x_i + e - b) * grad f(b + u (x_i + e - b))``; the map is the mean
    over the samples, channels reduced with ``reduction`` (default ``sum``: signed, in expectation
    the map sums to f(x) minus the mean of f over the baselines).

    Baselines: the seeded distribution ``baselines`` (:mod:`adapters.baselines`; default
    ``"gaussian"``: N(0, ``baseline_std``^2) noise images, the dataset's mean and std for normalised
    inputs; ``"uniform"``, ``"blur"``, ``"zero"`` -- the last is integrated gradients with random
    path points). Captum draws the sample indices and the path points from numpy's global RNG and the
    noise from torch's: here each image takes them, in Captum's order, from a numpy RandomState and a
    torch generator seeded with its own seed, so that the map of image i equals
    ``torch.manual_seed(seed_i); np.random.seed(seed_i % 2**32); GradientShap(model).attribute(x_i,
    baselines=B_i, n_samples=n_samples, stdevs=s_i, target=t_i)`` (tested), whatever the batch. The
    rows of all images share passes of ``batch_size`` rows (Captum runs one image's samples per pass).

    Cost: ``n_samples`` forwards + backwards per image. Memory knob: ``batch_size`` rows per pass.
    """

    stochastic = True
    memory_knobs = ("batch_size",)

    def __init__(self, n_samples: int = 50, baselines: str = "gaussian", n_baselines: int = 16,
                 baseline_std: float = 1.0, baseline_blur: float = 0.1, noise_level: float = 0.0,
                 reduction: str = "sum", seed: int = 0, batch_size: int | None = None,
                 memory_mb: float = DEFAULT_MEMORY_MB) -> None:
        self.distribution = BaselineDistribution.build(baselines, n_baselines, baseline_std, baseline_blur)
        super().__init__(n_samples=check_int("n_samples", n_samples, 1, MAX_SAMPLES, why="Captum's default is 5"),
                         **self.distribution.params(),
                         noise_level=check_float("noise_level", noise_level, 0, MAX_NOISE_LEVEL),
                         reduction=check_reduction(reduction), seed=check_seed(seed),
                         batch_size=check_batch("batch_size", batch_size), memory_mb=check_memory_mb(memory_mb))

    @classmethod
    def quick_params(cls) -> dict[str, Any]:
        return {"n_samples": 4, "n_baselines": 3}

    def baselines_of(self, x: Tensor) -> list[Tensor]:
        """The baselines (n_baselines, C, H, W) of each image of ``x`` (N, C, H, W)."""
        return [self.distribution.draw(x_i, seed) for x_i, seed in zip(x, image_seeds(x, self.params["seed"]))]

    def noise_stdevs(self, x: Tensor) -> list[float]:
        """The SmoothGrad noise standard deviation of each image of ``x``."""
        return image_stdevs(x, self.params["noise_level"])

    def _samples(self, x: Tensor, i: int, seed: int, stdev: float) -> tuple[Tensor, Tensor]:
        """Image i's ``n_samples`` path points and their ``(x_i + e - b)`` multipliers, drawn as Captum draws them."""
        n = self.params["n_samples"]
        numpy_rng = np.random.RandomState(numpy_seed(seed))
        baselines = self.distribution.draw(x[i], seed)
        chosen = baselines[numpy_rng.choice(len(baselines), n).tolist()]  # NoiseTunnel's baseline draw
        noisy = noisy_copies(x[i], n, stdev, seed)  # then NoiseTunnel's noise
        # then InputBaselineXGradient's path points, as (n, 1, 1, 1) in the input's dtype
        u = torch.tensor(numpy_rng.uniform(0.0, 1.0, n), device=x.device, dtype=x.dtype).view(n, *[1] * (x.dim() - 1))
        return u * noisy + (1.0 - u) * chosen, noisy - chosen

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        n = self.params["n_samples"]
        check_fits(f"gradient_shap's n_samples={n} path points of one {tuple(x.shape[1:])} image (drawn at once)",
                   n * x[0].numel() * x.element_size(), self.params["memory_mb"], "lower n_samples or raise memory_mb")
        size = self.params["batch_size"] or rows_for_budget(model, x, self.params["memory_mb"], backward=True)
        self.diagnostics["batch_size"] = size
        saliency = Saliency(model)
        total = torch.zeros(x.shape, device=x.device, dtype=torch.float32)

        def run(rows: tuple[Tensor, ...], owner: Tensor) -> None:
            points, multipliers = rows
            grads = saliency.attribute(points.detach().requires_grad_(), target=target[owner], abs=False)
            total.index_add_(0, owner, (multipliers * grads).float())

        pieces = ((i, self._samples(x, i, seed, stdev)) for i, (seed, stdev)
                  in enumerate(zip(image_seeds(x, self.params["seed"]), self.noise_stdevs(x))))
        in_passes(pieces, size, run)
        return reduce_channels(total / n, self.params["reduction"])

    def cost(self, **context: object) -> Cost:
        return Cost(forward=self.params["n_samples"], backward=self.params["n_samples"])
