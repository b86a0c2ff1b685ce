"""Our own small CNN: fast enough to train on two CPU cores in seconds, deep enough to need the object."""
from __future__ import annotations

from torch import Tensor, nn

from .registry import register_model
from .spec import ModelSpec


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=False))


class SmallCNN(nn.Module):
    """conv16-pool-conv32-pool-conv64-conv64-GAP-linear: receptive field 26 px at the last conv."""

    def __init__(self, num_classes: int = 4, width: int = 16) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.features = nn.Sequential(
            _conv(3, width), nn.MaxPool2d(2),
            _conv(width, 2 * width), nn.MaxPool2d(2),
            _conv(2 * width, 4 * width), _conv(4 * width, 4 * width),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


@register_model
def small_cnn() -> ModelSpec:
    return ModelSpec(
        name="small_cnn", builder=lambda k: SmallCNN(k), family="cnn", num_classes=4, input_size=(64, 64),
        mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), gradcam_layer="features.5",
        description="4-conv CNN of our own (21 MMAC at 64x64)",
    )
