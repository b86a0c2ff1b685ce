"""Localisation against ground-truth masks: pointing game, relevance mass, relevance rank.

All three need a mask (N, 1, H, W) per image. An empty mask has no right answer, so its score is NaN
("no score"): aggregation skips it and reports how many were skipped (``MetricResult.summary``).
Quantus instead writes NaN into a boolean array for the pointing game, which stores True: an empty
mask counts as a hit.

These scores read no model output; ``model`` and ``target`` are accepted for the common signature
and only ``x`` is used, for shapes.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..params import Float, Int, OrNone
from ..perturb import rise_blur
from ..ranking import rank_pixels, rank_positions
from ..registry import MetricResult, as_scores, register
from ..validation import MetricInputError, check_attributions, check_mask


def _no_score_where_empty(values: Tensor, mask: Tensor) -> Tensor:
    empty = ~mask.flatten(1).any(1)
    return torch.where(empty, torch.full_like(values, float("nan")), values)


def _inputs(x: Tensor, attributions: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    if not isinstance(x, Tensor) or x.dim() != 4:
        raise MetricInputError(f"x must be a 4-D tensor (N, C, H, W), got {getattr(x, 'shape', type(x))}")
    return check_attributions(attributions, x), check_mask(mask, x)


# The smoothing kernel's side is 8 sigma + 1 and its cost grows with its square: at 32 px the kernel
# (257 px) is already wider than a 224-px image. reference_size is an image side.
_POINTING = {"tolerance_px": Float(15.0, low=0.0), "reference_size": OrNone(Int(224, low=1, high=2**16)),
             "smooth_sigma": Float(0.0, low=0.0, high=32.0)}


@register("pointing_game", category="localisation", direction="higher",
          params=_POINTING, inputs=("mask",), bounds=(0.0, 1.0))
def pointing_game(*, model: nn.Module | None = None, x: Tensor, target: Tensor | int | None = None,
                  attributions: Tensor, mask: Tensor, seed: int = 0, device_budget_bytes: int | None = None,
                  tolerance_px: float = 15.0, reference_size: int | None = 224,
                  smooth_sigma: float = 0.0) -> MetricResult:
    """Hit (1.0) if the map's maximum lies within the tolerance of the mask, else 0.0; NaN for an
    empty mask. Higher is better.

    The tolerance is ``tolerance_px`` at an image side of ``reference_size`` and scales with
    min(H, W) (TorchRay: 15 px at 224, i.e. 4.3 px at 64); ``reference_size=None`` makes it absolute.
    The map is optionally blurred first (Gaussian, ``smooth_sigma`` pixels). Ties for the maximum
    (a constant map) are broken by ``seed``, never counted as hits everywhere.
    Scores (N,); extras ``points`` (N, 2) as (row, column) and ``tolerance`` in pixels.
    """
    attributions, mask = _inputs(x, attributions, mask)
    _, _, h, w = x.shape
    if smooth_sigma > 0:
        size = 2 * int(4 * smooth_sigma + 0.5) + 1
        attributions = rise_blur(attributions, size, float(smooth_sigma))
    tolerance = float(tolerance_px) * (min(h, w) / reference_size if reference_size else 1.0)
    best = rank_pixels(attributions, seed)[:, 0]
    rows, cols = best // w, best % w
    grid_r = torch.arange(h, device=x.device).view(1, h, 1)
    grid_c = torch.arange(w, device=x.device).view(1, 1, w)
    distance2 = (grid_r - rows.view(-1, 1, 1)) ** 2 + (grid_c - cols.view(-1, 1, 1)) ** 2
    hits = (mask[:, 0] & (distance2 <= tolerance ** 2)).flatten(1).any(1).float()
    return MetricResult(scores=as_scores(_no_score_where_empty(hits, mask)),
                        extras={"points": torch.stack([rows, cols], 1).cpu(), "tolerance": torch.full((x.shape[0],), tolerance)})


@register("relevance_mass", category="localisation", direction="higher", params={}, inputs=("mask",),
          bounds=(0.0, 1.0))
def relevance_mass(*, model: nn.Module | None = None, x: Tensor, target: Tensor | int | None = None,
                   attributions: Tensor, mask: Tensor, seed: int = 0,
                   device_budget_bytes: int | None = None) -> MetricResult:
    """Share of the positive attribution that falls inside the mask (Arras et al. 2022), in [0, 1];
    higher is better. NaN for an empty mask, and for a map with no positive attribution (nothing to
    share out). Scores (N,)."""
    attributions, mask = _inputs(x, attributions, mask)
    positive = attributions.clamp_min(0).flatten(1).double()
    total = positive.sum(1)
    inside = (positive * mask.flatten(1)).sum(1)
    share = torch.where(total > 0, inside / total.clamp_min(torch.finfo(total.dtype).tiny),
                        torch.full_like(total, float("nan")))
    return MetricResult(scores=as_scores(_no_score_where_empty(share, mask)))


@register("relevance_rank", category="localisation", direction="higher", params={}, inputs=("mask",),
          bounds=(0.0, 1.0))
def relevance_rank(*, model: nn.Module | None = None, x: Tensor, target: Tensor | int | None = None,
                   attributions: Tensor, mask: Tensor, seed: int = 0,
                   device_budget_bytes: int | None = None) -> MetricResult:
    """Share of the top-K pixel positions (K = mask size) that fall inside the mask (Arras et al.
    2022), in [0, 1]; higher is better. Ties are ordered by ``seed``. NaN for an empty mask.
    Scores (N,)."""
    attributions, mask = _inputs(x, attributions, mask)
    ranks = rank_positions(rank_pixels(attributions, seed))
    flat_mask = mask.flatten(1)
    size = flat_mask.sum(1, keepdim=True)
    top_inside = (flat_mask & (ranks < size)).sum(1).double()
    share = top_inside / size.squeeze(1).clamp_min(1).double()
    return MetricResult(scores=as_scores(_no_score_where_empty(share, mask)))
