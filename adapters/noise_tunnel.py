"""Captum ``NoiseTunnel`` sampling, seeded per image and batched across images: one way to do it.

Captum's NoiseTunnel draws the noise of the whole batch from the global RNG and runs one image's
samples per pass. Here every image draws its own noise from a generator seeded with its own seed
(:func:`adapters.seeding.image_seeds`), exactly as ``torch.manual_seed(seed_i)`` followed by
NoiseTunnel on that image alone would (:func:`noisy_copies`), and the noisy rows of consecutive
images share model passes of a fixed number of rows (:func:`in_passes`). SmoothGrad and its
``smoothgrad_sq`` / ``vargrad`` variants (:class:`NoiseTunnelSaliency`) and GradientShap use both.
"""
from __future__ import annotations

from typing import Callable, ClassVar, Iterable

import torch
from captum.attr import Saliency
from torch import Tensor, nn

from .base import Cost, Method
from .budget import DEFAULT_MEMORY_MB, check_batch, check_fits, check_memory_mb, rows_for_budget
from .checks import check_float, check_int
from .maps import check_reduction, reduce_channels
from .seeding import check_seed, generator, image_seeds

NT_TYPES = ("smoothgrad", "smoothgrad_sq", "vargrad")
#: The paper sees no gain past ~50 samples; 10000 is 200x that (and the noisy copies of one image
#: are drawn at once, so the count is also checked against ``memory_mb`` in ``attribute``).
MAX_SAMPLES = 10_000
#: Noise beyond 10x the image's own range drowns the image (the paper uses 0.1 to 0.2).
MAX_NOISE_LEVEL = 10.0


def image_stdevs(x: Tensor, noise_level: float) -> list[float]:
    """Per image of ``x`` (N, C, H, W): ``noise_level * (max(x_i) - min(x_i))``."""
    ranges = (x.flatten(1).amax(dim=1) - x.flatten(1).amin(dim=1)).tolist()
    return [noise_level * r for r in ranges]


def noisy_copies(x_i: Tensor, n: int, stdev: float, seed: int) -> Tensor:
    """``x_i + noise``, noise (n, C, H, W) ~ N(0, stdev^2), drawn from a generator seeded with ``seed``
    on x_i's device.

    The values equal NoiseTunnel's ``torch.normal(0, stdev_tensor)`` after ``torch.manual_seed(seed)``
    (``normal_`` draws z ~ N(0, 1) and scales it either way); drawing with a scalar std skips the
    full-size std tensor and the ``repeat_interleave`` copy of the image.
    """
    noise = torch.normal(0.0, stdev, (n,) + tuple(x_i.shape), generator=generator(seed, x_i.device),
                         device=x_i.device, dtype=x_i.dtype)
    return noise.add_(x_i.detach())


def in_passes(pieces: Iterable[tuple[int, tuple[Tensor, ...]]], size: int,
              run: Callable[[tuple[Tensor, ...], Tensor], None]) -> None:
    """Call ``run(rows, owners)`` on passes of ``size`` rows (the last one shorter) built from
    ``pieces``: (image index i, tensors whose first dimension is i's rows), consecutive images
    sharing a pass; ``owners`` (rows,) gives each row's image. A pass starts as soon as enough rows
    are there, so at most one image's rows wait in memory besides the pass."""
    waiting: list[tuple[Tensor, ...]] = []
    owners: list[Tensor] = []
    pending = 0
    for i, tensors in pieces:
        waiting.append(tensors)
        owners.append(torch.full((len(tensors[0]),), i, device=tensors[0].device, dtype=torch.long))
        pending += len(tensors[0])
        if pending >= size:
            batch = tuple(torch.cat(parts) for parts in zip(*waiting))
            owner = torch.cat(owners)
            start = 0
            while pending - start >= size:
                run(tuple(t[start:start + size] for t in batch), owner[start:start + size])
                start += size
            waiting, owners, pending = [tuple(t[start:] for t in batch)], [owner[start:]], pending - start
    if pending:
        run(tuple(torch.cat(parts) for parts in zip(*waiting)), torch.cat(owners))


class NoiseTunnelSaliency(Method):
    """Captum ``NoiseTunnel(Saliency)`` semantics (``nt_type`` of the class), batched across images
    and samples.

    Each image i gets ``n_samples`` noisy copies ``x_i + N(0, s_i^2)`` with
    ``s_i = noise_level * (max(x_i) - min(x_i))`` (the noise is a fraction of the image's own range,
    as in the paper; Captum's ``stdevs`` is absolute). The map of image i equals
    ``torch.manual_seed(seed_i); NoiseTunnel(Saliency(model)).attribute(x_i, nt_type, nt_samples=n_samples,
    stdevs=s_i, target=t_i)`` (up to float summation order), whatever the batch; Saliency's default
    ``abs=True`` holds, so the samples are |gradient|. Channels are reduced after the smoothing with
    ``reduction`` (default ``max_abs``).

    Cost: ``n_samples`` forwards + backwards per image. Memory knob: ``batch_size`` noisy rows per pass.
    """

    stochastic = True
    memory_knobs = ("batch_size",)
    nt_type: ClassVar[str] = "smoothgrad"

    def __init__(self, n_samples: int = 50, noise_level: float = 0.15, reduction: str = "max_abs", seed: int = 0,
                 batch_size: int | None = None, memory_mb: float = DEFAULT_MEMORY_MB) -> None:
        super().__init__(**self.checked(n_samples, noise_level, reduction, seed, batch_size, memory_mb))

    @staticmethod
    def checked(n_samples: int, noise_level: float, reduction: str, seed: int, batch_size: int | None,
                memory_mb: float) -> dict[str, object]:
        return {"n_samples": check_int("n_samples", n_samples, 1, MAX_SAMPLES, why="the paper uses 50"),
                "noise_level": check_float("noise_level", noise_level, 0, MAX_NOISE_LEVEL),
                "reduction": check_reduction(reduction), "seed": check_seed(seed),
                "batch_size": check_batch("batch_size", batch_size), "memory_mb": check_memory_mb(memory_mb)}

    @classmethod
    def quick_params(cls) -> dict[str, object]:
        return {"n_samples": 3}

    def smoothing(self) -> str:
        """Which of :data:`NT_TYPES` this method computes."""
        return str(self.params.get("nt_type", self.nt_type))

    def noise_stdevs(self, x: Tensor) -> list[float]:
        """The noise standard deviation of each image of ``x`` (N, C, H, W)."""
        return image_stdevs(x, self.params["noise_level"])

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        n = self.params["n_samples"]
        check_fits(f"{self.name}'s n_samples={n} noisy copies of one {tuple(x.shape[1:])} image (drawn at once)",
                   n * x[0].numel() * x.element_size(), self.params["memory_mb"], "lower n_samples or raise memory_mb")
        size = self.params["batch_size"] or rows_for_budget(model, x, self.params["memory_mb"], backward=True)
        self.diagnostics["batch_size"] = size
        saliency = Saliency(model)
        squares = self.smoothing() != "smoothgrad"
        total = torch.zeros(x.shape, device=x.device, dtype=torch.float32)
        total_sq = torch.zeros_like(total) if squares else None

        def run(rows: tuple[Tensor, ...], owner: Tensor) -> None:
            grads = saliency.attribute(rows[0].requires_grad_(), target=target[owner], abs=True).float()
            total.index_add_(0, owner, grads)
            if total_sq is not None:
                total_sq.index_add_(0, owner, grads * grads)

        pieces = ((i, (noisy_copies(x[i], n, stdev, seed),)) for i, (seed, stdev)
                  in enumerate(zip(image_seeds(x, self.params["seed"]), self.noise_stdevs(x))))
        in_passes(pieces, size, run)
        mean = total / n
        if self.smoothing() == "smoothgrad":
            smoothed = mean
        elif self.smoothing() == "smoothgrad_sq":
            smoothed = total_sq / n
        else:
            smoothed = total_sq / n - mean**2
        return reduce_channels(smoothed, self.params["reduction"])

    def cost(self, **context: object) -> Cost:
        return Cost(forward=self.params["n_samples"], backward=self.params["n_samples"])
