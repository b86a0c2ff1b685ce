"""What chosen filters of a layer output on real images."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .layers import FilterError, check_filters, layer_output, untouched


@torch.no_grad()
def filter_activations(model: nn.Module, layer: str, filters: Sequence[int], images_x: Tensor,
                       *, batch_size: int = 64) -> Tensor:
    """Activation maps of ``filters`` of ``layer`` on preprocessed images.

    ``images_x``: (N, 3, H, W) model input on the model's device. Returns (N, F, h, w) float, the
    layer's channels ``filters`` in the given order, at the layer's resolution. Runs in eval mode
    in chunks of ``batch_size`` images; the model is left as it was.
    """
    if images_x.dim() != 4:
        raise FilterError(f"images must be (N, C, H, W), got shape {tuple(images_x.shape)}")
    if images_x.shape[0] == 0:
        raise FilterError("no images given")
    filters = list(filters)
    if not filters:
        raise FilterError("no filters given: pass at least one channel index")
    chunks = []
    with untouched(model):
        for start in range(0, images_x.shape[0], batch_size):
            output = layer_output(model, layer, images_x[start:start + batch_size])
            index = torch.tensor(check_filters(filters, output.shape[1], layer), device=output.device)
            chunks.append(output.index_select(1, index).float())
    return torch.cat(chunks)


@torch.no_grad()
def most_active_filters(model: nn.Module, layer: str, images_x: Tensor, n: int, *,
                        max_correlation: float = 0.8) -> list[int]:
    """``n`` strongly responding, mutually different channels of ``layer`` on ``images_x``, in index order.

    The default choice of filters to show. Channels are taken greedily by peak activation (the
    peak, unlike the mean, favours filters that fire strongly on something, an object part, over
    ones that respond weakly everywhere, like background colour), skipping a channel whose maps
    correlate above ``max_correlation`` with one already taken: trained layers hold groups of
    near-duplicate filters, and eight panels of one detector say little. Silent channels come last.
    Deterministic (ties go to the lower index).
    """
    if n < 1:
        raise FilterError(f"n_filters must be at least 1, got {n}")
    with untouched(model):
        output = layer_output(model, layer, images_x)
    maps = output.float().transpose(0, 1).flatten(1).cpu()  # (C, N*h*w)
    peak = maps.amax(dim=1)
    centred = maps - maps.mean(dim=1, keepdim=True)
    unit = centred / centred.norm(dim=1, keepdim=True).clamp_min(1e-12)
    order = sorted(range(maps.shape[0]), key=lambda c: (-float(peak[c]), c))
    chosen: list[int] = []
    for c in order:
        if len(chosen) == n or peak[c] <= 0:
            break
        if all(float(unit[c] @ unit[k]) <= max_correlation for k in chosen):
            chosen.append(c)
    # Too few distinct responders (a small or random layer): fill up in peak order.
    chosen += [c for c in order if c not in chosen][:n - len(chosen)]
    return sorted(chosen)
