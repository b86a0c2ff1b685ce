"""Model zoo: registry of :class:`ModelSpec` (builder, weights, preprocessing, Grad-CAM layer, blocks)."""
from . import bert, efficientnet_lite, small_cnn, torchvision_models, vit  # noqa: F401  (registration)
from .blocks import Block, stage_blocks
from .registry import get_spec, list_models, register_model
from .spec import ModelSpec
from .weights import WeightsError

__all__ = ["Block", "ModelSpec", "WeightsError", "get_spec", "list_models", "register_model", "stage_blocks"]
