"""Channel attribution: the extremal-perturbation optimiser on an intermediate layer's channels.

Section 4 of the paper applies the same idea to the K channels of a layer's activation a: a mask
m in [0, 1]^K scales them, a -> m * a (preserve; a -> (1 - m) * a for delete; both for dual), and
the area constraint asks for a given fraction of the channels, with the same sorted-reference
penalty, schedule, projected momentum SGD and flip jitter as the spatial masks. There is no smooth
parametrisation: each channel is its own parameter. One row per (image, target, area), batched
like the spatial optimiser; the layer's hook is removed and the model restored on exit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..base import AttributionError, ModelState
from ..budget import DEFAULT_MEMORY_MB, check_batch, check_memory_mb, rows_for_budget
from ..layers import resolve_layer
from .area import AreaConstraint
from .explain import DEFAULT_AREAS, check_targets, frozen_parameters, stack_images
from .optimiser import ExtremalHistory, ProjectedSGD, StepCallback, new_history, record
from .rewards import model_rows, variant_reward
from .settings import ExtremalSettings, check_areas


@dataclass
class ChannelMasks:
    """masks (N, T, A, K): channel masks in [0, 1] of ``layer`` from the last forward pass;
    target (N, T); history reward and residual (S, N, T, A)."""

    masks: Tensor
    layer: str
    target: Tensor
    areas: tuple[float, ...]
    history: ExtremalHistory
    settings: ExtremalSettings
    chunk_rows: int


def channel_masks(model: nn.Module, layer: str | None, x: Tensor | Sequence[Tensor], target: Any,
                  areas: float | Sequence[float] = DEFAULT_AREAS, settings: ExtremalSettings | None = None, *,
                  chunk_rows: int | None = None, memory_mb: float = DEFAULT_MEMORY_MB,
                  callback: StepCallback | None = None) -> ChannelMasks:
    """Extremal channel masks of ``layer`` (a module name; None: the last spatial layer) for
    images x (N, C, H, W), targets (N,) or (N, T) and areas (fractions of the layer's channels).

    ``settings`` fields used: variant, reward, iterations, lr, momentum, dampening, penalty,
    penalty_growth, schedule_iterations, flip, history_every (the mask-shape fields do not apply).
    """
    settings = settings or ExtremalSettings()
    areas = check_areas(areas)
    x = stack_images(x)
    targets = check_targets(model, x, target)
    name, module = resolve_layer(model, x, layer)
    check_memory_mb(memory_mb)
    chunk_rows = check_batch("chunk_rows", chunk_rows) or max(
        1, rows_for_budget(model, x, memory_mb, backward=True) // model_rows(settings.variant))
    n, t, a = targets.shape[0], targets.shape[1], len(areas)
    image = torch.arange(n, device=x.device).repeat_interleave(t * a)
    row_target = targets.repeat_interleave(a, dim=1).reshape(-1)
    row_area = list(areas) * (n * t)
    before = ModelState.of(model)
    with frozen_parameters(model):
        masks, history = _optimise(model, module, x.detach(), image, row_target, row_area, settings, chunk_rows,
                                   callback)
    if ModelState.of(model) != before:
        raise AttributionError("channel_masks changed the model (a hook or a flag); this is a bug")
    s = history.iterations.shape[0]
    history = ExtremalHistory(iterations=history.iterations, reward=history.reward.reshape(s, n, t, a),
                              residual=history.residual.reshape(s, n, t, a), penalty=history.penalty)
    return ChannelMasks(masks=masks.reshape(n, t, a, -1), layer=name, target=targets, areas=areas,
                        history=history, settings=settings, chunk_rows=chunk_rows)


class _ChannelGate:
    """Forward hook scaling the layer's output (B, K, ...) by per-row channel gates (B, K)."""

    def __init__(self) -> None:
        self.gates: Tensor | None = None
        self.channels: int | None = None

    def __call__(self, _module: nn.Module, _inputs: object, output: Tensor) -> Tensor:
        if not isinstance(output, Tensor) or output.dim() < 2:
            raise TypeError("channel attribution needs a layer whose output is a tensor (B, K, ...)")
        self.channels = output.shape[1]
        if self.gates is None:
            return output
        return output * self.gates.reshape(*self.gates.shape, *([1] * (output.dim() - 2)))


def _optimise(model: nn.Module, module: nn.Module, x: Tensor, image: Tensor, target: Tensor, areas: list[float],
              settings: ExtremalSettings, chunk_rows: int, callback: StepCallback | None
              ) -> tuple[Tensor, ExtremalHistory]:
    gate = _ChannelGate()
    handle = module.register_forward_hook(gate)
    try:
        with torch.no_grad():
            model(x[:1])  # learn K, the layer's channel count
        channels = gate.channels
        assert channels is not None
        rows = image.shape[0]
        sampled = settings.sampled_iterations()
        weights = settings.penalty_weights()
        history = new_history(sampled, weights, rows, x.dtype, x.device)
        masks = x.new_empty(rows, channels)
        slot = {t: i for i, t in enumerate(sampled)}
        for start in range(0, rows, chunk_rows):
            chunk = slice(start, min(start + chunk_rows, rows))
            constraint = AreaConstraint(areas[chunk], channels, x.dtype, x.device)
            inputs = x[image[chunk]]
            if settings.variant == "dual":
                inputs = torch.cat((inputs, inputs))
            params = x.new_ones(inputs.shape[0] // model_rows(settings.variant), channels).requires_grad_(True)
            sgd = ProjectedSGD(settings.lr, settings.momentum, settings.dampening)
            for t in range(settings.iterations):
                gate.gates = {"preserve": params, "delete": 1 - params}.get(settings.variant) \
                    if settings.variant != "dual" else torch.cat((params, 1 - params))
                flipped = inputs.flip(3) if settings.flip and t % 2 == 0 else inputs
                reward = variant_reward(model(flipped), target[chunk], settings.reward, settings.variant)
                residual = constraint.residual(params)
                energy = reward - weights[t] * residual
                (grad,) = torch.autograd.grad(-energy.sum(), params)
                masks[chunk] = params.detach()
                sgd.step(params, grad)
                if t in slot:
                    record(history, slot[t], chunk, reward, residual)
                if callback is not None:
                    callback(t, chunk, params.detach())
            gate.gates = None
    finally:
        handle.remove()
    return masks, history
