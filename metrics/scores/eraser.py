"""Comprehensiveness and sufficiency (DeYoung et al. 2020, ERASER), at 1, 5, 10, 20 and 50 %.

For each fraction q the rationale is the sentence's ceil(q * n) most relevant editable tokens (at
least one; n the number of editable tokens, ties by ``seed``). Comprehensiveness: p(x) - p(x
without the rationale), higher is better (the rationale was needed). Sufficiency: p(x) - p(the
rationale alone), lower is better (the rationale suffices). p is the softmax probability of the
class predicted on the clean sentence (or of the target). The score is the mean over the
fractions (ERASER's AOPC form); ``curves`` hold the per-fraction values over ``curve_x`` = the
fractions. Removal differs from ERASER's in one documented way: a removed token is replaced by
[MASK] (:mod:`metrics.tokens`) instead of cut out, so positions do not shift.

Cost: one forward per sentence and fraction, plus the clean sentence.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..outputs import score_classes, target_class_param
from ..params import Fractions
from ..perturb import clean_logits, rows_per_chunk
from ..registry import MetricResult, as_scores, register
from ..tokens import check_token_inputs, masked_probabilities, token_ranks

FRACTIONS = (0.01, 0.05, 0.1, 0.2, 0.5)
_PARAMS = {"fractions": Fractions(FRACTIONS, max_length=32), "target_class": target_class_param("predicted")}


def eraser_curves(model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor, *, keep_top: bool, seed: int,
                  device_budget_bytes: int | None, fractions: tuple[float, ...], target_class: str) -> MetricResult:
    target, attributions = check_token_inputs(model, x, target, attributions)
    logits = clean_logits(model, x, rows_per_chunk(model, x, device_budget_bytes))
    classes = score_classes(logits, target, target_class)
    clean = logits.float().softmax(1).gather(1, classes[:, None])
    ranks, n_editable = token_ranks(model, x, attributions, seed)
    q = torch.tensor(fractions, dtype=torch.float64, device=x.device)
    counts = torch.ceil(q[None] * n_editable[:, None].double() - 1e-9).long().clamp(min=1)
    counts = torch.minimum(counts, n_editable[:, None])
    perturbed = masked_probabilities(model, x, classes, ranks, counts, keep_top=keep_top,
                                     device_budget_bytes=device_budget_bytes)
    drops = clean - perturbed
    return MetricResult(scores=as_scores(drops.mean(dim=1)), curves=as_scores(drops), curve_x=q.float().cpu(),
                        extras={"classes": classes.cpu(), "rationale_tokens": counts.cpu()})


@register("eraser_comprehensiveness", category="faithfulness", direction="higher", params=_PARAMS,
          bounds=(-1.0, 1.0), modalities=("text",))
def eraser_comprehensiveness(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor, seed: int = 0,
                             device_budget_bytes: int | None = None, fractions: tuple[float, ...] = FRACTIONS,
                             target_class: str = "predicted") -> MetricResult:
    """ERASER comprehensiveness: mean drop of the probability when the top q of the tokens are masked."""
    return eraser_curves(model, x, target, attributions, keep_top=False, seed=seed,
                         device_budget_bytes=device_budget_bytes, fractions=fractions, target_class=target_class)


@register("eraser_sufficiency", category="faithfulness", direction="lower", params=_PARAMS,
          bounds=(-1.0, 1.0), modalities=("text",))
def eraser_sufficiency(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor, seed: int = 0,
                       device_budget_bytes: int | None = None, fractions: tuple[float, ...] = FRACTIONS,
                       target_class: str = "predicted") -> MetricResult:
    """ERASER sufficiency: mean drop of the probability when only the top q of the tokens are kept."""
    return eraser_curves(model, x, target, attributions, keep_top=True, seed=seed,
                         device_budget_bytes=device_budget_bytes, fractions=fractions, target_class=target_class)
