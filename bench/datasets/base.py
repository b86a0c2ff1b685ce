"""What every dataset returns: images in [0, 1], labels, and ground-truth masks where known."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset


class DatasetError(ValueError):
    """A dataset that cannot be built or read (missing folder, wrong channel count, bad parameter)."""


@dataclass
class Batch:
    """``images`` (N,3,H,W) float32 in [0,1]; ``labels`` (N,) long, -1 where unknown; ``masks``
    (N,1,H,W) bool or None when the dataset has no ground truth."""

    images: Tensor
    labels: Tensor
    masks: Tensor | None


class ImageDataset(Dataset):
    """Base class: ``__getitem__`` returns ``(image, label, mask_or_None)``; ``batch`` stacks them."""

    name: str = ""
    num_classes: int | None = None
    has_masks: bool = False
    class_names: tuple[str, ...] = ()

    def batch(self, indices: Sequence[int] | range) -> Batch:
        items = [self[i] for i in indices]
        if not items:
            raise DatasetError(f"empty selection from dataset {self.name!r}")
        images = torch.stack([item[0] for item in items])
        labels = torch.tensor([item[1] for item in items], dtype=torch.long)
        masks = torch.stack([item[2] for item in items]) if self.has_masks else None
        return Batch(images, labels, masks)
