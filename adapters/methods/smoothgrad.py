"""SmoothGrad (Smilkov et al. 2017): saliency averaged over noisy copies of the input."""
from __future__ import annotations

from typing import Iterator

import torch
from captum.attr import Saliency
from torch import Tensor, nn

from ..base import Cost, Method
from ..budget import DEFAULT_MEMORY_MB, check_batch, check_fits, check_memory_mb, rows_for_budget
from ..checks import check_choice, check_float, check_int
from ..maps import check_reduction, reduce_channels
from ..registry import register
from ..seeding import check_seed, generator, image_seeds

NT_TYPES = ("smoothgrad", "smoothgrad_sq", "vargrad")
#: The paper sees no gain past ~50 samples; 10000 is 200x that (and the noisy copies of one image
#: are drawn at once, so the count is also checked against ``memory_mb`` in ``attribute``).
MAX_SAMPLES = 10_000
#: Noise beyond 10x the image's own range drowns the image (the paper uses 0.1 to 0.2).
MAX_NOISE_LEVEL = 10.0


@register("smoothgrad")
class SmoothGradMethod(Method):
    """Captum ``NoiseTunnel(Saliency)`` semantics, batched across images and samples.

    Each image i gets ``n_samples`` noisy copies ``x_i + N(0, s_i^2)`` with
    ``s_i = noise_level * (max(x_i) - min(x_i))`` (the noise is a fraction of the image's own range,
    as in the paper). The noise comes from a generator seeded per image
    (:func:`adapters.seeding.image_seeds`) and is drawn exactly as NoiseTunnel draws it, so the map
    of image i equals ``torch.manual_seed(seed_i); NoiseTunnel(Saliency(model)).attribute(x_i, nt_type,
    nt_samples=n_samples, stdevs=s_i, target=t_i)`` (up to float summation order), whatever the batch.
    NoiseTunnel itself is not called because it draws the whole batch from the global RNG and runs
    one image's samples per pass; here the noisy rows of all images share passes of ``batch_size``
    rows. Channels are reduced after averaging with ``reduction`` (default ``max_abs``).

    Cost: ``n_samples`` forwards + backwards per image. Memory knob: ``batch_size`` noisy rows per pass.
    """

    stochastic = True
    memory_knobs = ("batch_size",)

    def __init__(self, n_samples: int = 50, noise_level: float = 0.15, nt_type: str = "smoothgrad",
                 reduction: str = "max_abs", seed: int = 0, batch_size: int | None = None,
                 memory_mb: float = DEFAULT_MEMORY_MB) -> None:
        super().__init__(n_samples=check_int("n_samples", n_samples, 1, MAX_SAMPLES, why="the paper uses 50"),
                         noise_level=check_float("noise_level", noise_level, 0, MAX_NOISE_LEVEL),
                         nt_type=check_choice("nt_type", nt_type, NT_TYPES),
                         reduction=check_reduction(reduction), seed=check_seed(seed),
                         batch_size=check_batch("batch_size", batch_size), memory_mb=check_memory_mb(memory_mb))

    @classmethod
    def quick_params(cls) -> dict[str, object]:
        return {"n_samples": 3}

    def noise_stdevs(self, x: Tensor) -> list[float]:
        """The noise standard deviation of each image of ``x`` (N, C, H, W)."""
        ranges = (x.flatten(1).amax(dim=1) - x.flatten(1).amin(dim=1)).tolist()
        return [self.params["noise_level"] * r for r in ranges]

    def _noisy_copies(self, x: Tensor) -> Iterator[tuple[int, Tensor]]:
        """(i, x_i + noise_i), noise_i (n_samples, C, H, W) drawn from image i's generator.

        The values equal NoiseTunnel's ``torch.normal(0, stdev_tensor)`` under the same seed
        (``normal_`` draws z ~ N(0, 1) and scales it either way); drawing with a scalar std skips the
        full-size std tensor and the ``repeat_interleave`` copy of the image.
        """
        shape = (self.params["n_samples"],) + tuple(x.shape[1:])
        for i, (seed, stdev) in enumerate(zip(image_seeds(x, self.params["seed"]), self.noise_stdevs(x))):
            noise = torch.normal(0.0, stdev, shape, generator=generator(seed, x.device), device=x.device,
                                 dtype=x.dtype)
            yield i, noise.add_(x[i].detach())

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        n_samples = self.params["n_samples"]
        check_fits(f"smoothgrad's n_samples={n_samples} noisy copies of one {tuple(x.shape[1:])} image (drawn at once)",
                   n_samples * x[0].numel() * x.element_size(), self.params["memory_mb"],
                   "lower n_samples or raise memory_mb")
        size = self.params["batch_size"] or rows_for_budget(model, x, self.params["memory_mb"], backward=True)
        self.diagnostics["batch_size"] = size
        saliency = Saliency(model)
        squares = self.params["nt_type"] != "smoothgrad"
        total = torch.zeros(x.shape, device=x.device, dtype=torch.float32)
        total_sq = torch.zeros_like(total) if squares else None

        def run(batch: Tensor, owner: Tensor) -> None:
            grads = saliency.attribute(batch.requires_grad_(), target=target[owner], abs=True).float()
            total.index_add_(0, owner, grads)
            if total_sq is not None:
                total_sq.index_add_(0, owner, grads * grads)

        # Noisy rows of consecutive images share passes of `size` rows; a pass starts as soon as
        # enough rows are there, so at most one image's copies wait in memory besides the pass.
        rows: list[Tensor] = []
        owners: list[Tensor] = []
        pending = 0
        for i, noisy in self._noisy_copies(x):
            rows.append(noisy)
            owners.append(torch.full((len(noisy),), i, device=x.device, dtype=torch.long))
            pending += len(noisy)
            if pending >= size:
                batch, owner = torch.cat(rows), torch.cat(owners)
                start = 0
                while pending - start >= size:
                    run(batch[start:start + size], owner[start:start + size])
                    start += size
                rows, owners, pending = [batch[start:]], [owner[start:]], pending - start
        if pending:
            run(torch.cat(rows), torch.cat(owners))

        n = self.params["n_samples"]
        mean = total / n
        if self.params["nt_type"] == "smoothgrad":
            smoothed = mean
        elif self.params["nt_type"] == "smoothgrad_sq":
            smoothed = total_sq / n
        else:
            smoothed = total_sq / n - mean**2
        return reduce_channels(smoothed, self.params["reduction"])

    def cost(self, **context: object) -> Cost:
        return Cost(forward=self.params["n_samples"], backward=self.params["n_samples"])
