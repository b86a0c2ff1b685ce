"""Guided Backprop (Springenberg et al. 2015): the negative control of the sanity checks.

Adebayo et al. (2018) show its maps barely change when the model's weights are randomised: it acts
as an edge detector. It is kept so that the checks have a method they must flag.
"""
from __future__ import annotations

import warnings

from torch import Tensor, nn

from ..base import Cost, Method
from ..budget import DEFAULT_MEMORY_MB, check_batch, check_memory_mb
from ..gradients import batched_gradient_maps
from ..maps import check_reduction
from ..rectifiers import RectifiedGuidedBackprop, check_guided_rectifiers
from ..registry import register


@register("guided_backprop")
class GuidedBackpropMethod(Method):
    """Captum's ``GuidedBackprop`` rule (at each rectifier, the gradient clamped to positive on the
    way back) at every rectifier module: ``nn.ReLU`` as Captum, and also ``nn.ReLU6`` / ``nn.Hardtanh``
    clipped at 0, which Captum skips (on MobileNetV2 or EfficientNet-Lite it would return the plain
    gradient). Identical to Captum's numbers on a network of ``nn.ReLU`` modules. Channels reduced by
    ``reduction`` (default ``max_abs``, like saliency).

    Refused with an AttributionError (see :mod:`adapters.rectifiers`): a model whose activations
    include a non-rectifier (GELU, SiLU, LeakyReLU, Hardswish, ...) or a rectifier called as a
    function (``F.relu``), or a model with no rectifier at all -- the map would silently be (partly)
    the plain gradient. ``diagnostics["rectifiers"]``: how many rectifier calls were guided.

    Cost: 1 forward + 1 backward per image. Memory knob: ``batch_size`` images per pass.
    """

    memory_knobs = ("batch_size",)

    def __init__(self, reduction: str = "max_abs", batch_size: int | None = None,
                 memory_mb: float = DEFAULT_MEMORY_MB) -> None:
        super().__init__(reduction=check_reduction(reduction), batch_size=check_batch("batch_size", batch_size),
                         memory_mb=check_memory_mb(memory_mb))

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        self.diagnostics["rectifiers"] = check_guided_rectifiers(model, x, self.name)
        guided = RectifiedGuidedBackprop(model)
        with warnings.catch_warnings():
            # Captum announces the temporary hooks on every call; they are removed afterwards
            # (Method.attribute checks that).
            warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
            return batched_gradient_maps(self, model, x, target, lambda xs, ts: guided.attribute(xs, target=ts))

    def cost(self, **context: object) -> Cost:
        return Cost(forward=1, backward=1)
