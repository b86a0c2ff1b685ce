"""Grad-CAM: the analytic values of Captum's own small test model, and the layer finder."""
from __future__ import annotations

import torch
import torchvision
from captum.attr import LayerAttribution
from captum.testing.helpers.basic_models import BasicModel_ConvNet, BasicModel_ConvNet_One_Conv
from torch import nn

import adapters
from adapters.layers import last_spatial_layer


def one_conv_analytic(image: torch.Tensor, layer: str) -> torch.Tensor:
    """Grad-CAM of ``BasicModel_ConvNet_One_Conv`` (class 0) worked out by hand, before the ReLU.

    conv1: two 3x3 all-ones kernels with biases -50 and -75 -> 2 x (2x2); relu1; fc1 weights +1 on
    the first five flattened activations and -1 on the last three (for every class); relu2 on the
    output (positive here). So d out / d relu1 = [+1,+1,+1,+1] for channel 0 and [+1,-1,-1,-1] for
    channel 1; through relu1 the gradient at conv1 is zero where conv1 < 0.
    """
    windows = torch.stack([image[i:i + 3, j:j + 3].sum() for i in range(2) for j in range(2)])
    conv = torch.stack([windows - 50, windows - 75])  # (2 channels, 4 positions)
    grad_relu = torch.tensor([[1.0, 1, 1, 1], [1, -1, -1, -1]])
    if layer == "relu1":
        activation, grad = conv.clamp(min=0), grad_relu
    else:
        activation, grad = conv, grad_relu * (conv > 0)
    weights = grad.mean(dim=1, keepdim=True)
    return (weights * activation).sum(dim=0).reshape(2, 2)


def test_analytic_values_of_captums_one_conv_model():
    model = BasicModel_ConvNet_One_Conv().eval()
    x = torch.arange(16.0).view(1, 1, 4, 4)
    with torch.no_grad():
        assert float(model(x)[0, 0]) > 0, "relu2 is active, so the hand derivation holds"
    for layer in ("relu1", "conv1"):
        cam = one_conv_analytic(x[0, 0], layer).clamp(min=0)[None, None]
        expected = LayerAttribution.interpolate(cam, (4, 4), interpolate_mode="bilinear")
        maps = adapters.get("gradcam", layer=layer).attribute(model, x, 0)
        torch.testing.assert_close(maps, expected)
    # Captum's own test expects [[0, 4], [28, 32.5]] at relu1 and [[11.25, 13.5], [20.25, 22.5]] at conv1.
    assert one_conv_analytic(x[0, 0], "relu1").tolist() == [[0.0, 4.0], [28.0, 32.5]]
    assert one_conv_analytic(x[0, 0], "conv1").tolist() == [[11.25, 13.5], [20.25, 22.5]]


def test_auto_layer_is_the_last_spatial_one_on_captum_models():
    one_conv = BasicModel_ConvNet_One_Conv().eval()
    x = torch.arange(16.0).view(1, 1, 4, 4)
    method = adapters.get("gradcam")
    auto = method.attribute(one_conv, x, 0)
    assert method.diagnostics["layer"] == "relu1"
    torch.testing.assert_close(auto, adapters.get("gradcam", layer="relu1").attribute(one_conv, x, 0))
    # conv2 -> relu2 (2x2) -> pool2 (1x1): the last layer with more than one position is relu2.
    assert last_spatial_layer(BasicModel_ConvNet().eval(), torch.zeros(1, 1, 10, 10)) == "relu2"


def test_finder_on_torchvision_architectures():
    resnet = torchvision.models.resnet18(num_classes=3).eval()
    assert last_spatial_layer(resnet, torch.zeros(1, 3, 224, 224)) == "layer4"
    assert last_spatial_layer(resnet, torch.zeros(1, 3, 32, 32)) == "layer3", "layer4 is 1x1 at 32x32"
    vgg_like = torchvision.models.VGG(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
                                      num_classes=3).eval()
    vgg_like.classifier = nn.Linear(8 * 7 * 7, 3)
    assert last_spatial_layer(vgg_like, torch.zeros(1, 3, 32, 32)) == "features", "adaptive pooling is the head"


def test_finder_skips_modules_called_twice():
    class Reused(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.act = nn.ReLU()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.act(self.conv(self.act(x))).mean(dim=(2, 3)))

    assert last_spatial_layer(Reused().eval(), torch.zeros(1, 3, 8, 8)) == "conv"


def test_named_layer_from_a_model_spec():
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(num_classes=3).eval()
    x = torch.randn(2, 3, 64, 64)
    method = adapters.get("gradcam", layer="layer4")
    maps = method.attribute(resnet, x, torch.tensor([0, 2]))
    assert method.diagnostics["layer"] == "layer4" and maps.shape == (2, 1, 64, 64)
    assert (maps >= 0).all(), "ReLU'd"
    method_l3 = adapters.get("gradcam", layer="layer3.1.conv2")
    assert not torch.allclose(method_l3.attribute(resnet, x, torch.tensor([0, 2])), maps)
