"""Which layer a layer-based method (Grad-CAM) explains: a named one, or the last spatial feature layer."""
from __future__ import annotations

from torch import Tensor, nn

from .base import AttributionError
from .probe import probe

# Adaptive pooling resizes to whatever grid the classifier wants (VGG's 7x7 even from a 1x1 input),
# so its resolution says nothing about the features: it marks the start of the head.
_HEAD_POOLING = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


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
        raise AttributionError("found no layer with a 4-D output of spatial size > 1 in the model; "
                               "pass layer='<module name>'")
    return chosen


def resolve_layer(model: nn.Module, x: Tensor, layer: str | None) -> tuple[str, nn.Module]:
    """(name, module) of ``layer`` (a dotted module name as in ``model.named_modules()``), or of the
    last spatial layer when ``layer`` is None."""
    name = last_spatial_layer(model, x) if layer is None else layer
    try:
        module = model.get_submodule(name)
    except AttributeError:
        available = [n for n, _ in model.named_modules() if n][:12]
        raise AttributionError(f"the model has no layer {name!r}; module names look like {available}") from None
    return name, module
