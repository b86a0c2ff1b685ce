"""The rectifiers whose gradients Guided Backprop and Deconvolution modify, and Captum's two methods
widened to all of them.

Captum's ``GuidedBackprop`` and ``Deconvolution`` hook modules that are ``isinstance(m, nn.ReLU)``
only. ``nn.ReLU6`` is an ``nn.Hardtanh``, not an ``nn.ReLU``: on a ReLU6 network (MobileNetV2,
EfficientNet-Lite) both silently return the plain gradient, i.e. exactly ``saliency``'s numbers.

Guided here (:func:`is_guided_rectifier`): ``nn.ReLU`` and every ``nn.Hardtanh`` with
``min_val == 0`` (``nn.ReLU6`` is ``Hardtanh(0, 6)``): modules that are zero for inputs <= 0 and the
identity above (up to a clip). Each gets Captum's own hook, so the rule is Captum's on every one:
Guided Backprop passes ``relu(grad_input)`` (the module's own backward -- for ReLU6 the forward mask
``0 < x < 6`` -- with negative gradients zeroed), Deconvolution ``relu(grad_output)`` (the forward
mask ignored, the clip too). On a network whose rectifiers are all ``nn.ReLU`` the hooks are exactly
the ones Captum registers: the numbers are identical to Captum's.

Refused by :func:`check_guided_rectifiers` (:class:`adapters.errors.NotApplicable` naming the call: the
grid records the cell as not applicable), rather than silently passing the plain gradient:

* activations that are not rectifiers in this sense -- LeakyReLU, PReLU, RReLU, ELU, SELU, CELU,
  GELU, SiLU, Mish, Hardswish, Softplus, ``threshold``: they have no zero region (or a negative
  slope), Springenberg et al. define the guided rule for ReLUs, and an extension would be another
  method under the same name;
* a rectifier called as a function in a ``forward`` (``F.relu``, ``torch.relu``, ``x.relu_()``,
  ``F.relu6``, ``F.hardtanh``): a module hook cannot reach it. Wrap it in a module (``nn.ReLU()``);
* a model with no rectifier at all (a ViT): the "guided" map would be the gradient.

Gates and other nonlinearities (sigmoid and tanh, max pooling, normalisation, attention softmax)
pass the plain gradient, as in the paper and in Captum; ``clamp(min=0)`` is not recognised as a
rectifier (it is also used to bound values).
"""
from __future__ import annotations

from captum._utils.common import _register_backward_hook
from captum.attr import Deconvolution, GuidedBackprop
from torch import Tensor, nn

from .errors import NotApplicable
from .forward_ops import forward_ops, where
from .probe import probe

#: Activation functions as torch dispatches them (what :func:`adapters.forward_ops.forward_ops`
#: records): each must run inside a guided rectifier module, or the model is refused.
ACTIVATION_OPS = frozenset({
    "relu", "relu_", "relu6", "hardtanh", "hardtanh_", "threshold", "threshold_", "leaky_relu", "leaky_relu_",
    "prelu", "rrelu", "rrelu_", "elu", "elu_", "selu", "selu_", "celu", "celu_", "gelu", "silu", "silu_", "mish",
    "hardswish", "hardswish_", "softplus",
})
GUIDED_DESCRIPTION = "nn.ReLU, nn.ReLU6 and nn.Hardtanh with min_val=0"


def is_guided_rectifier(module: nn.Module) -> bool:
    """Whether Guided Backprop / Deconvolution rectify this module's gradient: ``nn.ReLU`` (and
    subclasses, as Captum), or an ``nn.Hardtanh`` clipped at 0 from below (``nn.ReLU6``)."""
    if isinstance(module, nn.ReLU):
        return True
    return isinstance(module, nn.Hardtanh) and module.min_val == 0 and module.max_val > 0


class _EveryRectifier:
    """Mixin for Captum's ``ModifiedReluGradientAttribution`` subclasses: the same hook, on every
    guided rectifier instead of ``nn.ReLU`` modules only (Captum calls this once per module)."""

    def _register_hooks(self, module: nn.Module) -> None:
        if is_guided_rectifier(module):
            self.backward_hooks.extend(_register_backward_hook(module, self._backward_hook, self))


class RectifiedGuidedBackprop(_EveryRectifier, GuidedBackprop):
    """Captum's ``GuidedBackprop``, guiding ReLU6 (and every :func:`is_guided_rectifier`) as well."""


class RectifiedDeconvolution(_EveryRectifier, Deconvolution):
    """Captum's ``Deconvolution``, rectifying at ReLU6 (and every :func:`is_guided_rectifier`) as well."""


def check_guided_rectifiers(model: nn.Module, x: Tensor, method: str) -> int:
    """Refuse a model on which guiding at rectifier modules would not cover every activation (see
    the module docstring); return the number of guided rectifier calls that ran (one cached forward)."""
    modules = dict(model.named_modules())
    for call in forward_ops(model, x):
        if call.op not in ACTIVATION_OPS:
            continue
        module = modules.get(call.module)
        if call.leaf and module is not None and is_guided_rectifier(module):
            continue
        if call.leaf and module is not None and module is not model:
            why = "an activation that is not a rectifier (no zero region); guided backprop is defined for ReLUs"
        else:
            why = "a function called in forward(), which no module hook can reach; use a module (e.g. nn.ReLU())"
        raise NotApplicable(f"{method}: the model applies {call.op!r} in {where(call)}: {why}. {method} rectifies "
                            f"gradients at {GUIDED_DESCRIPTION} only and would pass the plain gradient there")
    guided = sum(ran.calls for ran in probe(model, x).order if is_guided_rectifier(modules.get(ran.name, model)))
    if not guided:
        raise NotApplicable(f"{method}: the model has no rectifier module ({GUIDED_DESCRIPTION}), so the "
                            "rectified backward pass would be the plain gradient")
    return guided
