"""Saliency (Simonyan et al. 2014): the gradient of the target logit with respect to the input."""
from __future__ import annotations

from captum.attr import Saliency
from torch import Tensor, nn

from ..base import Cost, Method
from ..budget import DEFAULT_MEMORY_MB, check_batch, check_memory_mb
from ..gradients import batched_gradient_maps
from ..maps import check_reduction
from ..modality import is_token_model
from ..registry import register
from ..token_gradients import gradient_maps


@register("saliency")
class SaliencyMethod(Method):
    """``|d logit_target / d x|`` from Captum ``Saliency(abs=True)``, channels reduced by ``reduction``
    (default ``max_abs``, as in Simonyan et al.).

    Cost: 1 forward + 1 backward per image. Memory knob: ``batch_size`` images per pass (default:
    as many as ``memory_mb`` holds).

    Text: ``|d logit_target / d e|`` for the word embedding e of each token (Captum
    ``LayerGradientXActivation(multiply_by_inputs=False)`` on the embedding layer), reduced over the
    embedding dimension by ``reduction`` (:mod:`adapters.token_gradients`).
    """

    modalities = ("image", "text")
    memory_knobs = ("batch_size",)

    def __init__(self, reduction: str = "max_abs", batch_size: int | None = None,
                 memory_mb: float = DEFAULT_MEMORY_MB) -> None:
        super().__init__(reduction=check_reduction(reduction), batch_size=check_batch("batch_size", batch_size),
                         memory_mb=check_memory_mb(memory_mb))

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        if is_token_model(model):
            return gradient_maps(self, model, x, target, multiply=False, absolute=True)
        saliency = Saliency(model)
        return batched_gradient_maps(self, model, x, target, lambda xs, ts: saliency.attribute(xs, target=ts, abs=True))

    def cost(self, **context: object) -> Cost:
        return Cost(forward=1, backward=1)
