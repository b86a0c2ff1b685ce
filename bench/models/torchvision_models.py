"""Specs for torchvision architectures, ImageNet-sized by default, plus slim test variants."""
from __future__ import annotations

from functools import partial

import torchvision.models as tvm
from torch import nn

from .registry import register_model
from .spec import ModelSpec


def _tv(name: str, family: str, gradcam_layer: str, weights_enum: str) -> ModelSpec:
    builder = getattr(tvm, name)
    return ModelSpec(name=name, builder=lambda k, b=builder: b(weights=None, num_classes=k), family=family,
                     gradcam_layer=gradcam_layer, torchvision_weights=weights_enum)


register_model(partial(_tv, "resnet18", "resnet", "layer4", "ResNet18_Weights"))
register_model(partial(_tv, "resnet50", "resnet", "layer4", "ResNet50_Weights"))
register_model(partial(_tv, "vgg16_bn", "vgg", "features.42", "VGG16_BN_Weights"))
register_model(partial(_tv, "mobilenet_v3_large", "mobilenet", "features.16", "MobileNet_V3_Large_Weights"))
register_model(partial(_tv, "mobilenet_v3_small", "mobilenet", "features.12", "MobileNet_V3_Small_Weights"))
register_model(partial(_tv, "densenet121", "densenet", "features.norm5", "DenseNet121_Weights"))
register_model(partial(_tv, "efficientnet_b0", "efficientnet", "features.8", "EfficientNet_B0_Weights"))
register_model(partial(_tv, "convnext_tiny", "convnext", "features.7", "ConvNeXt_Tiny_Weights"))


def _vgg_slim(num_classes: int) -> nn.Module:
    """torchvision's VGG with BN and a quarter of vgg11's widths: a VGG that trains on a CPU."""
    config = [16, "M", 32, "M", 64, 64, "M", 128, 128]
    model = tvm.vgg.VGG(tvm.vgg.make_layers(config, batch_norm=True), num_classes=num_classes, init_weights=True)
    model.avgpool = nn.AdaptiveAvgPool2d(1)
    model.classifier = nn.Sequential(nn.Flatten(), nn.Linear(128, num_classes))
    return model


@register_model
def vgg_slim() -> ModelSpec:
    return ModelSpec(name="vgg_slim", builder=_vgg_slim, family="vgg", num_classes=4, input_size=(64, 64),
                     gradcam_layer="features.16", description="vgg11_bn layout at 1/4 width (test variant)")
