"""The gradient methods on token models: Captum's layer variants on the word-embedding layer.

Token ids are integers, so gradients are taken with respect to the output of the model's
word-embedding layer (``model.embeddings``, :class:`adapters.token_model.TokenClassifier`), one
(E,) vector per token, and reduced over the embedding dimension with the method's own
``reduction`` exactly as an image method reduces over channels (the embedding dimension plays the
channels' part): saliency ``max_abs`` of |dy/de|, input x gradient and integrated gradients the
signed ``sum`` of e * dy/de (completeness: the map sums to the logit change, before [CLS] and
[SEP] are zeroed by the contract). Integrated gradients starts from the embedding of the
baseline sentence: every editable token replaced by ``model.replacement_id`` ([MASK]), [CLS],
[SEP] and padding kept (Captum ``LayerIntegratedGradients``, which interpolates the layer's
output while the attention mask stays the input's).
"""
from __future__ import annotations

import torch
from captum.attr import LayerGradientXActivation, LayerIntegratedGradients
from torch import Tensor, nn

from .base import Method
from .budget import rows_for_budget, spans
from .maps import reduce_channels


def reduce_embedding(attributions: Tensor, reduction: str) -> Tensor:
    """(N, L, E) -> (N, L) with the named channel reduction over E (:func:`adapters.maps.reduce_channels`)."""
    n, length, _ = attributions.shape
    return reduce_channels(attributions.permute(0, 2, 1).unsqueeze(-1), reduction).reshape(n, length)


def baseline_ids(model: nn.Module, ids: Tensor) -> Tensor:
    """``ids`` with every editable position holding the replacement token ([MASK])."""
    return torch.where(model.editable(ids), torch.full_like(ids, model.replacement_id), ids)


def gradient_maps(method: Method, model: nn.Module, ids: Tensor, target: Tensor, *, multiply: bool,
                  absolute: bool) -> Tensor:
    """dy/de (``multiply=False``; its absolute value with ``absolute``) or e * dy/de, reduced over E,
    ``method.params["batch_size"]`` sentences per pass (default: the budget's)."""
    size = method.params["batch_size"] or rows_for_budget(model, ids, method.params["memory_mb"], backward=True)
    method.diagnostics["batch_size"] = size
    layer = LayerGradientXActivation(model, model.embeddings, multiply_by_inputs=multiply)
    maps = []
    for s in spans(len(ids), size):
        attributions = layer.attribute(ids[s], target=target[s])
        maps.append(reduce_embedding(attributions.abs() if absolute else attributions, method.params["reduction"]))
    return torch.cat(maps)


def integrated_gradient_maps(method: Method, model: nn.Module, ids: Tensor,
                             target: Tensor) -> tuple[Tensor, Tensor | None]:
    """Captum ``LayerIntegratedGradients`` on the embedding layer from :func:`baseline_ids`;
    (maps (N, L), convergence deltas (N,) or None)."""
    params = method.params
    rows = params["internal_batch_size"] or rows_for_budget(model, ids, params["memory_mb"], backward=True)
    method.diagnostics["internal_batch_size"] = rows
    layer = LayerIntegratedGradients(model, model.embeddings)
    maps, deltas = [], []
    for s in spans(len(ids), rows):
        out = layer.attribute(ids[s], baselines=baseline_ids(model, ids[s]), target=target[s],
                              n_steps=params["n_steps"], method=params["integration"], internal_batch_size=rows,
                              return_convergence_delta=params["convergence_delta"])
        attributions, delta = out if params["convergence_delta"] else (out, None)
        maps.append(reduce_embedding(attributions, params["reduction"]))
        if delta is not None:
            deltas.append(delta.detach().float())
    return torch.cat(maps), (torch.cat(deltas) if deltas else None)


def forward_with_embedding_leaf(model: nn.Module, ids: Tensor) -> tuple[Tensor, Tensor]:
    """(logits, leaf): ``model(ids)`` with the word-embedding layer's output replaced by an equal
    leaf that requires grad, so ``torch.autograd.grad(logits..., leaf)`` is the input-gradient pass
    the gradient methods run on tokens (what a roofline times). The hook is removed on return."""
    leaves: list[Tensor] = []

    def as_leaf(_module: nn.Module, _inputs: tuple, output: Tensor) -> Tensor:
        leaves.append(output.detach().requires_grad_())
        return leaves[-1]

    handle = model.embeddings.register_forward_hook(as_leaf)
    try:
        with torch.enable_grad():
            logits = model(ids)
    finally:
        handle.remove()
    return logits, leaves[0]
