"""Guided Backprop, Deconvolution and Guided Grad-CAM rectify at every rectifier module, ReLU6 included
(Captum hooks nn.ReLU only, so on a ReLU6 network its GuidedBackprop is exactly the gradient); other
activations are refused as not applicable."""
from __future__ import annotations

import pytest
import torch
import torchvision
from captum.attr import Deconvolution, GuidedBackprop, GuidedGradCam
from torch import Tensor, nn

import adapters
from adapters.base import ModelState
from adapters.rectifiers import check_guided_rectifiers, is_guided_rectifier

torch.set_num_threads(1)


def tiny(activation: type[nn.Module] = nn.ReLU6, **kwargs: object) -> nn.Sequential:
    torch.manual_seed(0)
    act = lambda: activation(**kwargs)  # noqa: E731 - one module per use
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), act(), nn.Conv2d(8, 8, 3, stride=2, padding=1), act(),
                         nn.Conv2d(8, 16, 3, padding=1), act(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(16, 5)).eval()


@pytest.fixture
def x() -> Tensor:
    # Large enough that many ReLU6 units saturate (x > 6), so the clip matters too.
    return 4 * torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))


TARGET = torch.tensor([0, 3, 4])


def reference_guided(model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
    """Guided Backprop by hand: at every ReLU-like module, its own gradient with negatives zeroed."""
    handles = [m.register_full_backward_hook(lambda _m, grad_in, _out: (grad_in[0].clamp(min=0),))
               for m in model.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))]
    try:
        inputs = x.clone().requires_grad_()
        (grad,) = torch.autograd.grad(model(inputs).gather(1, target[:, None]).sum(), inputs)
    finally:
        for handle in handles:
            handle.remove()
    return grad.abs().amax(1, keepdim=True)


def test_relu6_network_is_guided_not_the_plain_gradient(x: Tensor) -> None:
    """Fails on Captum's GuidedBackprop (and the adapter before this fix): there the maps equal saliency's."""
    model = tiny(nn.ReLU6)
    guided = adapters.get("guided_backprop").attribute(model, x, TARGET)
    saliency = adapters.get("saliency").attribute(model, x, TARGET)
    assert not torch.allclose(guided, saliency, rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(guided, reference_guided(model, x, TARGET), rtol=1e-5, atol=1e-7)


def test_captum_alone_leaves_relu6_unguided(x: Tensor) -> None:
    """The defect this adapter works around, kept visible: Captum's GuidedBackprop on ReLU6 = gradient."""
    model = tiny(nn.ReLU6)
    captum = GuidedBackprop(model).attribute(x.clone().requires_grad_(), target=TARGET).abs().amax(1, keepdim=True)
    torch.testing.assert_close(captum, adapters.get("saliency").attribute(model, x, TARGET))


def test_identical_to_captum_on_a_relu_network(x: Tensor) -> None:
    model = tiny(nn.ReLU)
    guided = adapters.get("guided_backprop", reduction="sum").attribute(model, x, TARGET)
    captum = GuidedBackprop(model).attribute(x.clone().requires_grad_(), target=TARGET).sum(1, keepdim=True)
    assert torch.equal(guided, captum)


def test_inplace_relu6_of_torchvision_mobilenet_is_guided() -> None:
    torch.manual_seed(0)
    model = torchvision.models.MobileNetV2(num_classes=4, inverted_residual_setting=[[1, 8, 1, 1], [6, 16, 2, 2]],
                                           width_mult=0.5).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    before = ModelState.of(model)
    method = adapters.get("guided_backprop")
    guided = method.attribute(model, x, 1)
    assert method.diagnostics["rectifiers"] == sum(isinstance(m, nn.ReLU6) for m in model.modules())
    assert not torch.allclose(guided, adapters.get("saliency").attribute(model, x, 1), rtol=1e-3, atol=1e-7)
    assert ModelState.of(model) == before


def test_hardtanh_clipped_at_zero_counts_as_a_rectifier() -> None:
    assert is_guided_rectifier(nn.ReLU()) and is_guided_rectifier(nn.ReLU6(inplace=True))
    assert is_guided_rectifier(nn.Hardtanh(0.0, 1.0))
    assert not is_guided_rectifier(nn.Hardtanh(-1.0, 1.0))
    assert not any(is_guided_rectifier(m) for m in (nn.LeakyReLU(), nn.GELU(), nn.SiLU(), nn.PReLU(), nn.Hardswish()))


class FunctionalReLU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


@pytest.mark.parametrize("model, match", [
    (FunctionalReLU().eval(), r"applies 'relu' in the model's own forward.*function called in forward"),
    (tiny(nn.LeakyReLU, negative_slope=0.1), r"'leaky_relu'.*not a rectifier"),
    (tiny(nn.GELU), r"'gelu'.*not a rectifier"),
    (nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 14 * 14, 3)).eval(), r"no rectifier module"),
], ids=["functional_relu", "leaky_relu", "gelu", "no_rectifier"])
def test_activations_it_cannot_guide_are_refused(model: nn.Module, match: str, x: Tensor) -> None:
    for name in ("guided_backprop", "deconvolution"):
        with pytest.raises(adapters.NotApplicable, match=match):
            adapters.get(name).attribute(model, x, 0)
    with pytest.raises(adapters.AttributionError, match="guided"):
        check_guided_rectifiers(model, x, "guided")


def test_deconvolution_rectifies_at_relu6_and_equals_captum_on_relu() -> None:
    """Deconvolution ignores the forward mask, so on inputs that keep every ReLU6 below its clip a
    ReLU6 network's deconvolution equals Captum's on the same weights with nn.ReLU; Captum itself
    passes the plain gradient through ReLU6."""
    x = 0.05 * torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(3))  # no unit reaches 6
    relu6, relu = tiny(nn.ReLU6), tiny(nn.ReLU)
    ours = adapters.get("deconvolution", reduction="sum").attribute(relu6, x, TARGET)
    captum_relu = Deconvolution(relu).attribute(x.clone().requires_grad_(), target=TARGET).sum(1, keepdim=True)
    assert torch.equal(ours, captum_relu)
    captum_relu6 = Deconvolution(relu6).attribute(x.clone().requires_grad_(), target=TARGET).sum(1, keepdim=True)
    inputs = x.clone().requires_grad_()
    (plain,) = torch.autograd.grad(relu6(inputs).gather(1, TARGET[:, None]).sum(), inputs)
    plain = plain.sum(1, keepdim=True)
    torch.testing.assert_close(captum_relu6, plain)
    assert not torch.allclose(ours, plain, rtol=1e-3, atol=1e-7)


def test_guided_gradcam_guides_relu6(x: Tensor) -> None:
    """Our guided_gradcam = Captum's GuidedGradCam whose Guided Backprop also guides ReLU6: equal to
    Captum's on the ReLU twin where no ReLU6 unit clips, and not Captum's plain-gradient product on ReLU6."""
    small = 0.05 * x / 4
    relu6, relu = tiny(nn.ReLU6), tiny(nn.ReLU)
    ours = adapters.get("guided_gradcam", layer="4", reduction="sum").attribute(relu6, small, TARGET)
    reference = GuidedGradCam(relu, relu[4]).attribute(small.clone().requires_grad_(), target=TARGET,
                                                      interpolate_mode="nearest").sum(1, keepdim=True)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-9)
    unguided = GuidedGradCam(relu6, relu6[4]).attribute(small.clone().requires_grad_(), target=TARGET,
                                                       interpolate_mode="nearest").sum(1, keepdim=True)
    assert not torch.allclose(ours, unguided, rtol=1e-3, atol=1e-9)
