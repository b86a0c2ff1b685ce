"""Faithfulness correlation (Bhatt et al. 2020).

``n_runs`` random subsets of pixel positions (all channels of a pixel together), each of
``subset_fraction`` of the image, are set to the baseline, each from the clean image; the score is
the Pearson correlation, over the runs, between the sum of the attributions in the subset and the
drop of the target output f(x) - f(x_S). Higher is better. The subset is a fraction of the image
(10 % by default) because a handful of pixels (Quantus: 224 features of 150,528) barely moves the
output, which leaves a correlation of noise. The subsets are drawn from ``seed`` and shared by every
image, so a score never depends on the batch. A map whose subset sums do not vary (a constant map)
has no defined correlation: NaN ("no score").

Cost: n_runs + 1 forward passes per image.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..outputs import class_score, score_classes, score_param, target_class_param
from ..params import Float, Int, Substrate
from ..perturb import clean_logits, evaluate_pairs, rows_per_chunk
from ..registry import MetricResult, as_scores, register
from ..validation import check_attributions, check_model_inputs
from .deletion_insertion import BLUR, SUBSTRATES, make_substrate

# A correlation needs two runs. Each run costs a forward pass per image, and the subsets are drawn
# as n_runs x H x W random keys on the CPU: 4096 runs (40x Quantus' 100) is 0.8 GB at 224 px. A
# subset of the whole image (or of nothing) gives the same sum for every run: no correlation.
_PARAMS = {"n_runs": Int(100, low=2, high=4096),
           "subset_fraction": Float(0.1, low=0.0, high=1.0, open_low=True, open_high=True),
           "baseline": Substrate("zeros", SUBSTRATES), "score": score_param("logit"),
           "target_class": target_class_param("target")}


def random_subsets(n_runs: int, n_positions: int, subset_size: int, seed: int,
                   device: torch.device | str = "cpu") -> Tensor:
    """``n_runs`` random subsets of ``subset_size`` of ``n_positions`` positions, without replacement
    within a subset: LongTensor (n_runs, subset_size), drawn on the CPU from ``seed``."""
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    keys = torch.rand((n_runs, n_positions), generator=generator)
    return keys.argsort(dim=1)[:, :subset_size].to(device)


def pearson(a: Tensor, b: Tensor, rel_tol: float = 1e-6) -> Tensor:
    """Pearson correlation of the rows of ``a`` and ``b`` (N, R): (N,).

    NaN where a row is constant up to rounding (spread below ``rel_tol`` times its magnitude): sums
    of a constant map over equal-sized subsets differ only by summation order, and correlating that
    rounding noise would give an arbitrary number instead of "no score".
    """
    def centred(v: Tensor) -> tuple[Tensor, Tensor]:
        c = v - v.mean(1, keepdim=True)
        flat = c.norm(dim=1) <= rel_tol * v.abs().amax(1) * v.shape[1] ** 0.5
        return c, flat

    a, a_flat = centred(a)
    b, b_flat = centred(b)
    value = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(torch.finfo(a.dtype).tiny)
    return torch.where(a_flat | b_flat, torch.full_like(value, float("nan")), value)


@register("faithfulness_correlation", category="faithfulness", direction="higher",
          params=_PARAMS, bounds=(-1.0, 1.0))  # a Pearson correlation
def faithfulness_correlation(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor,
                             seed: int = 0, device_budget_bytes: int | None = None, n_runs: int = 100,
                             subset_fraction: float = 0.1, baseline: str | Tensor = "zeros",
                             score: str = "logit", target_class: str = "target") -> MetricResult:
    """Pearson correlation between attribution sums of random pixel subsets and the output drop when
    those subsets are set to ``baseline`` ("zeros", "mean", "blur" or a tensor). Scores (N,) in
    [-1, 1] (NaN for a map with no variation over the subsets); extras ``attribution_sums`` and
    ``output_drops`` (N, n_runs)."""
    target = check_model_inputs(model, x, target)
    attributions = check_attributions(attributions, x)
    n, _, h, w = x.shape
    chunk = rows_per_chunk(model, x, device_budget_bytes)
    logits = clean_logits(model, x, chunk)
    fill = make_substrate(x, baseline, BLUR["blur_kernel"].default, BLUR["blur_sigma"].default)
    subsets = random_subsets(n_runs, h * w, max(1, int(subset_fraction * h * w)), seed, x.device)
    in_subset = torch.zeros(n_runs, h * w, dtype=torch.bool, device=x.device)
    in_subset.scatter_(1, subsets, True)
    in_subset = in_subset.view(n_runs, 1, h, w)

    classes = score_classes(logits, target, target_class)
    clean = class_score(logits, classes, score)

    def build(images: Tensor, runs: Tensor) -> Tensor:
        return torch.where(in_subset[runs], fill[images], x[images])

    def read(logits: Tensor, images: Tensor) -> Tensor:
        return class_score(logits, classes[images], score)

    perturbed = evaluate_pairs(model, n, n_runs, build, read, chunk, x.device)
    drops = clean.unsqueeze(1) - perturbed
    sums = attributions.flatten(1).double() @ in_subset.flatten(1).double().T
    return MetricResult(scores=as_scores(pearson(sums, drops.double())),
                        extras={"attribution_sums": sums.float().cpu(), "output_drops": drops.cpu(),
                                "classes": classes.cpu()})
