"""Which layer a layer-based method (Grad-CAM) explains: a named one, or found automatically.

CNNs: the last spatial feature layer. Transformers (a model with attention modules): the last
token-shaped layer that feeds the last attention module, i.e. the last block's first layer norm,
the layer practitioners take (pytorch-grad-cam's ViT tutorial). The last block's output reaches a
ViT's head only through the class token, so its patch tokens get no gradient; the patch
embedding (``conv_proj``, the only 4-D layer of a ViT) explains the input projection, not the
network.
"""
from __future__ import annotations

from torch import Tensor, nn

from .base import AttributionError
from .errors import NotApplicable
from .probe import ModuleCall, probe
from .tokens import layer_layout

# Adaptive pooling resizes to whatever grid the classifier wants (VGG's 7x7 even from a 1x1 input),
# so its resolution says nothing about the features: it marks the start of the head.
_HEAD_POOLING = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def is_attention(module_type: type) -> bool:
    """torch's ``MultiheadAttention`` and the attention modules of torchvision and timm (their class
    names end in "Attention": ``Attention``, ``ShiftedWindowAttention``, ...)."""
    return issubclass(module_type, nn.MultiheadAttention) or module_type.__name__.endswith("Attention")


def last_token_layer(order: tuple[ModuleCall, ...], height: int, width: int) -> str | None:
    """The last module, called once, whose output is tokens or a channels-last grid tiling the
    input, and that ran before the last attention module started (its own submodules excluded);
    None when the model has no attention module."""
    positions = [i for i, call in enumerate(order) if is_attention(call.module_type)]
    if not positions:
        return None
    attention = order[positions[-1]].name
    for call in reversed(order[:positions[-1]]):
        if call.name.startswith(attention + "."):
            continue
        if (call.calls == 1 and call.output_shape is not None
                and layer_layout(call.output_shape, height, width) in ("tokens", "nhwc")):
            return call.name
    return None


def auto_layer(model: nn.Module, x: Tensor) -> str:
    """:func:`last_token_layer` for transformers, :func:`last_spatial_layer` otherwise."""
    token_layer = last_token_layer(probe(model, x).order, *x.shape[-2:])
    return token_layer if token_layer is not None else last_spatial_layer(model, x)


def last_spatial_layer(model: nn.Module, x: Tensor) -> str:
    """Name of the last module, in execution order, whose output is a 4-D tensor with more than one
    spatial position, skipping adaptive pooling and modules called more than once.

    A container fires after its children, so for a torchvision ResNet this is ``layer4`` (not its
    last ReLU), for VGG ``features``. Found with the cached probe forward of ``x[:1]`` (N, C, H, W);
    the answer depends on the input size (a 32x32 input makes ResNet's ``layer4`` 1x1, so ``layer3``).
    """
    chosen = None
    for call in probe(model, x).order:
        shape = call.output_shape
        if (shape is not None and len(shape) == 4 and shape[2] * shape[3] > 1 and call.calls == 1
                and not issubclass(call.module_type, _HEAD_POOLING)):
            chosen = call.name
    if chosen is None:
        raise NotApplicable("found no layer with a 4-D output of spatial size > 1 in the model; "
                            "pass layer='<module name>'")
    return chosen


def resolve_layer(model: nn.Module, x: Tensor, layer: str | None) -> tuple[str, nn.Module]:
    """(name, module) of ``layer`` (a dotted module name as in ``model.named_modules()``), or of the
    automatic layer (:func:`auto_layer`) when ``layer`` is None."""
    name = auto_layer(model, x) if layer is None else layer
    try:
        module = model.get_submodule(name)
    except AttributeError:
        available = [n for n, _ in model.named_modules() if n][:12]
        raise AttributionError(f"the model has no layer {name!r}; module names look like {available}") from None
    return name, module
