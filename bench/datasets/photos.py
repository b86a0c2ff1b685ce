"""The real photographs that scikit-image ships, resized to a model's input size (no labels, no masks)."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .base import DatasetError, ImageDataset

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "retina", "cat", "hubble_deep_field")


class SkimagePhotos(ImageDataset):
    """Items: image (3,S,S) in [0,1] (centre-cropped to a square, then resized), label -1 (unknown:
    explain the predicted class), no mask."""

    def __init__(self, names: tuple[str, ...] | list[str] = PHOTOS, *, image_size: int = 224) -> None:
        import skimage.data

        available = [n for n in names if hasattr(skimage.data, n)]
        unknown = sorted(set(names) - set(available))
        if unknown:
            raise DatasetError(f"scikit-image has no photographs named {unknown}")
        self.name, self.names, self.image_size = "skimage", tuple(available), image_size
        self._loader = skimage.data

    def __len__(self) -> int:
        return len(self.names)

    def config(self) -> dict:
        return {"name": self.name, "photos": list(self.names), "image_size": self.image_size}

    def __getitem__(self, index: int) -> tuple[Tensor, int, None]:
        array = np.asarray(getattr(self._loader, self.names[index])())
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=-1)
        image = torch.from_numpy(array[..., :3].astype(np.float32) / 255.0).permute(2, 0, 1)
        side = min(image.shape[1:])
        top, left = (image.shape[1] - side) // 2, (image.shape[2] - side) // 2
        image = image[:, top:top + side, left:left + side][None]
        image = torch.nn.functional.interpolate(image, size=(self.image_size,) * 2, mode="bilinear",
                                                antialias=True, align_corners=False)[0].clamp(0, 1)
        return image, -1, None
