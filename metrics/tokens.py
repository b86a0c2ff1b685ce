"""What the token scores share: checks of token maps and evidence, per-sentence ranks, and the
batched [MASK] perturbations.

A token score sees token ids ``x`` (N, L) of a text model (:mod:`adapters.modality`), maps (N, L)
and, for localisation, the evidence positions (N, L). Only the *editable* tokens (not [CLS], [SEP],
[PAD]: ``model.editable``) are ranked, removed or counted; each sentence is ranked on its own map
(ties broken by a seeded permutation of the positions, as for pixels), so a score never depends on
the other sentences of the batch. A removed token is replaced by ``model.replacement_id`` ([MASK]),
the value the perturbation methods hide tokens with; the sentence keeps its length and positions.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .perturb import evaluate_pairs, rows_per_chunk
from .ranking import rank_positions, tie_break_permutation
from .similarity import spearman
from .validation import MetricInputError, check_model_inputs


def check_token_inputs(model: nn.Module, x: Tensor, target: Tensor | int, attributions: Any) -> tuple[Tensor, Tensor]:
    """(target (N,), attributions (N, L) float32) checked against the text contract."""
    if getattr(model, "modality", "image") != "text":
        raise MetricInputError("this score is defined on token models (ids (N, L)); the model takes images")
    target = check_model_inputs(model, x, target)
    if not isinstance(attributions, Tensor) or not attributions.is_floating_point():
        raise MetricInputError(f"attributions must be a floating-point tensor, got {type(attributions).__name__}")
    if tuple(attributions.shape) != tuple(x.shape):
        raise MetricInputError(f"attributions must have the token ids' shape {tuple(x.shape)}, "
                               f"got {tuple(attributions.shape)}")
    if attributions.device != x.device:
        raise MetricInputError(f"attributions are on {attributions.device} but x is on {x.device}")
    if not torch.isfinite(attributions).all():
        raise MetricInputError("attributions contain NaN or infinite values")
    return target, attributions.float()


def check_evidence(mask: Any, x: Tensor) -> Tensor:
    """The evidence positions as (N, L) bool on ``x``'s device."""
    if not isinstance(mask, Tensor) or tuple(mask.shape) != tuple(x.shape):
        shape = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise MetricInputError(f"mask must be the evidence positions, shape {tuple(x.shape)}, got {shape}")
    if mask.dtype != torch.bool and not ((mask == 0) | (mask == 1)).all():
        raise MetricInputError("mask must be boolean or hold only 0 and 1")
    return (mask != 0).to(x.device)


def token_ranks(model: nn.Module, x: Tensor, attributions: Tensor, seed: int) -> tuple[Tensor, Tensor]:
    """(ranks (N, L), editable counts (N,)): rank 0 is the most relevant editable token; fixed
    positions rank after every editable one."""
    editable = model.editable(x)
    values = attributions.masked_fill(~editable, float("-inf"))
    permutation = tie_break_permutation(x.shape[1], seed, x.device)
    _, order = torch.sort(values[:, permutation], dim=1, descending=True, stable=True)
    return rank_positions(permutation[order]), editable.sum(dim=1)


def masked_probabilities(model: nn.Module, x: Tensor, classes: Tensor, ranks: Tensor, counts: Tensor, *,
                         keep_top: bool, device_budget_bytes: int | None) -> Tensor:
    """(N, S) softmax probability of ``classes`` when, per sentence i and step s, the ``counts[i, s]``
    top-ranked editable tokens are replaced by [MASK] (``keep_top=False``) or are the only editable
    tokens kept (``keep_top=True``). Batched over sentences and steps."""
    n, steps = counts.shape
    editable = model.editable(x)
    replacement = torch.full_like(x, model.replacement_id)

    def build(images: Tensor, step: Tensor) -> Tensor:
        top = ranks[images] < counts[images, step].unsqueeze(1)
        hide = editable[images] & (~top if keep_top else top)
        return torch.where(hide, replacement[images], x[images])

    def read(logits: Tensor, images: Tensor) -> Tensor:
        return logits.float().softmax(1).gather(1, classes[images].view(-1, 1)).squeeze(1)

    return evaluate_pairs(model, n, steps, build, read, rows_per_chunk(model, x, device_budget_bytes), x.device)


def sentence_spearman(model: nn.Module, x: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """(N,) float64 Spearman correlation of |a| and |b| over each sentence's editable tokens (NaN
    for a constant map or fewer than two tokens)."""
    editable = model.editable(x)
    out = torch.full((x.shape[0],), float("nan"), dtype=torch.float64, device=x.device)
    for i in range(x.shape[0]):
        keep = editable[i]
        if int(keep.sum()) >= 2:
            out[i] = spearman(a[i:i + 1, keep].abs(), b[i:i + 1, keep].abs())[0]
    return out
