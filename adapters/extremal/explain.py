"""The public entry point: extremal masks for many images x targets x areas in one batched run."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import Tensor, nn

from ..base import AttributionError, check_inputs
from ..budget import DEFAULT_MEMORY_MB, check_batch, check_memory_mb, rows_for_budget
from ..targets import class_indices
from .mask_generator import MaskGeometry
from .optimiser import ExtremalHistory, StepCallback, optimise_rows
from .pyramid import gaussian_blur, perturbation_pyramid
from .rewards import model_rows
from .settings import ExtremalSettings, check_areas

#: The areas of TorchRay's PASCAL VOC benchmark (the paper's pointing-game runs).
DEFAULT_AREAS: tuple[float, ...] = (0.025, 0.05, 0.1, 0.2)


@dataclass
class ExtremalMasks:
    """Result of :func:`extremal_masks` for N images, T targets per image and A areas.

    masks (N, T, A, 1, H, W): cropped masks in [0, 1]. params (N, T, A, 1, h, w): final
    parameters. target (N, T). history: reward and residual (S, N, T, A) sampled at
    ``history.iterations`` (S,), penalty (S,).
    """

    masks: Tensor
    params: Tensor
    target: Tensor
    areas: tuple[float, ...]
    history: ExtremalHistory
    settings: ExtremalSettings
    chunk_rows: int
    backend: str

    def saliency(self, smoothing: float = 0.0) -> Tensor:
        """TorchRay's benchmark saliency: the sum of the area masks, (N, T, 1, H, W).

        ``smoothing`` > 0 blurs it with a Gaussian of sigma = smoothing * min(H, W) and zero
        padding (the benchmark uses 0.09); blurring the sum equals summing blurred masks.
        """
        n, t, _, _, h, w = self.masks.shape
        total = self.masks.sum(dim=2)
        if smoothing > 0:
            total = gaussian_blur(total.reshape(n * t, 1, h, w), smoothing * min(h, w)).reshape(n, t, 1, h, w)
        return total


@contextmanager
def frozen_parameters(model: nn.Module) -> Iterator[None]:
    """Switch off ``requires_grad`` on the model's parameters and restore every flag on exit.

    Only the mask needs a gradient; without this the backward pass would also compute (and the
    forward pass keep inputs for) weight gradients. TorchRay switches them off for good.
    """
    flags = [p.requires_grad for p in model.parameters()]
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)


def stack_images(x: Tensor | Sequence[Tensor]) -> Tensor:
    """A batch (N, C, H, W) from a tensor or a sequence of (C, H, W) / (1, C, H, W) images of one size."""
    if isinstance(x, Tensor):
        return x
    if not isinstance(x, (list, tuple)) or not x:
        raise AttributionError(f"x must be a tensor (N, C, H, W) or a non-empty list of images, got {type(x).__name__}")
    images = []
    for i, image in enumerate(x):
        if not isinstance(image, Tensor) or image.dim() not in (3, 4) or (image.dim() == 4 and image.shape[0] != 1):
            shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
            raise AttributionError(f"image {i} must be a (C, H, W) or (1, C, H, W) tensor, got {shape}")
        images.append(image if image.dim() == 3 else image[0])
    sizes = sorted({tuple(image.shape) for image in images})
    if len(sizes) > 1:
        raise AttributionError(f"images of different sizes in one batch: {sizes}; the optimiser batches images of "
                               "one size (resize or crop them, or call it once per size)")
    return torch.stack(images)


def check_targets(model: nn.Module, x: Tensor, target: Tensor | int | Sequence[int] | Sequence[Sequence[int]]) -> Tensor:
    """Targets as a long tensor (N, T): one or more classes per image, each validated by the contract
    (the same entry rules as :func:`adapters.check_inputs`: whole numbers only)."""
    columns = class_indices(target, x.device)
    if columns.dim() != 2:
        return check_inputs(model, x, columns).unsqueeze(1)
    if columns.shape[0] != x.shape[0] or columns.shape[1] == 0:
        raise AttributionError(f"target must be (N,) or (N, T) with N = {x.shape[0]} images, got {tuple(columns.shape)}")
    return torch.stack([check_inputs(model, x, columns[:, k]) for k in range(columns.shape[1])], dim=1)


def default_chunk_rows(model: nn.Module, x: Tensor, settings: ExtremalSettings, memory_mb: float) -> int:
    """Rows per chunk that fit ``memory_mb``: model activations for a backward pass plus the mask state."""
    settings = settings.for_size(*x.shape[-2:])
    geometry = MaskGeometry(x.shape[-2], x.shape[-1], settings.step, settings.sigma)
    cells = geometry.shape_mid[0] * geometry.shape_mid[1]
    h, w = geometry.shape_in
    per_row = x.element_size() * (2 * settings.step ** 2 * cells + 3 * h * w + 4 * geometry.padded_pixels
                                  + 2 * x.shape[-2] * x.shape[-1]) + 8 * geometry.padded_pixels
    per_model_row = rows_for_budget(model, x, memory_mb, backward=True, extra_bytes_per_row=per_row)
    return max(1, per_model_row // model_rows(settings.variant))


def extremal_masks(model: nn.Module, x: Tensor | Sequence[Tensor],
                   target: Tensor | int | Sequence[int] | Sequence[Sequence[int]],
                   areas: float | Sequence[float] = DEFAULT_AREAS, settings: ExtremalSettings | None = None, *,
                   chunk_rows: int | None = None, memory_mb: float = DEFAULT_MEMORY_MB,
                   callback: StepCallback | None = None) -> ExtremalMasks:
    """Extremal perturbations of N images (N, C, H, W) for targets (N,) or (N, T) and A areas.

    ``settings.geometry`` decides how its step, sigma and max blur meet the image size
    (:meth:`ExtremalSettings.for_size`); the result's ``settings`` hold the pixel values used.
    Rows are (image, target, area) in that nesting order, optimised together in chunks of
    ``chunk_rows`` (default: what ``memory_mb`` holds). The model must be in eval mode; it is
    left exactly as found (its ``requires_grad`` flags are switched off during the run and
    restored). ``callback(t, rows, params)`` sees the parameters after every update (tests).
    """
    areas = check_areas(areas)
    x = stack_images(x)
    # Pixel sizes for this input (the scaled geometry's step, sigma and max blur follow min(H, W)).
    settings = (settings or ExtremalSettings()).for_size(*x.shape[-2:])
    targets = check_targets(model, x, target)
    check_memory_mb(memory_mb)
    chunk_rows = check_batch("chunk_rows", chunk_rows) or default_chunk_rows(model, x, settings, memory_mb)
    n, t, a = targets.shape[0], targets.shape[1], len(areas)
    image = torch.arange(n, device=x.device).repeat_interleave(t * a)
    row_target = targets.repeat_interleave(a, dim=1).reshape(-1)
    row_area = list(areas) * (n * t)
    pyramid = perturbation_pyramid(x.detach(), settings.levels, settings.max_blur, settings.perturbation)
    with frozen_parameters(model):
        result = optimise_rows(model, pyramid, image, row_target, row_area, settings, chunk_rows, callback)
    history = result.history
    s = history.iterations.shape[0]
    history = ExtremalHistory(iterations=history.iterations, reward=history.reward.reshape(s, n, t, a),
                              residual=history.residual.reshape(s, n, t, a), penalty=history.penalty)
    return ExtremalMasks(
        masks=result.masks.reshape(n, t, a, *result.masks.shape[1:]),
        params=result.params.reshape(n, t, a, *result.params.shape[1:]),
        target=targets, areas=areas, history=history, settings=settings, chunk_rows=chunk_rows,
        backend=result.backend,
    )
