"""More localisation against ground-truth masks: top-k intersection, attribution localisation, ROC AUC.

Like :mod:`metrics.scores.localisation`: a mask (N, 1, H, W) per image, a pixel position (all
channels of a pixel summed) is one feature, an empty mask is NaN ("no score", skipped and counted by
``MetricResult.summary``), and no model output is read (``model`` and ``target`` are accepted for the
common signature, ``x`` gives the shapes). Every number is per image.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..params import Choice, Int, OrNone
from ..ranking import rank_pixels, rank_positions
from ..registry import MetricResult, as_scores, register
from ..similarity import average_ranks
from ..validation import MetricInputError
from .localisation import _inputs, _no_score_where_empty

# k pixels at an image of reference_size x reference_size (Quantus' k = 1000 at 224 px is 2 % of the
# image); 2**24 pixels is a 4096 x 4096 image.
_TOP_K = {"k": Int(1000, low=1, high=2**24), "reference_size": OrNone(Int(224, low=1, high=2**16))}


def effective_k(k: int, reference_size: int | None, height: int, width: int) -> int:
    """``k`` scaled from a ``reference_size``-squared image to H*W pixels (at least 1), or ``k`` itself
    when ``reference_size`` is None; refused when it exceeds the H*W pixels of the image."""
    scaled = max(1, round(k * height * width / reference_size ** 2)) if reference_size else k
    if scaled > height * width:
        raise MetricInputError(f"metric 'top_k_intersection': k = {scaled} pixels exceeds the {height}x{width} = "
                               f"{height * width} pixels of the image (k={k}, reference_size={reference_size})")
    return scaled


@register("top_k_intersection", category="localisation", direction="higher", params=_TOP_K, inputs=("mask",),
          bounds=(0.0, 1.0))
def top_k_intersection(*, model: nn.Module | None = None, x: Tensor, target: Tensor | int | None = None,
                       attributions: Tensor, mask: Tensor, seed: int = 0, device_budget_bytes: int | None = None,
                       k: int = 1000, reference_size: int | None = 224) -> MetricResult:
    """Top-k intersection (Theiner et al. 2021): the share of the k highest-attributed pixel positions
    (signed map, ties ordered by ``seed``) that lie inside the mask, in [0, 1]; higher is better.

    ``k`` is given at an image side of ``reference_size`` and scales with H*W (1000 at 224 px, as
    Quantus' default, is 82 pixels at 64 px: the same 2 % of the image); ``reference_size=None`` makes
    it an absolute pixel count. A mask smaller than k caps the score at |mask| / k.
    NaN for an empty mask. Scores (N,); ``extras["k"]`` the pixel count used and
    ``extras["concept_influence"]`` (N,) the score times H*W / |mask| (Quantus' option: 1 = chance).

    Quantus ranks the flattened map with an unstable ``argsort``, so tied maps (Grad-CAM zeros, LIME
    segments) get an arbitrary top k; its k is a fixed count whatever the image size.
    """
    attributions, mask = _inputs(x, attributions, mask)
    n, _, h, w = x.shape
    top = effective_k(k, reference_size, h, w)
    ranks = rank_positions(rank_pixels(attributions, seed))
    flat_mask = mask.flatten(1)
    inside = (flat_mask & (ranks < top)).sum(1).double()
    share = inside / top
    size = flat_mask.sum(1).double()
    influence = share * (h * w) / size.clamp_min(1)
    return MetricResult(scores=as_scores(_no_score_where_empty(share, mask)),
                        extras={"k": torch.full((n,), top),
                                "concept_influence": as_scores(_no_score_where_empty(influence, mask))})


RELEVANCE = ("positive", "absolute")


@register("attribution_localisation", category="localisation", direction="higher",
          params={"relevance": Choice("positive", RELEVANCE)}, inputs=("mask",), bounds=(0.0, 1.0))
def attribution_localisation(*, model: nn.Module | None = None, x: Tensor, target: Tensor | int | None = None,
                             attributions: Tensor, mask: Tensor, seed: int = 0, device_budget_bytes: int | None = None,
                             relevance: str = "positive") -> MetricResult:
    """Attribution localisation (Kohlbrenner et al. 2020): the share of the relevance that falls inside
    the mask, ``sum_{i in mask} r_i / sum_i r_i``, in [0, 1]; higher is better.

    ``relevance``: ``"positive"`` (default, the paper's and Quantus' docstring's "positive
    attributions") takes r = max(a, 0), which makes the score equal to ``relevance_mass`` (Arras et al.
    2022 define the same ratio); ``"absolute"`` takes r = |a| (Quantus' default ``abs=True``), which
    counts negative evidence inside the mask as localised.
    NaN for an empty mask and for a map with no relevance (Quantus: 0 / (0 + 1e-9) = 0, a score).
    Scores (N,); ``extras["weighted"]`` (N,) is the size-corrected score times H*W / |mask| (1 for a
    uniform map whatever the mask's size; Quantus' ``weighted=True`` multiplies by the inverse ratio,
    computed from ``x_batch[2:]``, a slice of the batch axis).
    """
    attributions, mask = _inputs(x, attributions, mask)
    _, _, h, w = x.shape
    flat = attributions.flatten(1).double()
    r = flat.clamp_min(0) if relevance == "positive" else flat.abs()
    flat_mask = mask.flatten(1)
    total = r.sum(1)
    share = torch.where(total > 0, (r * flat_mask).sum(1) / total.clamp_min(torch.finfo(total.dtype).tiny),
                        torch.full_like(total, float("nan")))
    weighted = share * (h * w) / flat_mask.sum(1).double().clamp_min(1)
    return MetricResult(scores=as_scores(_no_score_where_empty(share, mask)),
                        extras={"weighted": as_scores(_no_score_where_empty(weighted, mask))})


@register("auc", category="localisation", direction="higher", params={}, inputs=("mask",), bounds=(0.0, 1.0))
def auc(*, model: nn.Module | None = None, x: Tensor, target: Tensor | int | None = None, attributions: Tensor,
        mask: Tensor, seed: int = 0, device_budget_bytes: int | None = None) -> MetricResult:
    """ROC AUC of the signed map as a classifier of the mask's pixels (Fawcett 2006), in [0, 1]:
    the probability that a pixel inside the mask outranks one outside; 0.5 is chance, higher is better.

    Computed as the Mann-Whitney statistic on average ranks over the H*W pixels,
    ``(sum_{i in mask} rank_i - n+(n+ + 1)/2) / (n+ n-)``: tied values share their mean rank, so a tie
    between an inside and an outside pixel counts one half, exactly the trapezoidal ROC area of
    ``sklearn.metrics.roc_curve`` + ``auc`` (what Quantus computes, one image at a time on the host).
    A constant map scores 0.5. NaN for an empty mask and for a mask covering the whole image (no
    negatives: no ROC curve). Scores (N,).
    """
    attributions, mask = _inputs(x, attributions, mask)
    flat_mask = mask.flatten(1)
    ranks = average_ranks(attributions.flatten(1).double())
    positives = flat_mask.sum(1).double()
    negatives = flat_mask.shape[1] - positives
    u = (ranks * flat_mask).sum(1) - positives * (positives + 1) / 2
    value = u / (positives * negatives).clamp_min(1)
    value = torch.where(negatives > 0, value, torch.full_like(value, float("nan")))
    return MetricResult(scores=as_scores(_no_score_where_empty(value, mask)))
