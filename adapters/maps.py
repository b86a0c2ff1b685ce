"""Turning a method's raw output into the contract's (N, 1, H, W) map: one way to do each step."""
from __future__ import annotations

import functools
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
    """(N, 1, h, w) -> (N, 1, H, W) as Captum's ``LayerAttribution.interpolate`` (``F.interpolate``,
    align_corners=False). Bilinear is separable: two small products with the interpolation weights,
    equal to the interpolation up to float rounding (tests/adapters/test_maps.py) and on a CPU ~20x
    faster than its kernel, which on one-channel maps (14 ns an output pixel) costs a small model's
    CAM or attention map a tenth of its forward; the other modes go through Captum."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    if check_upsampling(mode) == "bilinear" and maps.is_floating_point():
        rows = _linear_weights(maps.shape[-2], size[0], maps.device, maps.dtype)
        columns = _linear_weights(maps.shape[-1], size[1], maps.device, maps.dtype)
        return rows @ maps @ columns.T
    return LayerAttribution.interpolate(maps, size, interpolate_mode=mode)


@functools.lru_cache(maxsize=64)
def _linear_weights(n_in: int, n_out: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """(n_out, n_in): row i holds the weights of output i in ``F.interpolate``'s linear mode,
    align_corners=False: source x = (i + 0.5) * n_in / n_out - 0.5, clamped at 0, split between its
    two neighbours (the last one repeated at the border)."""
    # In float32, as the kernel computes it (its scale is float(n_in) / n_out).
    scale = torch.tensor(n_in, dtype=torch.float32) / n_out
    source = (scale * (torch.arange(n_out, dtype=torch.float32) + 0.5) - 0.5).clamp(min=0)
    low = source.floor().long().clamp(max=n_in - 1)
    high = (low + 1).clamp(max=n_in - 1)
    upper = source - low
    weights = torch.zeros(n_out, n_in, dtype=torch.float32)
    rows = torch.arange(n_out)
    weights.index_put_((rows, low), 1 - upper, accumulate=True)
    weights.index_put_((rows, high), upper, accumulate=True)
    return weights.to(device=device, dtype=dtype)


def paint_segments(weights: Tensor, segments: Tensor) -> Tensor:
    """Weights (K,) of segments 0..K-1 painted onto a (H, W) label map: returns (1, 1, H, W)."""
    return weights.to(torch.float32)[segments.long()].unsqueeze(0).unsqueeze(0)
