"""Saliency (Simonyan et al. 2014): the gradient of the target logit with respect to the input."""
from __future__ import annotations

import torch
from captum.attr import Saliency
from torch import Tensor, nn

from ..base import Cost, Method
from ..budget import DEFAULT_MEMORY_MB, check_batch, check_memory_mb, rows_for_budget, spans
from ..maps import check_reduction, reduce_channels
from ..registry import register


@register("saliency")
class SaliencyMethod(Method):
    """``|d logit_target / d x|`` from Captum ``Saliency(abs=True)``, channels reduced by ``reduction``
    (default ``max_abs``, as in Simonyan et al.).

    Cost: 1 forward + 1 backward per image. Memory knob: ``batch_size`` images per pass (default:
    as many as ``memory_mb`` holds).
    """

    memory_knobs = ("batch_size",)

    def __init__(self, reduction: str = "max_abs", batch_size: int | None = None,
                 memory_mb: float = DEFAULT_MEMORY_MB) -> None:
        super().__init__(reduction=check_reduction(reduction), batch_size=check_batch("batch_size", batch_size),
                         memory_mb=check_memory_mb(memory_mb))

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        size = self.params["batch_size"] or rows_for_budget(model, x, self.params["memory_mb"], backward=True)
        self.diagnostics["batch_size"] = size
        saliency = Saliency(model)
        # A detached leaf that requires grad: Captum then neither warns nor touches the caller's tensor.
        maps = [reduce_channels(saliency.attribute(x[s].detach().requires_grad_(), target=target[s], abs=True),
                                self.params["reduction"]) for s in spans(len(x), size)]
        return torch.cat(maps)

    def cost(self, **context: object) -> Cost:
        return Cost(forward=1, backward=1)
