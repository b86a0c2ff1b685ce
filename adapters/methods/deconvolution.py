"""Deconvolution (Zeiler and Fergus 2014): the backward pass with ReLUs rectifying the gradient itself."""
from __future__ import annotations

import warnings

from torch import Tensor, nn

from ..base import Cost, Method
from ..budget import DEFAULT_MEMORY_MB, check_batch, check_memory_mb
from ..gradients import batched_gradient_maps
from ..maps import check_reduction
from ..rectifiers import RectifiedDeconvolution, check_guided_rectifiers
from ..registry import register


@register("deconvolution")
class DeconvolutionMethod(Method):
    """Captum's ``Deconvolution`` rule at every rectifier module: the backward passes
    ``relu(grad_output)``, ignoring the forward mask (Guided Backprop also applies it), at ``nn.ReLU``
    as Captum and also at ``nn.ReLU6`` / ``nn.Hardtanh`` clipped at 0, which Captum skips (see
    :mod:`adapters.rectifiers`); other layers pass the plain gradient (max pooling keeps its switches).
    Identical to Captum's numbers on a network of ``nn.ReLU`` modules. Channels reduced by ``reduction`` (default
    ``max_abs``, like saliency and guided backprop). Model-independent edges are expected: Adebayo et
    al. (2018) find it insensitive to weight randomisation, like Guided Backprop.

    A model with a non-rectifier activation (GELU, SiLU, ...) or a rectifier called as a function
    (``F.relu`` in ``forward``) is refused as not applicable, naming the call: the map would
    silently be (partly) the plain gradient (:func:`adapters.rectifiers.check_guided_rectifiers`).

    Cost: 1 forward + 1 backward per image. Memory knob: ``batch_size`` images per pass.
    """

    memory_knobs = ("batch_size",)

    def __init__(self, reduction: str = "max_abs", batch_size: int | None = None,
                 memory_mb: float = DEFAULT_MEMORY_MB) -> None:
        super().__init__(reduction=check_reduction(reduction), batch_size=check_batch("batch_size", batch_size),
                         memory_mb=check_memory_mb(memory_mb))

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        self.diagnostics["rectifiers"] = check_guided_rectifiers(model, x, self.name)
        deconvolution = RectifiedDeconvolution(model)
        with warnings.catch_warnings():
            # Captum announces its temporary ReLU hooks on every call; Method.attribute checks they are gone.
            warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
            return batched_gradient_maps(self, model, x, target, lambda xs, ts: deconvolution.attribute(xs, target=ts))

    def cost(self, **context: object) -> Cost:
        return Cost(forward=1, backward=1)
