"""Localisation on tokens: does the map rank the ground-truth evidence tokens first?

Both scores look at each sentence's editable tokens only (not [CLS], [SEP], [PAD]) and at its own
map (no normalisation across sentences). A sentence whose evidence is empty, or covers every
editable token, has no score (NaN): there is nothing to separate (never counted as a hit).

- ``token_localisation_auc``: the ROC AUC of the map's values as a detector of the evidence tokens
  (the probability that an evidence token outranks a non-evidence token, ties counting one half):
  1 = every evidence token first, 0.5 = chance, the random control's level.
- ``token_top_k_precision``: the share of evidence among the k highest-ranked tokens, k the number
  of evidence tokens (``k=None``, the default, as relevance rank accuracy) or a fixed k (capped at
  the sentence's length); ties broken by ``seed`` as in the removal scores.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..params import Int, OrNone
from ..registry import MetricResult, as_scores, register
from ..tokens import check_evidence, check_token_inputs, token_ranks


@register("token_localisation_auc", category="localisation", direction="higher", inputs=("mask",),
          bounds=(0.0, 1.0), modalities=("text",))
def token_localisation_auc(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor,
                           mask: Tensor, seed: int = 0, **_: object) -> MetricResult:
    """ROC AUC (N,) of the map against the evidence tokens; higher is better, 0.5 is chance."""
    _, attributions = check_token_inputs(model, x, target, attributions)
    evidence = check_evidence(mask, x)
    editable = model.editable(x)
    scores = torch.full((x.shape[0],), float("nan"), dtype=torch.float64)
    for i in range(x.shape[0]):
        values, positive = attributions[i, editable[i]].double(), evidence[i, editable[i]]
        pos, neg = values[positive], values[~positive]
        if len(pos) and len(neg):
            greater = (pos[:, None] > neg[None, :]).double().mean()
            ties = (pos[:, None] == neg[None, :]).double().mean()
            scores[i] = float(greater + 0.5 * ties)
    return MetricResult(scores=as_scores(scores))


@register("token_top_k_precision", category="localisation", direction="higher", inputs=("mask",),
          params={"k": OrNone(Int(1, low=1, high=512), default=None)}, bounds=(0.0, 1.0), modalities=("text",))
def token_top_k_precision(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor, mask: Tensor,
                          seed: int = 0, k: int | None = None, **_: object) -> MetricResult:
    """Share (N,) of evidence among the top-k tokens (k = number of evidence tokens by default)."""
    _, attributions = check_token_inputs(model, x, target, attributions)
    evidence = check_evidence(mask, x) & model.editable(x)
    ranks, n_editable = token_ranks(model, x, attributions, seed)
    scores = torch.full((x.shape[0],), float("nan"), dtype=torch.float64)
    for i in range(x.shape[0]):
        n_evidence = int(evidence[i].sum())
        if 0 < n_evidence < int(n_editable[i]):
            top = min(k or n_evidence, int(n_editable[i]))
            scores[i] = float((evidence[i] & (ranks[i] < top)).sum()) / top
    return MetricResult(scores=as_scores(scores))
