"""The batching loop shared by the single-backward gradient methods (saliency, guided backprop)."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from .base import Method
from .budget import rows_for_budget, spans
from .maps import reduce_channels


def batched_gradient_maps(method: Method, model: nn.Module, x: Tensor, target: Tensor,
                          attribute: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """``attribute(inputs, targets) -> (n,C,H,W)`` over batches of ``method.params["batch_size"]``
    images (default: what ``memory_mb`` holds), channels reduced by ``method.params["reduction"]``.

    Each batch is a detached leaf that requires grad: Captum then neither warns nor touches the
    caller's tensor.
    """
    size = method.params["batch_size"] or rows_for_budget(model, x, method.params["memory_mb"], backward=True)
    method.diagnostics["batch_size"] = size
    return torch.cat([reduce_channels(attribute(x[s].detach().requires_grad_(), target[s]), method.params["reduction"])
                      for s in spans(len(x), size)])
