"""Specs for torchvision architectures, ImageNet-sized by default, plus slim test variants."""
from __future__ import annotations

from functools import partial

import torchvision.models as tvm
from torch import Tensor, nn

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


class _ResNetSlim(nn.Module):
    """resnet18's layout (torchvision BasicBlocks, 2 per stage, ``layer1``..``layer4``, ``fc``) at a
    quarter of its widths, with a small-input stem (3x3 stride-1 conv, 2x2 max-pool): overall stride
    16 instead of 32, so a 64x64 input still has 4x4 features at ``layer4``. With the ImageNet stem,
    resnet18 at 64x64 sees 16x16 after two layers and learns the synthetic shapes far more slowly
    (0.74 held-out after 18000 images against 0.99 for vgg_slim)."""

    def __init__(self, num_classes: int, widths: tuple[int, int, int, int] = (16, 32, 64, 128)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(2)
        cins = (widths[0],) + widths[:-1]
        for index, (cin, cout) in enumerate(zip(cins, widths), start=1):
            setattr(self, f"layer{index}", self._stage(cin, cout, stride=1 if index == 1 else 2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)
        for module in self.modules():  # torchvision's ResNet initialisation
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def _stage(cin: int, cout: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or cin != cout:
            downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
        return nn.Sequential(tvm.resnet.BasicBlock(cin, cout, stride, downsample), tvm.resnet.BasicBlock(cout, cout))

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


@register_model
def resnet18_slim() -> ModelSpec:
    return ModelSpec(name="resnet18_slim", builder=_ResNetSlim, family="resnet", num_classes=4, input_size=(64, 64),
                     gradcam_layer="layer4", description="resnet18 layout at 1/4 width, small-input stem (zoo variant)")


# torchvision's MobileNetV2 with its first four inverted-residual stages only (16-24-32-64 channels,
# overall stride 16): 4x4 features at 64x64. The full MobileNetV3-small (stride 32, SE blocks,
# 2x2 features at 64x64) did not learn the synthetic shapes in the zoo's budget (training loss
# still 1.1 after 560 steps of 64 images).
MOBILENET_V2_SLIM_STAGES = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 2, 2], [6, 64, 2, 2]]


@register_model
def mobilenet_v2_slim() -> ModelSpec:
    return ModelSpec(name="mobilenet_v2_slim",
                     builder=lambda k: tvm.MobileNetV2(num_classes=k, inverted_residual_setting=MOBILENET_V2_SLIM_STAGES),
                     family="mobilenet", num_classes=4, input_size=(64, 64), gradcam_layer="features.8",
                     description="MobileNetV2, first four stages (zoo variant)")

