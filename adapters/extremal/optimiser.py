"""The batched extremal-perturbation optimiser: one row per (image, target, area).

Every term of the energy is per row and the loss is their sum, so R rows optimised together give
the same trajectories as R separate runs (model in eval mode). Rows are processed in chunks of at
most ``chunk_rows``; chunks are independent problems, so chunking never changes a result, and every
per-row kernel (mask generator, sort, interpolation) treats a row the same way whatever shares its
batch.

Per iteration t and row r (TorchRay's algorithm, section 2.5 of the reference notes):

    m_r = generator(p_r) (cropped to the image, and padded for the area term)
    x_r = perturbed input(s) for the variant, mirrored horizontally when ``flip`` and t is even
    E   = sum_r reward_r(model(x)) - lambda_t R_{a_r}(padded m_r)
    p  <- clamp(p - lr * buf, 0, 1),  buf = g (t = 0) or momentum * buf + (1 - dampening) * g,  g = dE/dp * -1

The loop never synchronises with the host: the penalty weights and the flip parity are host
constants, the history is written into preallocated device tensors, and shapes never change.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from .area import AreaConstraint
from .mask_generator import MaskGenerator, MaskGeometry
from .pyramid import apply_mask
from .rewards import variant_reward
from .settings import ExtremalSettings
from .backend import Backend

#: ``callback(t, rows, params)``: called after the update of iteration t with the chunk's row
#: slice and its parameters (R_chunk, 1, h, w) (a live tensor: clone it to keep it).
StepCallback = Callable[[int, slice, Tensor], None]


@dataclass
class ExtremalHistory:
    """Optimisation history sampled on the device.

    iterations (S,): which iterations were sampled. reward (S, R): each row's reward at those
    iterations (the variant's signed score). residual (S, R): the unweighted area residual R_a.
    penalty (S,): the weight lambda_t of the residual.
    """

    iterations: Tensor
    reward: Tensor
    residual: Tensor
    penalty: Tensor


@dataclass
class RowResult:
    """masks (R, 1, H, W): the cropped masks of the last forward pass (the parameters before the
    final update, as in the reference); params (R, 1, h, w): the parameters after it; history."""

    masks: Tensor
    params: Tensor
    history: ExtremalHistory
    backend: str


class ProjectedSGD:
    """torch.optim.SGD's momentum update (the first step takes the gradient as the buffer), then
    the projection onto [0, 1]; the projection does not reset the buffer. In place, on any shape."""

    def __init__(self, lr: float, momentum: float, dampening: float) -> None:
        self.lr, self.momentum, self.dampening = lr, momentum, dampening
        self.buffer: Tensor | None = None

    @torch.no_grad()
    def step(self, params: Tensor, grad: Tensor) -> None:
        """params <- clamp(params - lr * buffer, 0, 1) for the gradient ``grad`` of the loss."""
        if self.momentum == 0:  # torch.optim.SGD keeps no buffer then
            self.buffer = grad
        elif self.buffer is None:
            self.buffer = grad.clone()
        else:
            self.buffer.mul_(self.momentum).add_(grad, alpha=1 - self.dampening)
        params.add_(self.buffer, alpha=-self.lr).clamp_(0, 1)


def perturbed_inputs(pyramid: Tensor, image: Tensor, mask: Tensor, variant: str, flip: bool = False,
                     backend: Backend | None = None) -> Tensor:
    """Model inputs for masks (R, 1, H, W): (R, C, H, W), or (2R, C, H, W) for ``dual`` (preserve
    rows first), mirrored horizontally when ``flip``."""
    if variant == "preserve":
        return apply_mask(pyramid, image, mask, flip, backend)
    if variant == "delete":
        return apply_mask(pyramid, image, 1 - mask, flip, backend)
    return torch.cat((apply_mask(pyramid, image, mask, flip, backend),
                      apply_mask(pyramid, image, 1 - mask, flip, backend)))


def optimise_rows(model: nn.Module, pyramid: Tensor, image: Tensor, target: Tensor, areas: Sequence[float],
                  settings: ExtremalSettings, chunk_rows: int, callback: StepCallback | None = None) -> RowResult:
    """Optimise one mask per row.

    pyramid (N, L, C, H, W) from :func:`.pyramid.perturbation_pyramid`; image (R,) and target (R,)
    long tensors on its device; areas: R floats in (0, 1). The model must be in eval mode; its
    parameters should not require gradients (see :func:`.explain.frozen_parameters`).
    """
    rows = image.shape[0]
    if not (target.shape[0] == rows == len(areas)):
        raise ValueError(f"image ({rows}), target ({target.shape[0]}) and areas ({len(areas)}) must have one entry per row")
    _, _, _, height, width = pyramid.shape
    settings = settings.for_size(height, width)  # a no-op for settings already in pixels
    geometry = MaskGeometry(height, width, settings.step, settings.sigma)
    generator = MaskGenerator(geometry, pyramid.dtype, pyramid.device, Backend(settings.backend))
    sampled = settings.sampled_iterations()
    weights = settings.penalty_weights()
    device, dtype = pyramid.device, pyramid.dtype
    history = new_history(sampled, weights, rows, dtype, device)
    masks = pyramid.new_empty(rows, 1, height, width)
    params = pyramid.new_empty(rows, 1, *geometry.shape_in)
    for start in range(0, rows, chunk_rows):
        chunk = slice(start, min(start + chunk_rows, rows))
        masks[chunk], params[chunk] = _optimise_chunk(
            model, pyramid, image[chunk], target[chunk], list(areas[chunk]), settings, generator, weights,
            sampled, history, chunk, callback)
    return RowResult(masks=masks, params=params, history=history, backend=generator.backend.resolved or "eager")


@torch.no_grad()
def record(history: ExtremalHistory, index: int, chunk: slice, reward: Tensor, residual: Tensor) -> None:
    """Write one sample of the history on the device (no host synchronisation)."""
    history.reward[index, chunk] = reward
    history.residual[index, chunk] = residual


def new_history(sampled: list[int], weights: list[float], rows: int, dtype: torch.dtype,
                device: torch.device) -> ExtremalHistory:
    """Preallocated history for ``rows`` rows sampled at iterations ``sampled``."""
    return ExtremalHistory(
        iterations=torch.tensor(sampled, device=device),
        reward=torch.zeros(len(sampled), rows, dtype=dtype, device=device),
        residual=torch.zeros(len(sampled), rows, dtype=dtype, device=device),
        penalty=torch.tensor([weights[t] for t in sampled], dtype=dtype, device=device),
    )


def _optimise_chunk(model: nn.Module, pyramid: Tensor, image: Tensor, target: Tensor, areas: list[float],
                    settings: ExtremalSettings, generator: MaskGenerator, weights: list[float], sampled: list[int],
                    history: ExtremalHistory, chunk: slice, callback: StepCallback | None) -> tuple[Tensor, Tensor]:
    rows = image.shape[0]
    geometry = generator.geometry
    params = pyramid.new_ones(rows, 1, *geometry.shape_in).requires_grad_(True)
    sgd = ProjectedSGD(settings.lr, settings.momentum, settings.dampening)
    slot = {t: i for i, t in enumerate(sampled)}
    cropped = pyramid.new_empty(0)
    constraint: AreaConstraint | None = None
    for t in range(settings.iterations):
        cropped, padded = generator(params)
        if constraint is None:  # the backend is settled by the generator's first call
            ties = "sort" if generator.backend.resolved == "eager" else "select"
            constraint = AreaConstraint(areas, geometry.padded_pixels, pyramid.dtype, pyramid.device, ties)
        inputs = perturbed_inputs(pyramid, image, cropped, settings.variant, settings.flip and t % 2 == 0,
                                  generator.backend)
        reward = variant_reward(model(inputs), target, settings.reward, settings.variant)
        residual = constraint.residual(padded)
        energy = reward - weights[t] * residual
        (grad,) = torch.autograd.grad(-energy.sum(), params)
        sgd.step(params, grad)
        if t in slot:
            record(history, slot[t], chunk, reward, residual)
        if callback is not None:
            callback(t, chunk, params.detach())
    return cropped.detach(), params.detach()
