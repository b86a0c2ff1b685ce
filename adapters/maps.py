"""Turning a method's raw output into the contract's (N, 1, H, W) map: one way to do each step."""
from __future__ import annotations

from typing import Callable

import torch
from captum.attr import LayerAttribution
from torch import Tensor

from .checks import check_choice

#: Channel reductions (N, C, H, W) -> (N, 1, H, W). Which one a method uses is its ``reduction``
#: parameter; gradient maps conventionally use ``max_abs`` (Simonyan et al. 2014), signed
#: attributions whose sum is meaningful (Integrated Gradients' completeness) use ``sum``.
REDUCTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "sum": lambda a: a.sum(dim=1, keepdim=True),
    "mean": lambda a: a.mean(dim=1, keepdim=True),
    "sum_abs": lambda a: a.abs().sum(dim=1, keepdim=True),
    "max_abs": lambda a: a.abs().amax(dim=1, keepdim=True),
}

#: Upsampling modes for coarse (layer-resolution) maps, passed to ``LayerAttribution.interpolate``.
UPSAMPLING: tuple[str, ...] = ("bilinear", "bicubic", "nearest", "area")


def check_reduction(reduction: str) -> str:
    return check_choice("reduction", reduction, sorted(REDUCTIONS), what="channel reduction")


def reduce_channels(attributions: Tensor, reduction: str) -> Tensor:
    """(N, C, H, W) -> (N, 1, H, W) with the named reduction, in float32."""
    return REDUCTIONS[check_reduction(reduction)](attributions.float())


def check_upsampling(mode: str) -> str:
    return check_choice("upsample", mode, UPSAMPLING, what="upsampling")


def upsample(maps: Tensor, size: tuple[int, int], mode: str = "bilinear") -> Tensor:
    """(N, 1, h, w) -> (N, 1, H, W) with Captum's ``LayerAttribution.interpolate`` (align_corners=False)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return LayerAttribution.interpolate(maps, size, interpolate_mode=check_upsampling(mode))


def paint_segments(weights: Tensor, segments: Tensor) -> Tensor:
    """Weights (K,) of segments 0..K-1 painted onto a (H, W) label map: returns (1, 1, H, W)."""
    return weights.to(torch.float32)[segments.long()].unsqueeze(0).unsqueeze(0)
