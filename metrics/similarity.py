"""Similarity of two batches of attribution maps, per image, as in Adebayo et al. (2018).

Four measures, each a tensor (N,) for maps (N, C, H, W) (channels are reduced first: ``sum |a|``
for the absolute map, ``sum a`` for the signed one, as the paper's visualisations do):

``spearman_abs``
    Spearman rank correlation of the absolute maps, each scaled from its minimum to its 99th
    percentile and clipped to [0, 1] (the paper's ``abs_grayscale_norm``). The clip matters: it
    ties the top 1 % of pixels, so one hot pixel does not decide the ranking.
``spearman_signed``
    Spearman rank correlation of the signed maps divided by the 99th percentile of ``|a|`` and
    clipped to [-1, 1] (the paper's ``diverging_norm``).
``ssim``
    SSIM of the [0, 1] absolute maps (Gaussian window, sigma 1.5, 11 taps, sample covariance,
    ``data_range=1``), equal to ``skimage.metrics.structural_similarity(..., gaussian_weights=True,
    data_range=1)``.
``hog``
    Spearman rank correlation of the HOG features of the [0, 1] absolute maps, equal to
    ``skimage.feature.hog(pixels_per_cell=(cell, cell))`` (9 orientations, 3x3-cell blocks,
    L2-Hys). The paper used 16 px cells at 299 px; on 64 px images 16 px still gives 4x4 cells
    (2x2 blocks), the smallest sensible grid, so ``hog_cell`` is a parameter.

A constant map has no ranking and no structure, so every measure involving it is NaN (documented
"no score"), never an error. Spearman is computed on the device as the Pearson correlation of
average ranks (ties get the mean of their positions, as ``scipy.stats.spearmanr``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

MEASURES: tuple[str, ...] = ("spearman_abs", "spearman_signed", "ssim", "hog")

_PERCENTILE = 0.99
_HOG_ORIENTATIONS = 9
_HOG_BLOCK = 3
_HOG_EPS = 1e-5
_SSIM_SIGMA = 1.5
_SSIM_TRUNCATE = 3.5  # skimage's value for gaussian_weights=True: an 11-tap window at sigma 1.5


# ----------------------------------------------------------------------------------------------
# Sorting rows


def sorted_rows(values: Tensor) -> tuple[Tensor, Tensor]:
    """``values.sort(dim=1)`` (N, L) up to the order among equal values, which neither the ranks nor
    the quantiles here depend on. On the CPU, float rows are sorted by NumPy (zero-copy views):
    torch's CPU sort of (8, 4096) float64 rows takes ~3 ms, NumPy's ~0.5 ms, and a sanity check
    sorts five times per map batch and model step. NaNs come last in both."""
    if values.device.type != "cpu" or values.dtype not in (torch.float32, torch.float64):
        return values.sort(dim=1)
    order = torch.from_numpy(np.argsort(values.detach().numpy(), axis=1))
    return values.gather(1, order), order


def row_quantile(values: Tensor, q: float) -> Tensor:
    """``torch.quantile(values, q, dim=1)`` (linear interpolation; NaN for a row holding a NaN), bit
    for bit, from :func:`sorted_rows` for float64 rows (torch's quantile sorts with its slow CPU
    sort; its float32 rank arithmetic is not reproduced here, so other dtypes go to it)."""
    if values.dtype != torch.float64:
        return torch.quantile(values, q, dim=1)
    ordered, _ = sorted_rows(values)
    last = ordered.shape[1] - 1
    has_nan = ordered.isnan().any(dim=1, keepdim=True)
    ranks = torch.full_like(has_nan, q, dtype=ordered.dtype) * last
    ranks = ranks.masked_fill(has_nan, last)  # as torch: the last (NaN) value
    below = ranks.long()
    values_below = ordered.gather(1, below)
    return values_below.lerp_(ordered.gather(1, ranks.ceil().long()), ranks - below).squeeze(1)


# ----------------------------------------------------------------------------------------------
# Normalisation


def _as_maps(maps: Tensor) -> Tensor:
    if maps.dim() == 3:
        maps = maps.unsqueeze(1)
    if maps.dim() != 4:
        raise ValueError(f"attribution maps must be (N, C, H, W) or (N, H, W), got shape {tuple(maps.shape)}")
    return maps


def abs_unit(maps: Tensor) -> tuple[Tensor, Tensor]:
    """Absolute maps scaled to [0, 1]: ``clip((|a| - min) / (p99 - min), 0, 1)`` per image.

    ``maps``: (N, C, H, W). Returns the maps (N, H, W) float64 and ``valid`` (N,) bool; a constant
    map is invalid and comes back NaN. When fewer than 1 % of the pixels are non-zero the 99th
    percentile equals the minimum, so the scale falls back to ``max - min`` rather than dividing by 0.
    """
    maps = _as_maps(maps).to(torch.float64)
    u = maps.abs().sum(dim=1)
    flat = u.flatten(1)
    low = flat.min(dim=1).values
    high = row_quantile(flat, _PERCENTILE)
    scale = high - low
    scale = torch.where(scale > 0, scale, flat.max(dim=1).values - low)
    valid = scale > 0
    safe = torch.where(valid, scale, torch.ones_like(scale))
    out = ((u - low[:, None, None]) / safe[:, None, None]).clamp(0.0, 1.0)
    out[~valid] = float("nan")
    return out, valid


def signed_unit(maps: Tensor) -> tuple[Tensor, Tensor]:
    """Signed maps scaled to [-1, 1]: ``clip(a / p99(|a|), -1, 1)`` per image.

    ``maps``: (N, C, H, W). Returns (N, H, W) float64 and ``valid`` (N,) bool (False for a constant
    map, whose ranks are all tied). Falls back to ``max |a|`` when the 99th percentile is 0.
    """
    maps = _as_maps(maps).to(torch.float64)
    s = maps.sum(dim=1)
    flat = s.flatten(1)
    magnitude = flat.abs()
    scale = row_quantile(magnitude, _PERCENTILE)
    scale = torch.where(scale > 0, scale, magnitude.max(dim=1).values)
    valid = (flat.max(dim=1).values > flat.min(dim=1).values) & (scale > 0)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    out = (s / safe[:, None, None]).clamp(-1.0, 1.0)
    out[~valid] = float("nan")
    return out, valid


# ----------------------------------------------------------------------------------------------
# Ranks and correlation


def average_ranks(values: Tensor) -> Tensor:
    """Ranks 1..L of each row of ``values`` (N, L), ties sharing the mean of their positions.

    Batched on the device with one sort: in sorted order a run of equal values spans positions
    [first, last]; ``cummax`` carries each run's first position forward and a reversed ``cummin``
    carries its last position back, and every member gets ``(first + last) / 2 + 1``.
    """
    ordered, order = sorted_rows(values)
    n, length = ordered.shape
    position = torch.arange(length, device=values.device).expand(n, length)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    ends = torch.ones_like(starts)
    ends[:, :-1] = starts[:, 1:]
    first = torch.where(starts, position, torch.zeros_like(position)).cummax(dim=1).values
    last = torch.where(ends, position, torch.full_like(position, length)).flip(1).cummin(dim=1).values.flip(1)
    ranks = (first + last).to(torch.float64) / 2.0 + 1.0
    return torch.empty_like(ranks).scatter_(1, order, ranks)


def _centred(values: Tensor) -> Tensor:
    values = values.to(torch.float64)
    return values - values.mean(dim=1, keepdim=True)


def pearson_centred(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation of rows already centred (N, L) -> (N,); zero variance gives NaN."""
    norm = a.square().sum(dim=1) * b.square().sum(dim=1)
    r = (a * b).sum(dim=1) / norm.sqrt()
    return torch.where(norm > 0, r, torch.full_like(r, float("nan"))).clamp(-1.0, 1.0)


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation of each pair of rows: ``a``, ``b`` (N, ...) flattened to (N, L) -> (N,).

    Equal to ``scipy.stats.spearmanr(a[i].ravel(), b[i].ravel())`` per image; a constant row gives NaN.
    """
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    ra = _centred(average_ranks(a.flatten(1)))
    rb = _centred(average_ranks(b.flatten(1)))
    return pearson_centred(ra, rb)


# ----------------------------------------------------------------------------------------------
# SSIM


def _gaussian_kernel(sigma: float, truncate: float, device: torch.device) -> Tensor:
    radius = int(truncate * sigma + 0.5)  # scipy.ndimage's radius rule
    x = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _gaussian_valid(maps: Tensor) -> Tensor:
    """Separable Gaussian (sigma 1.5, 11 taps) of (..., H, W) without padding -> (..., H-10, W-10).

    Shifted multiply-adds: a single-channel convolution with an 11x1 kernel is a slow path on the
    CPU, eleven fused adds over the image are not.
    """
    kernel = _gaussian_kernel(_SSIM_SIGMA, _SSIM_TRUNCATE, maps.device).tolist()
    taps = len(kernel)
    rows = maps.shape[-2] - taps + 1
    out = kernel[0] * maps[..., 0:rows, :]
    for i in range(1, taps):
        out = out + kernel[i] * maps[..., i:i + rows, :]
    cols = maps.shape[-1] - taps + 1
    result = kernel[0] * out[..., 0:cols]
    for i in range(1, taps):
        result = result + kernel[i] * out[..., i:i + cols]
    return result


def _ssim_taps() -> int:
    return 2 * int(_SSIM_TRUNCATE * _SSIM_SIGMA + 0.5) + 1


def _ssim_moments(maps: Tensor) -> tuple[Tensor, Tensor]:
    """Local mean and mean square of (N, H, W) maps, the part of SSIM that one side owns."""
    maps = maps.to(torch.float64)
    return _gaussian_valid(maps), _gaussian_valid(maps * maps)


def _ssim_from(a: Tensor, b: Tensor, moments_a: tuple[Tensor, Tensor], moments_b: tuple[Tensor, Tensor],
               data_range: float = 1.0) -> Tensor:
    taps = _ssim_taps()
    ux, uxx = moments_a
    uy, uyy = moments_b
    uxy = _gaussian_valid(a.to(torch.float64) * b.to(torch.float64))
    cov_norm = taps * taps / (taps * taps - 1.0)  # skimage's default use_sample_covariance=True
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.flatten(1).mean(dim=1)


def ssim(a: Tensor, b: Tensor, data_range: float = 1.0) -> Tensor:
    """Mean SSIM per image of maps ``a``, ``b`` (N, H, W) already in a known range -> (N,).

    Matches ``skimage.metrics.structural_similarity(a, b, gaussian_weights=True,
    data_range=data_range)``: skimage averages the SSIM map after cropping the filter radius,
    and the cropped values only read pixels inside the image, so a valid (unpadded) separable
    filter gives the same numbers without choosing a padding mode.
    """
    if a.shape != b.shape or a.dim() != 3:
        raise ValueError(f"ssim needs two (N, H, W) batches of the same shape, got {tuple(a.shape)}, {tuple(b.shape)}")
    if min(a.shape[1:]) < _ssim_taps():
        raise ValueError(f"ssim needs maps of at least {_ssim_taps()}x{_ssim_taps()} pixels, got {tuple(a.shape[1:])}")
    return _ssim_from(a, b, _ssim_moments(a), _ssim_moments(b), data_range)


# ----------------------------------------------------------------------------------------------
# HOG


def hog(images: Tensor, cell: int = 16) -> Tensor:
    """HOG feature vectors (N, F) of grayscale images (N, H, W), as ``skimage.feature.hog(image,
    pixels_per_cell=(cell, cell))`` with its defaults (9 orientations, 3x3 blocks, L2-Hys).

    Central-difference gradients (zero on the border rows/columns), unsigned orientation in
    [0, 180) binned without interpolation, magnitudes averaged over non-overlapping cells
    (pixels past the last whole cell are ignored), blocks normalised, flattened in skimage's
    (block_row, block_col, cell_row, cell_col, orientation) order.
    """
    if images.dim() != 3:
        raise ValueError(f"hog needs (N, H, W) images, got shape {tuple(images.shape)}")
    n, h, w = images.shape
    rows, cols = h // cell, w // cell
    if rows < _HOG_BLOCK or cols < _HOG_BLOCK:
        raise ValueError(f"hog cell {cell} px gives a {rows}x{cols} cell grid on {h}x{w} maps; "
                         f"{_HOG_BLOCK}x{_HOG_BLOCK}-cell blocks need at least {_HOG_BLOCK * cell} px per side")
    img = images.to(torch.float64)
    g_row = torch.zeros_like(img)
    g_col = torch.zeros_like(img)
    g_row[:, 1:-1, :] = img[:, 2:, :] - img[:, :-2, :]
    g_col[:, :, 1:-1] = img[:, :, 2:] - img[:, :, :-2]
    magnitude = torch.hypot(g_col, g_row)
    orientation = torch.rad2deg(torch.atan2(g_row, g_col)).remainder(180.0)
    width = 180.0 / _HOG_ORIENTATIONS
    bins = (orientation / width).floor().long().clamp_(0, _HOG_ORIENTATIONS - 1)
    magnitude = magnitude[:, : rows * cell, : cols * cell]
    bins = bins[:, : rows * cell, : cols * cell]
    votes = torch.zeros(n, _HOG_ORIENTATIONS, rows * cell, cols * cell, dtype=torch.float64, device=img.device)
    votes.scatter_(1, bins.unsqueeze(1), magnitude.unsqueeze(1))
    cells = F.avg_pool2d(votes, cell)  # (N, O, rows, cols): mean magnitude per orientation and cell
    cells = cells.permute(0, 2, 3, 1)  # (N, rows, cols, O)
    blocks = cells.unfold(1, _HOG_BLOCK, 1).unfold(2, _HOG_BLOCK, 1)  # (N, br, bc, O, 3, 3)
    blocks = blocks.permute(0, 1, 2, 4, 5, 3)  # (N, br, bc, 3, 3, O)
    eps2 = _HOG_EPS ** 2
    out = blocks / (blocks.square().sum(dim=(3, 4, 5), keepdim=True) + eps2).sqrt()
    out = out.clamp(max=0.2)
    out = out / (out.square().sum(dim=(3, 4, 5), keepdim=True) + eps2).sqrt()
    return out.reshape(n, -1)


# ----------------------------------------------------------------------------------------------
# All measures, with the reference side prepared once


@dataclass
class MapFeatures:
    """What the measures read from one batch of maps, computed once so that the original maps of
    a sanity check are prepared a single time and compared with every randomised model's maps.

    ``abs_ranks``, ``signed_ranks``: centred average ranks (N, H*W); ``unit``: [0, 1] absolute maps
    (N, H, W); ``hog_ranks``: centred ranks of the HOG features (N, F); ``valid``: (N,) bool, False
    for constant maps. Fields of measures that were not requested are None.
    """

    valid: Tensor
    abs_ranks: Tensor | None = None
    signed_ranks: Tensor | None = None
    unit: Tensor | None = None
    hog_ranks: Tensor | None = None
    ssim_moments: tuple[Tensor, Tensor] | None = None


def _check_measures(measures: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    unknown = [m for m in measures if m not in MEASURES]
    if unknown or not measures:
        raise ValueError(f"unknown similarity measure(s) {unknown}; choose from {list(MEASURES)}")
    return tuple(measures)


def map_features(maps: Tensor, measures: tuple[str, ...] | list[str] = MEASURES, hog_cell: int = 16) -> MapFeatures:
    """Prepare maps (N, C, H, W) for :func:`compare`."""
    measures = _check_measures(measures)
    unit, valid = abs_unit(maps)
    features = MapFeatures(valid=valid)
    if "spearman_abs" in measures:
        features.abs_ranks = _centred(average_ranks(torch.nan_to_num(unit).flatten(1)))
    if "spearman_signed" in measures:
        # a constant signed map has all-tied ranks, which pearson_centred already turns into NaN
        signed, _ = signed_unit(maps)
        features.signed_ranks = _centred(average_ranks(torch.nan_to_num(signed).flatten(1)))
    if "ssim" in measures or "hog" in measures:
        features.unit = torch.nan_to_num(unit)
    if "ssim" in measures:
        if min(unit.shape[1:]) < _ssim_taps():
            raise ValueError(f"ssim needs maps of at least {_ssim_taps()}x{_ssim_taps()} pixels, got {tuple(unit.shape[1:])}")
        features.ssim_moments = _ssim_moments(features.unit)
    if "hog" in measures:
        features.hog_ranks = _centred(average_ranks(hog(features.unit, hog_cell)))
    return features


def compare(reference: MapFeatures, other: MapFeatures, measures: tuple[str, ...] | list[str] = MEASURES) -> dict[str, Tensor]:
    """Per-image similarity (N,) of two prepared batches for each measure; NaN where either map is constant."""
    measures = _check_measures(measures)
    valid = reference.valid & other.valid
    out: dict[str, Tensor] = {}
    for measure in measures:
        if measure == "spearman_abs":
            value = pearson_centred(reference.abs_ranks, other.abs_ranks)
        elif measure == "spearman_signed":
            value = pearson_centred(reference.signed_ranks, other.signed_ranks)
        elif measure == "ssim":
            value = _ssim_from(reference.unit, other.unit, reference.ssim_moments, other.ssim_moments)
        else:
            value = pearson_centred(reference.hog_ranks, other.hog_ranks)
        out[measure] = torch.where(valid, value, torch.full_like(value, float("nan")))
    return out


def similarities(a: Tensor, b: Tensor, measures: tuple[str, ...] | list[str] = MEASURES, hog_cell: int = 16) -> dict[str, Tensor]:
    """Per-image similarities {measure: (N,)} of two batches of maps (N, C, H, W)."""
    a, b = _as_maps(a), _as_maps(b)
    if a.shape[0] != b.shape[0] or a.shape[2:] != b.shape[2:]:
        raise ValueError(f"maps differ in batch or spatial size: {tuple(a.shape)} vs {tuple(b.shape)}")
    return compare(map_features(a, measures, hog_cell), map_features(b, measures, hog_cell), measures)
