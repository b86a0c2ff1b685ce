"""The inputs the score benchmarks share: a random-init resnet18, seeded images and targets, and
smooth maps with a box mask (removed regions are blobs, as with real attributions: the hard case
for ROAD). One definition, so every score benchmark times the same work."""
from __future__ import annotations

import torch
import torchvision
from torch import Tensor, nn


def resnet18_batch(n_images: int, size: int) -> tuple[nn.Module, Tensor, Tensor]:
    """(model, x (N, 3, size, size), target (N,)): resnet18 with 10 classes in eval mode, seeded."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(n_images, 3, size, size, generator=torch.Generator().manual_seed(1))
    return model, x, torch.arange(n_images) % 10


def smooth_maps_and_box(n_images: int, size: int) -> tuple[Tensor, Tensor]:
    """(attributions (N, 1, size, size): seeded noise blurred by a 9x9 box, mask: a central box)."""
    noise = torch.rand(n_images, 1, size, size, generator=torch.Generator().manual_seed(2))
    attributions = torch.nn.functional.avg_pool2d(noise, 9, stride=1, padding=4)
    mask = torch.zeros(n_images, 1, size, size, dtype=torch.bool)
    mask[:, :, size // 4:size // 2, size // 4:3 * size // 4] = True
    return attributions, mask
