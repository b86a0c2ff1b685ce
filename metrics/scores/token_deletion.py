"""Token deletion and insertion curves: RISE's protocol (Petsiuk et al. 2018) on tokens.

Deletion replaces the editable tokens of a sentence by [MASK], most relevant first; insertion
starts from the sentence with every editable token masked and puts them back in the same order.
After step s of S, floor(s * n / S) of the sentence's n editable tokens are changed, so the curve's
x axis is the fraction of tokens changed, in [0, 1] with both endpoints, whatever the sentence's
length. Score: the softmax probability of the class predicted on the clean sentence (``target_class
= "predicted"``) or of the target. AUC: the trapezoid over [0, 1] (normalised, so it does not grow
with S). Ranking and replacement: :mod:`metrics.tokens`.

Cost: S + 1 forwards per sentence.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..outputs import score_classes, target_class_param
from ..params import Int
from ..perturb import clean_logits, rows_per_chunk, trapezoid_auc
from ..registry import MetricResult, as_scores, register
from ..tokens import check_token_inputs, masked_probabilities, token_ranks

# At most one token per step on the longest sentences a BERT takes (512 positions).
_PARAMS = {"n_steps": Int(16, low=1, high=512), "target_class": target_class_param("predicted")}


def token_curves(model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor, *, insert: bool, seed: int,
                 device_budget_bytes: int | None, n_steps: int, target_class: str) -> MetricResult:
    target, attributions = check_token_inputs(model, x, target, attributions)
    logits = clean_logits(model, x, rows_per_chunk(model, x, device_budget_bytes))
    classes = score_classes(logits, target, target_class)
    ranks, n_editable = token_ranks(model, x, attributions, seed)
    fractions = torch.arange(n_steps + 1, dtype=torch.float64, device=x.device) / n_steps
    counts = torch.floor(fractions[None] * n_editable[:, None].double() + 1e-9).long()
    # Insertion keeps the top-k tokens and masks the rest: "put back the k most relevant".
    curves = masked_probabilities(model, x, classes, ranks, counts, keep_top=insert,
                                  device_budget_bytes=device_budget_bytes)
    return MetricResult(scores=as_scores(trapezoid_auc(curves.double(), fractions)), curves=as_scores(curves),
                        curve_x=fractions.float().cpu(), extras={"classes": classes.cpu()})


@register("token_deletion", category="faithfulness", direction="lower", params=_PARAMS, bounds=(0.0, 1.0),
          modalities=("text",))
def token_deletion(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor, seed: int = 0,
                   device_budget_bytes: int | None = None, n_steps: int = 16,
                   target_class: str = "predicted") -> MetricResult:
    """Token deletion AUC: mask the most relevant tokens first; lower is better. Scores (N,), curves
    (N, n_steps + 1) over the fraction of editable tokens masked."""
    return token_curves(model, x, target, attributions, insert=False, seed=seed,
                        device_budget_bytes=device_budget_bytes, n_steps=n_steps, target_class=target_class)


@register("token_insertion", category="faithfulness", direction="higher", params=_PARAMS, bounds=(0.0, 1.0),
          modalities=("text",))
def token_insertion(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor, seed: int = 0,
                    device_budget_bytes: int | None = None, n_steps: int = 16,
                    target_class: str = "predicted") -> MetricResult:
    """Token insertion AUC: from the fully masked sentence, put the most relevant tokens back first;
    higher is better. Scores (N,), curves (N, n_steps + 1) over the fraction of tokens put back."""
    return token_curves(model, x, target, attributions, insert=True, seed=seed, device_budget_bytes=device_budget_bytes,
                        n_steps=n_steps, target_class=target_class)
