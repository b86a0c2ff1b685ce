"""Whether Captum's modified backward passes apply to a model, checked before they run.

DeepLift's rescale rule changes the gradient only at certain modules and pass the plain gradient everywhere else, without a warning:
through ``F.relu`` called in a ``forward``, GELU, SiLU, ReLU6, layer norm, attention. A map
computed that way is a different method under the same name, so these checks refuse such a model
with :class:`adapters.errors.NotApplicable` naming the function and the module that ran it (found by
:func:`adapters.forward_ops.forward_ops`, one cached forward per model and input shape). The grid
records the refusal as "not applicable".
"""
from __future__ import annotations

from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR
from torch import Tensor, nn

from .errors import NotApplicable
from .forward_ops import OpCall, forward_ops, where
from .probe import probe

#: Torch functions that are not linear in their tensor input(s): activations, max pooling,
#: normalisation over features, attention. (Products of two activations, as in squeeze-excitation
#: gates, are not detected: a ``mul`` may as well scale by a constant.)
NONLINEAR_OPS = frozenset({
    "relu", "relu_", "relu6", "hardtanh", "hardtanh_", "elu", "elu_", "selu", "celu", "leaky_relu", "leaky_relu_",
    "prelu", "rrelu", "glu", "gelu", "silu", "mish", "hardswish", "hardsigmoid", "logsigmoid", "softplus",
    "softsign", "tanhshrink", "softshrink", "hardshrink", "threshold", "sigmoid", "sigmoid_", "tanh", "tanh_",
    "softmax", "log_softmax", "softmin", "max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_with_indices",
    "max_pool2d_with_indices", "max_pool3d_with_indices", "adaptive_max_pool1d", "adaptive_max_pool2d",
    "adaptive_max_pool3d", "fractional_max_pool2d", "fractional_max_pool3d", "lp_pool1d", "lp_pool2d",
    "layer_norm", "group_norm", "instance_norm", "local_response_norm", "rms_norm", "normalize",
    "multi_head_attention_forward", "scaled_dot_product_attention", "exp", "log", "sqrt", "rsqrt", "pow",
    "__pow__", "abs", "clamp", "clamp_", "clip", "maximum", "minimum", "amax", "amin", "max", "min", "sign", "erf",
})
def check_rescale_rule(model: nn.Module, x: Tensor, method: str) -> int:
    """Refuse a model on which Captum's DeepLift rescale rule would not be what runs; return how
    many modules it rescales.

    Refused: a nonlinear function on the way to the logits outside a module of a type in Captum's
    ``SUPPORTED_NON_LINEAR`` (exact type: a subclass of ``nn.ReLU`` is not rescaled); a rescaled
    module that runs more than once per forward (Captum keeps one input/output per module and
    raises "used more than once" in the backward: torchvision ResNet's shared ``relu``); a rescaled
    module that already has a backward hook (Captum then skips it); ``nn.Softmax``, whose rule
    subtracts the mean over the whole batch tensor, mixing images. In-place ``nn.ReLU`` is fine:
    Captum's pre-hook clones its input.
    """
    supported = tuple(SUPPORTED_NON_LINEAR)
    for call in forward_ops(model, x):
        if call.op in NONLINEAR_OPS and not (call.leaf and call.module_type in supported):
            raise NotApplicable(f"{method}: the model applies {call.op!r} in {where(call)}, outside the modules "
                                f"whose gradients Captum's DeepLift rescales ({_names(supported)}); it would pass "
                                f"the plain gradient there{_hint(call)}")
    rescaled = 0
    for ran in probe(model, x).order:
        if ran.module_type not in supported:
            continue
        module, named = model.get_submodule(ran.name), f"module {ran.name!r} ({ran.module_type.__name__})"
        if ran.calls > 1:
            raise NotApplicable(f"{method}: {named} runs {ran.calls} times per forward; Captum's DeepLift keeps one "
                                "input/output per module (it raises 'used more than once'): give each use its own "
                                "module")
        if module._backward_hooks:
            raise NotApplicable(f"{method}: {named} has a backward hook, so Captum's DeepLift would skip it; remove "
                                "the hook first")
        if ran.module_type is nn.Softmax:
            raise NotApplicable(f"{method}: {named}: Captum's DeepLift softmax rule subtracts the mean over the "
                                "whole batch tensor, so a map would depend on the other images; explain the logits "
                                "(drop the final softmax)")
        rescaled += 1
    return rescaled


def _names(types: tuple[type, ...]) -> str:
    return ", ".join(t.__name__ for t in types if t is not nn.Softmax)  # Softmax is refused on its own


def _hint(call: OpCall) -> str:
    if not call.leaf:
        return " (a function called in forward() instead of a module)"
    return ""
