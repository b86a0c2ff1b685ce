"""Small models and images for the adapter tests: everything runs in seconds on a CPU."""
from __future__ import annotations

from typing import Callable

import pytest
import torch
import torchvision
from torch import Tensor, nn

import adapters
from adapters.base import Method

N_CLASSES = 5

# The test tensors are tiny: intra-op threads only add synchronisation, and on a shared machine
# they make every small op wait for a busy core (measured 7x slower on 2 loaded cores).
torch.set_num_threads(1)


class TinyCNN(nn.Module):
    """(N, 3, 32, 32) -> (N, 5): two spatial stages, global pooling, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(16, N_CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


def tiny_cnn(seed: int = 0) -> TinyCNN:
    torch.manual_seed(seed)
    return TinyCNN().eval()


def tiny_vit(seed: int = 0) -> torchvision.models.VisionTransformer:
    """(N, 3, 32, 32) -> (N, 5): torchvision's ViT with 8-px patches (4x4 tokens + a class token),
    2 layers of 2 heads. torchvision zero-initialises the head, which would make every gradient
    map constant: it gets random weights here."""
    torch.manual_seed(seed)
    vit = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                               hidden_dim=16, mlp_dim=32, num_classes=N_CLASSES)
    nn.init.normal_(vit.heads.head.weight, std=0.5)
    nn.init.normal_(vit.heads.head.bias, std=0.5)
    return vit.eval()


def model_for(method: str | None, seed: int = 0) -> nn.Module:
    """The test model for a method: the tiny ViT for methods that need attention, else TinyCNN."""
    needs_attention = method in adapters.names() and adapters.get_class(method).needs_attention
    return tiny_vit(seed) if needs_attention else tiny_cnn(seed)


@pytest.fixture
def model(request: pytest.FixtureRequest) -> nn.Module:
    """TinyCNN; the tiny ViT in a test parametrised by the ``name`` of a method that needs a
    transformer's attention, so the registry-walking contract tests run every method on a model it
    applies to."""
    callspec = getattr(request.node, "callspec", None)
    return model_for(callspec.params.get("name") if callspec is not None else None)


@pytest.fixture
def vit() -> nn.Module:
    """The tiny torchvision ViT (whatever the test is parametrised by)."""
    return tiny_vit()


@pytest.fixture
def make_model() -> Callable[[int], TinyCNN]:
    """Tiny CNNs with different seeded weights."""
    return tiny_cnn


@pytest.fixture
def images() -> Tensor:
    """(8, 3, 32, 32) smooth random images (blurred noise, so segmentations have real regions)."""
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(8, 3, 32, 32, generator=g)
    return nn.functional.avg_pool2d(noise, 5, stride=1, padding=2) * 3


@pytest.fixture
def targets() -> Tensor:
    return torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])


def quick(name: str, **overrides: object) -> Method:
    """The registered method ``name`` with its cheap parameters (``Method.quick_params``)."""
    return adapters.get(name, **{**adapters.get_class(name).quick_params(), **overrides})


def explain(method: Method, model: nn.Module, x: Tensor, target: Tensor | int) -> Tensor:
    """``method.attribute`` with a ground-truth mask derived from ``x`` itself for methods that need
    one, so that slicing ``x`` slices the mask consistently."""
    kwargs = {"mask": (x[:, :1] > 0).float()} if method.needs_mask else {}
    return method.attribute(model, x, target, **kwargs)


@pytest.fixture
def build() -> Callable[..., Method]:
    return quick


@pytest.fixture
def run() -> Callable[..., Tensor]:
    return explain


def assert_maps_close(actual: Tensor, expected: Tensor, rtol: float = 1e-4) -> None:
    """Equal up to float rounding, relative to the map's scale (batch size changes kernel choices)."""
    expected = expected.detach()
    scale = float(expected.abs().max()) or 1.0
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * scale)


@pytest.fixture
def maps_close() -> Callable[..., None]:
    return assert_maps_close
