"""What the two LIME adapters share: parameters, superpixels, per-image seeds, the kernel, the model
call, the cost."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from .base import Cost, Method
from .budget import check_batch, check_fits, check_memory_mb
from .checks import check_float, check_int
from .segmentation import Segmenter
from .seeding import check_seed, image_seeds


#: lime's default is 1000 samples and papers use up to ~10000; 100000 model passes per image is past
#: any real run (the (samples x segments) design matrix is also checked against ``memory_mb``).
MAX_SAMPLES = 100_000


class SegmentLime(Method):
    """LIME over superpixels (Ribeiro et al. 2016), as the ``lime`` package does it for images.

    Per image: superpixels from :class:`adapters.segmentation.Segmenter`; ``n_samples`` binary
    vectors z (segment kept / replaced by ``hide_value``, in the model's input space: 0 is the
    dataset mean for normalised inputs), the first one all ones; the softmax probability of the
    target for each; a ridge regression (alpha 1, intercept) weighted by
    ``sqrt(exp(-d^2 / kernel_width^2))`` with d the cosine distance between z and all-ones. The
    segment weights are painted onto their pixels. Randomness is seeded per image
    (:func:`adapters.seeding.image_seeds`).

    ``diagnostics``: ``segments`` (N, H, W), ``segment_weights`` (list of (K_i,) tensors).
    Cost: ``n_samples`` forwards per image, no backward.
    """

    stochastic = True

    def __init__(self, *, n_samples: int, kernel_width: float, hide_value: float, segmentation: str,
                 segmentation_kwargs: dict[str, Any] | None, segmentation_input: str,
                 mean: Sequence[float] | None, std: Sequence[float] | None, seed: int, memory_mb: float,
                 **knobs: int | None) -> None:
        # At least 2: the first sample is the unperturbed image, a regression needs more than that.
        n_samples = check_int("n_samples", n_samples, 2, MAX_SAMPLES, why="lime's default is 1000")
        self.segmenter = Segmenter.build(segmentation, segmentation_kwargs, segmentation_input, mean, std)
        super().__init__(n_samples=n_samples, kernel_width=check_float("kernel_width", kernel_width, 0, low_open=True),
                         hide_value=check_float("hide_value", hide_value),
                         **self.segmenter.params(), seed=check_seed(seed),
                         **{name: check_batch(name, value) for name, value in knobs.items()},
                         memory_mb=check_memory_mb(memory_mb))

    @classmethod
    def quick_params(cls) -> dict[str, Any]:
        return {"n_samples": 64, "segmentation_kwargs": {"n_segments": 16}}

    def segments(self, x: Tensor) -> tuple[list[int], Tensor]:
        """Per-image seeds (N) and superpixel labels (N, H, W) of ``x`` (N, C, H, W)."""
        seeds = image_seeds(x, self.params["seed"])
        segments = self.segmenter.segment(x, seeds)
        self.diagnostics["segments"] = segments
        # Both adapters hold the binary samples (n_samples, K) as int64 and solve a K x K regression.
        k = int(segments.amax()) + 1
        check_fits(f"lime's {self.params['n_samples']} samples x {k} superpixels", 8 * k * (self.params["n_samples"] + k),
                   self.params["memory_mb"], "lower n_samples or ask for fewer segments, or raise memory_mb")
        return seeds, segments

    def cost(self, **context: object) -> Cost:
        return Cost(forward=self.params["n_samples"])


def lime_kernel(z: Tensor, kernel_width: float) -> Tensor:
    """lime's image-kernel weight of binary samples z (S, K): ``sqrt(exp(-d^2 / w^2))`` with d the
    cosine distance to the all-ones vector, ``1 - sqrt(kept / K)`` (1 for an all-zero row, as sklearn)."""
    distance = 1 - torch.sqrt(z.float().sum(dim=-1) / z.shape[-1])
    return torch.sqrt(torch.exp(-distance**2 / kernel_width**2))


def numpy_seed(seed: int) -> int:
    """numpy's RandomState takes seeds below 2**32."""
    return seed % 2**32


def probabilities(model: nn.Module, images: Tensor) -> Tensor:
    """The model's float softmax on a batch of perturbed images (B, C, H, W), the one model call of
    both adapters, so neither gets a faster path than the other.

    Images go in channels-last (a free view of both adapters' (B, H, W, C) buffers): oneDNN's
    convolutions run ~1.4x faster on them on a CPU (measured: the zoo's small CNN and vgg_slim at
    64x64, batch 64, one thread) and give the same outputs to float precision; the model's
    parameters are not touched. Only on the CPU: on a GPU the weights' own layout (NCHW) decides,
    and that was not measured here. ``inference_mode`` skips autograd bookkeeping (~10% on small CNNs).
    """
    if images.dim() == 4:
        cpu = images.device.type == "cpu"
        images = images.contiguous(memory_format=torch.channels_last if cpu else torch.contiguous_format)
    with torch.inference_mode():
        return torch.softmax(model(images).float(), dim=1)
