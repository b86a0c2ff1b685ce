"""Occlusion and Kernel SHAP over tokens: Captum's own methods, with [MASK] as the hidden value.

A removed token is replaced by the model's ``replacement_id`` ([MASK] for the zoo's BERT, which was
trained with [MASK] word dropout so that it reads it as "no word here"). Captum is given the ids
with a baseline tensor equal to [MASK] at the editable positions and to the ids themselves at
[CLS], [SEP] and padding: hiding one of those changes nothing, so neither the attention mask nor
the special tokens are ever perturbed.

Occlusion: one token at a time (window 1, stride 1; the image parameters ``window`` and ``stride``
count pixels and are not used), each token's value the target-logit drop when it is hidden.
Kernel SHAP: each editable token is its own feature (the fixed positions share one feature that
changes nothing, whose coefficient is dropped), coalitions drawn from torch's global generator
seeded per sentence, as for images.
"""
from __future__ import annotations

import torch
from captum.attr import KernelShap, Occlusion
from torch import Tensor, nn

from .base import Method
from .budget import rows_for_budget, spans
from .segment_attribution import seeded_global_rng
from .seeding import image_seeds
from .token_gradients import baseline_ids


def occlusion_maps(method: Method, model: nn.Module, ids: Tensor, target: Tensor) -> Tensor:
    """(N, L) target-logit drops, one forward per token position (+1 for the unoccluded sentence)."""
    rows = rows_for_budget(model, ids, method.params["memory_mb"], backward=False)
    ppe = method.params["perturbations_per_eval"] or max(1, min(ids.shape[1], rows))
    method.diagnostics["perturbations_per_eval"] = ppe
    occlusion = Occlusion(model)
    maps = []
    for s in spans(len(ids), max(1, rows // ppe)):
        maps.append(occlusion.attribute(ids[s], sliding_window_shapes=(1,), strides=(1,),
                                        baselines=baseline_ids(model, ids[s]), target=target[s],
                                        perturbations_per_eval=ppe).float())
    return torch.cat(maps)


def token_features(model: nn.Module, ids: Tensor) -> Tensor:
    """(N, L) Captum feature mask: 0 for the fixed positions, 1..k for the editable tokens in order."""
    editable = model.editable(ids)
    return torch.where(editable, editable.long().cumsum(dim=1), torch.zeros_like(ids))


def kernel_shap_maps(method: Method, model: nn.Module, ids: Tensor, target: Tensor) -> Tensor:
    """(N, L) Kernel SHAP coefficients of the tokens, ``n_samples`` coalitions per sentence."""
    n = method.params["n_samples"]
    ppe = method.params["perturbations_per_eval"] or max(1, min(n, rows_for_budget(
        model, ids, method.params["memory_mb"], backward=False)))
    method.diagnostics["perturbations_per_eval"] = ppe
    features = token_features(model, ids)
    maps = []
    for i, seed in enumerate(image_seeds(ids, method.params["seed"])):
        with seeded_global_rng(seed):
            maps.append(KernelShap(model).attribute(ids[i:i + 1], baselines=baseline_ids(model, ids[i:i + 1]),
                                                    target=target[i:i + 1], feature_mask=features[i:i + 1],
                                                    n_samples=n, perturbations_per_eval=ppe).float())
    return torch.cat(maps)
