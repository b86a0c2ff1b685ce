"""Tiny models and inputs shared by the score tests (imported by name: pytest puts this folder on
sys.path)."""
from __future__ import annotations

import torch
from torch import Tensor, nn


def linear_model(weight: Tensor, n_classes: int = 2) -> nn.Module:
    """Logit 0 = sum(weight * x); the other logits are 0. weight: (C, H, W). A model whose every
    perturbation score has a closed form."""
    c, h, w = weight.shape
    layer = nn.Linear(c * h * w, n_classes, bias=False)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[0] = weight.flatten()
    return nn.Sequential(nn.Flatten(), layer).eval()


def tiny_cnn(channels: int = 3, n_classes: int = 3, seed: int = 0) -> nn.Module:
    """A small random CNN (conv, ReLU, pool, conv, global pool, linear) in eval mode."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(channels, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(32, n_classes),
    ).eval()


def images(n: int, channels: int = 3, size: int = 16, seed: int = 0) -> Tensor:
    return torch.randn(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


def maps(n: int, size: int = 16, seed: int = 1) -> Tensor:
    """Tie-free random attribution maps (N, 1, size, size)."""
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


def box_masks(n: int, size: int = 16, box: tuple[int, int, int, int] = (2, 8, 3, 9)) -> Tensor:
    """Masks (N, 1, size, size) with rows box[0]:box[1] and columns box[2]:box[3] set."""
    mask = torch.zeros(n, 1, size, size, dtype=torch.bool)
    mask[:, :, box[0]:box[1], box[2]:box[3]] = True
    return mask


class GradientMethod:
    """Stand-in for an adapters Method: |d logit_target / dx| summed over channels, (N, 1, H, W)."""

    def attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        x = x.detach().requires_grad_(True)
        logits = model(x)
        (grad,) = torch.autograd.grad(logits.gather(1, target.view(-1, 1)).sum(), x)
        return grad.abs().sum(1, keepdim=True)
