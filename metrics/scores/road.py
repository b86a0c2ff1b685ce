"""ROAD: RemOve And Debias (Rong et al. 2022), MoRF and LeRF.

For every fraction p, remove the top p of pixel positions (MoRF) or the bottom p (LeRF; p is the
fraction *removed* in both orders, unlike the reference's LeRF where p is the fraction kept), fill them
by noisy linear imputation (:mod:`metrics.imputation`, plus N(0, noise_std^2) noise drawn from
``seed``), and read the model. Per image and fraction we keep the probability of the scored class
(the clean prediction by default; the reference ``run_road`` reads class 0 by mistake) and whether
the perturbed prediction still equals ``target`` (ROAD's accuracy). The score is the mean of the
probability curve over the fractions: ``road_morf`` lower is better, ``road_lerf`` higher is better,
``road`` = (LeRF - MoRF) / 2 (higher is better; pytorch-grad-cam's ROADCombined).

Cost: len(fractions) forward passes per image and order, plus one clean pass, plus the imputation.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ..imputation import DEFAULT_TOL, imputation_noise, noisy_linear_impute
from ..outputs import class_score, score_classes, score_param, target_class_param
from ..params import Float, Fractions
from ..perturb import clean_logits, evaluate_pairs, rows_per_chunk
from ..ranking import pixel_ranks
from ..registry import MetricResult, as_scores, register
from ..validation import check_attributions, check_model_inputs

FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
# Each fraction costs a forward pass and an imputation per image and order, and a noise field of the
# image's size: 256 fractions (every 0.4 %) is far past the reference's 9. Removing 0 or 100 % leaves
# nothing to impute from. noise_std 0 is plain linear imputation (ROAD's ablation); a solver
# tolerance of 1 or more would stop before the first iteration.
_PARAMS = {"fractions": Fractions(FRACTIONS, max_length=256), "noise_std": Float(0.01, low=0.0),
           "score": score_param("probability"), "target_class": target_class_param("predicted"),
           "solver_tol": Float(DEFAULT_TOL, low=0.0, high=1.0, open_low=True, open_high=True)}


def road_curves(model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor, *,
                orders: Sequence[str], seed: int, device_budget_bytes: int | None, fractions: Sequence[float],
                noise_std: float, score: str, target_class: str, solver_tol: float) -> dict[str, Tensor]:
    """Probability and correctness curves for each order in ``orders`` ("morf", "lerf").

    Shapes: x (N, C, H, W), attributions (N, 1, H, W). Returns ``{order: probs (N, P)}``,
    ``{order + "_correct": bool (N, P)}`` and ``"classes"`` (N,), P = len(fractions).
    """
    target = check_model_inputs(model, x, target)
    attributions = check_attributions(attributions, x)
    n, c, h, w = x.shape
    n_fractions = len(fractions)
    # The solver keeps about twenty input-sized buffers per row, the multigrid levels included (see
    # metrics.imputation and metrics.multigrid).
    chunk = rows_per_chunk(model, x, device_budget_bytes, extra_bytes_per_row=24 * x[0].numel() * x.element_size())
    classes = score_classes(clean_logits(model, x, chunk), target, target_class)
    ranks = pixel_ranks(attributions, seed)
    removed_counts = torch.tensor([int(h * w * p) for p in fractions], device=x.device)
    lerf_steps = torch.tensor([order == "lerf" for order in orders], device=x.device)
    noise = imputation_noise(n_fractions, (c, h, w), noise_std, seed, x.device)

    def build(images: Tensor, steps: Tensor) -> Tensor:
        fraction = steps % n_fractions
        count = removed_counts[fraction].view(-1, 1, 1, 1)
        rank = ranks[images]
        removed = torch.where(lerf_steps[steps // n_fractions].view(-1, 1, 1, 1), rank >= h * w - count, rank < count)
        return noisy_linear_impute(x[images], removed, noise[fraction], tol=solver_tol)

    def read(logits: Tensor, images: Tensor) -> Tensor:
        correct = (logits.argmax(1) == target[images]).float()
        return torch.stack([class_score(logits, classes[images], score), correct], dim=1)

    values = evaluate_pairs(model, n, len(orders) * n_fractions, build, read, chunk, x.device)
    out: dict[str, Tensor] = {"classes": classes}
    for k, order in enumerate(orders):
        block = values[:, k * n_fractions:(k + 1) * n_fractions]
        out[order] = block[..., 0]
        out[order + "_correct"] = block[..., 1] > 0.5
    return out


def _result(curves: dict[str, Tensor], order: str, fractions: Sequence[float]) -> MetricResult:
    return MetricResult(scores=as_scores(curves[order].mean(1)), curves=as_scores(curves[order]),
                        curve_x=torch.tensor(list(fractions), dtype=torch.float32),
                        extras={"correct": curves[order + "_correct"].cpu(), "classes": curves["classes"].cpu()})


def _one_order(order: str, direction: str, description: str) -> None:
    """Register ROAD for one removal order (``morf`` or ``lerf``): the two differ only in order and
    direction. Scores (N,) = mean probability over ``fractions``, curves (N, P) over ``fractions``,
    extras ``correct`` (N, P) bool."""

    def single_order(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor, seed: int = 0,
                     device_budget_bytes: int | None = None, fractions: Sequence[float] = FRACTIONS,
                     noise_std: float = 0.01, score: str = "probability", target_class: str = "predicted",
                     solver_tol: float = DEFAULT_TOL) -> MetricResult:
        curves = road_curves(model, x, target, attributions, orders=(order,), seed=seed,
                             device_budget_bytes=device_budget_bytes, fractions=fractions, noise_std=noise_std,
                             score=score, target_class=target_class, solver_tol=solver_tol)
        return _result(curves, order, fractions)

    single_order.__doc__ = description
    register(f"road_{order}", category="faithfulness", direction=direction, params=_PARAMS)(single_order)


_one_order("morf", "lower", "ROAD, most relevant first: mean probability over the fractions removed; lower is better.")
_one_order("lerf", "higher", "ROAD, least relevant first: mean probability over the fractions removed; higher is better.")


@register("road", category="faithfulness", direction="higher", params=_PARAMS)
def road(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor, seed: int = 0,
         device_budget_bytes: int | None = None, fractions: Sequence[float] = FRACTIONS,
         noise_std: float = 0.01, score: str = "probability", target_class: str = "predicted",
         solver_tol: float = DEFAULT_TOL) -> MetricResult:
    """ROAD combined, (LeRF - MoRF) / 2 of the mean probabilities; higher is better. Both orders share
    one batched pass. Scores (N,), curves (N, P) = (LeRF - MoRF) / 2 per fraction, extras carry both
    curves and their ``correct`` flags."""
    curves = road_curves(model, x, target, attributions, orders=("morf", "lerf"), seed=seed,
                         device_budget_bytes=device_budget_bytes, fractions=fractions, noise_std=noise_std,
                         score=score, target_class=target_class, solver_tol=solver_tol)
    combined = (curves["lerf"] - curves["morf"]) / 2
    extras = {name: value.cpu() for name, value in curves.items()}
    return MetricResult(scores=as_scores(combined.mean(1)), curves=as_scores(combined),
                        curve_x=torch.tensor(list(fractions), dtype=torch.float32), extras=extras)
