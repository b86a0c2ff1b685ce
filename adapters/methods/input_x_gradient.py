"""Input x Gradient (Shrikumar et al. 2016): the input times the gradient of the target logit."""
from __future__ import annotations

from captum.attr import InputXGradient
from torch import Tensor, nn

from ..base import Cost, Method
from ..budget import DEFAULT_MEMORY_MB, check_batch, check_memory_mb
from ..gradients import batched_gradient_maps
from ..maps import check_reduction
from ..modality import is_token_model
from ..registry import register
from ..token_gradients import gradient_maps


@register("input_x_gradient")
class InputXGradientMethod(Method):
    """Captum ``InputXGradient``: ``x * d logit_target / d x``, channels reduced by ``reduction``
    (default ``sum``: signed, each pixel's first-order contribution to the logit, i.e. Integrated
    Gradients with one step from a zero baseline).

    Cost: 1 forward + 1 backward per image. Memory knob: ``batch_size`` images per pass (default:
    as many as ``memory_mb`` holds).

    Text: ``e * d logit_target / d e`` for the word embedding e of each token (Captum
    ``LayerGradientXActivation`` on the embedding layer), summed over the embedding dimension by
    default (:mod:`adapters.token_gradients`).
    """

    modalities = ("image", "text")
    memory_knobs = ("batch_size",)

    def __init__(self, reduction: str = "sum", batch_size: int | None = None,
                 memory_mb: float = DEFAULT_MEMORY_MB) -> None:
        super().__init__(reduction=check_reduction(reduction), batch_size=check_batch("batch_size", batch_size),
                         memory_mb=check_memory_mb(memory_mb))

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        if is_token_model(model):
            return gradient_maps(self, model, x, target, multiply=True, absolute=False)
        method = InputXGradient(model)
        return batched_gradient_maps(self, model, x, target, lambda xs, ts: method.attribute(xs, target=ts))

    def cost(self, **context: object) -> Cost:
        return Cost(forward=1, backward=1)
