"""Complexity of the map itself: sparseness (Gini), entropy, effective complexity.

These scores read the map only; ``model`` and ``target`` are accepted for the common signature
and ``x`` is used for shapes. A pixel position is one feature: a multi-channel map is summed over
channels first (:func:`metrics.validation.check_attributions`), then its absolute value is taken,
so the scores describe how the attribution *magnitude* is spread over the H*W pixels.

Everything is per image, and none of the three depends on the map's scale: Quantus normalises the
whole ``a_batch`` by one maximum before scoring, which makes its effective complexity (a fixed
threshold after that normalisation) and, through a ``+1e-7`` added to every value, its sparseness
depend on which other images share the batch. These scores have no right order of oracle, random
and inverted maps (a concise map can be concisely wrong); they are tested against their formulas.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..params import Bool, Float
from ..registry import MetricResult, as_scores, register
from ..validation import MetricInputError, check_attributions


def magnitudes(x: Tensor, attributions: Tensor) -> Tensor:
    """The absolute channel-summed map as (N, H*W) float64, after the shared input checks."""
    if not isinstance(x, Tensor) or x.dim() != 4:
        raise MetricInputError(f"x must be a 4-D tensor (N, C, H, W), got {getattr(x, 'shape', type(x))}")
    return check_attributions(attributions, x).flatten(1).double().abs()


def _nan_where(values: Tensor, empty: Tensor) -> Tensor:
    return torch.where(empty, torch.full_like(values, float("nan")), values)


@register("sparseness", category="complexity", direction="higher", params={}, bounds=(0.0, 1.0))
def sparseness(*, model: nn.Module | None = None, x: Tensor, target: Tensor | int | None = None,
               attributions: Tensor, seed: int = 0, device_budget_bytes: int | None = None) -> MetricResult:
    """Gini index of the absolute map (Chalasani et al. 2020, after Hurley & Rickard 2009); higher is
    sparser (more concise).

    With the P = H*W magnitudes sorted ascending, a_(1) <= ... <= a_(P):
    ``G = sum_i (2i - P - 1) a_(i) / (P sum_i a_(i))``, in [0, (P - 1)/P]: 0 for a uniform map, (P - 1)/P
    for a one-hot map; invariant to the map's scale. NaN ("no score") for an all-zero map, whose Gini
    index is 0/0. Scores (N,).

    Quantus (``Sparseness``) adds 1e-7 to every value after dividing the whole batch by its largest
    value: a one-hot map scores (P - 1)/(P (1 + 1e-7 P)) instead of (P - 1)/P (0.5 % low at 224 px),
    an all-zero map scores 0, and a faint map's score moves with its batch-mates.
    """
    a = magnitudes(x, attributions)
    n_pixels = a.shape[1]
    ordered = a.sort(dim=1).values
    weights = 2.0 * torch.arange(1, n_pixels + 1, dtype=a.dtype, device=a.device) - n_pixels - 1
    total = ordered.sum(1)
    gini = (ordered * weights).sum(1) / (n_pixels * total.clamp_min(torch.finfo(a.dtype).tiny))
    return MetricResult(scores=as_scores(_nan_where(gini, total <= 0)))


@register("complexity", category="complexity", direction="lower", params={})
def complexity(*, model: nn.Module | None = None, x: Tensor, target: Tensor | int | None = None,
               attributions: Tensor, seed: int = 0, device_budget_bytes: int | None = None) -> MetricResult:
    """Entropy (nats) of the normalised absolute map (Bhatt et al. 2020); lower is less complex.

    ``p_i = |a_i| / sum_j |a_j|`` over the P = H*W pixels, ``H = -sum_i p_i ln p_i`` with 0 ln 0 = 0:
    0 for a one-hot map, ln P for a uniform one (so no fixed interval: it grows with the image size);
    invariant to the map's scale. NaN ("no score") for an all-zero map (no distribution). Scores (N,).

    Equals Quantus' ``Complexity`` (which adds 1e-12 inside the logarithm and, normalising by the sum,
    is unaffected by its batch-wide maximum).
    """
    a = magnitudes(x, attributions)
    total = a.sum(1, keepdim=True)
    p = a / total.clamp_min(torch.finfo(a.dtype).tiny)
    entropy = -(p * torch.where(p > 0, p.log(), torch.zeros_like(p))).sum(1)
    return MetricResult(scores=as_scores(_nan_where(entropy, total.squeeze(1) <= 0)))


# eps is in the map's units when not relative; relative, it is a fraction of the map's largest magnitude,
# and 1 or more would count nothing whatever the map (refused once ``relative`` is known).
_EFFECTIVE = {"eps": Float(1e-5, low=0.0), "relative": Bool(True)}


@register("effective_complexity", category="complexity", direction="lower", params=_EFFECTIVE)
def effective_complexity(*, model: nn.Module | None = None, x: Tensor, target: Tensor | int | None = None,
                         attributions: Tensor, seed: int = 0, device_budget_bytes: int | None = None,
                         eps: float = 1e-5, relative: bool = True) -> MetricResult:
    """Effective complexity (Nguyen & Martinez 2020): how many pixels carry attribution, the count of
    ``|a_i| > eps * max_j |a_j|`` (``relative``, the default) or of ``|a_i| > eps`` (``relative=False``,
    the paper's unnormalised form, for maps in known units). Lower is better (fewer features needed).

    The threshold is normalised per image, by that image's largest magnitude, so the count does not
    depend on the map's scale or on the batch; Quantus divides the whole batch by one maximum, so a
    faint map among strong ones counts fewer pixels there. An all-zero map counts 0 (no pixel carries
    attribution). Scores (N,): a count in [0, H*W] (no fixed interval: it grows with the image);
    ``extras["fraction"]`` (N,) is the count divided by H*W.
    """
    if relative and eps >= 1:
        raise MetricInputError(f"metric 'effective_complexity': eps must be below 1 with relative=True (a fraction of "
                               f"the map's largest magnitude), got {eps!r}")
    a = magnitudes(x, attributions)
    threshold = eps * a.amax(1, keepdim=True) if relative else torch.full_like(a[:, :1], eps)
    count = (a > threshold).sum(1).double()
    return MetricResult(scores=as_scores(count), extras={"fraction": as_scores(count / a.shape[1])})
