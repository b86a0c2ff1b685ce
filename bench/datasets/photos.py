"""The real photographs that scikit-image ships, resized to a model's input size (no labels, no masks),
plus a documented, seeded set of extra views of each photograph.

Item ``i < len(names)`` is photograph ``i``, centre-cropped to a square and resized. With ``views=V``
the dataset has ``len(names) * (1 + V)`` items: item ``i`` then is view ``i // len(names)`` of
photograph ``i % len(names)`` (view 0 = the centre crop), so the first ``n`` items of any run are
the most varied ones (every photograph before any second view of one). View ``v >= 1`` of a photo:

* a square crop whose side is a fraction of the photo's shorter side drawn uniformly from
  ``[min_scale, 1]``, at a uniformly drawn position inside the photo;
* flipped left-right when ``v`` is odd (so half the views are mirrored, whatever the seed);
* resized to ``image_size`` like the centre crop (bilinear, antialiased).

The draw depends on ``(seed, photo name, v)`` only: a photo's views do not change when other photos
are added, removed or reordered, nor with ``image_size``.

Views of one photograph are **not independent images**: they share the scene, the object and most of
the pixels. They give a run more inputs (for intervals that are not computed over three points),
but an interval over views understates the spread over truly different photographs; a report of a
run over views should say so.
"""
from __future__ import annotations

import zlib
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from .base import DatasetError, ImageDataset

# scikit-image's bundled colour photographs (``skimage.data.cat`` is the same image as ``chelsea``).
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "retina", "hubble_deep_field")
#: Photos that are not a plain ``skimage.data.<name>()`` call.
LOADERS: dict[str, Callable[[Any], np.ndarray]] = {
    "motorcycle_left": lambda data: data.stereo_motorcycle()[0],  # the left image of the stereo pair
}
MAX_VIEWS = 1000


class SkimagePhotos(ImageDataset):
    """Items: image (3,S,S) in [0,1], label -1 (unknown: explain the predicted class), no mask.

    ``views`` extra views per photograph (crops and flips, see the module docstring), drawn from
    ``seed``; ``min_scale`` in (0, 1] is the smallest crop side as a fraction of the shorter side.
    """

    def __init__(self, names: tuple[str, ...] | list[str] = PHOTOS, *, image_size: int = 224, views: int = 0,
                 seed: int = 0, min_scale: float = 0.6) -> None:
        import skimage.data

        if isinstance(names, str):
            raise DatasetError(f"names must be a list of photograph names, got the string {names!r}")
        unknown = sorted(n for n in set(names) if n not in LOADERS and not callable(getattr(skimage.data, n, None)))
        if unknown:
            raise DatasetError(f"scikit-image has no photographs named {unknown}")
        if isinstance(views, bool) or not isinstance(views, int) or not 0 <= views <= MAX_VIEWS:
            raise DatasetError(f"views must be an integer from 0 to {MAX_VIEWS}, got {views!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise DatasetError(f"seed must be a non-negative integer, got {seed!r}")
        if isinstance(min_scale, bool) or not isinstance(min_scale, (int, float)) or not 0 < min_scale <= 1:
            raise DatasetError(f"min_scale must be a number in (0, 1], got {min_scale!r}")
        self.name, self.names, self.image_size = "skimage", tuple(names), image_size
        self.views, self.seed, self.min_scale = views, seed, float(min_scale)
        self._loader = skimage.data
        self._photos: dict[str, Tensor] = {}

    def __len__(self) -> int:
        return len(self.names) * (1 + self.views)

    def config(self) -> dict:
        return {"name": self.name, "photos": list(self.names), "image_size": self.image_size, "views": self.views,
                "seed": self.seed, "min_scale": self.min_scale}

    def _photo(self, name: str) -> Tensor:
        """The full photograph (3, H, W) in [0, 1], read once."""
        if name not in self._photos:
            array = np.asarray(LOADERS[name](self._loader) if name in LOADERS else getattr(self._loader, name)())
            if array.ndim == 2:
                array = np.repeat(array[..., None], 3, axis=-1)
            self._photos[name] = torch.from_numpy(array[..., :3].astype(np.float32) / 255.0).permute(2, 0, 1)
        return self._photos[name]

    def view_of(self, index: int) -> tuple[str, int]:
        """(photograph name, view number) of item ``index``; view 0 is the centre crop."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        return self.names[index % len(self.names)], index // len(self.names)

    def crop_box(self, name: str, view: int) -> tuple[int, int, int, bool]:
        """(top, left, side, flipped) of a view on the full photograph."""
        height, width = self._photo(name).shape[1:]
        shorter = min(height, width)
        if view == 0:
            return (height - shorter) // 2, (width - shorter) // 2, shorter, False
        rng = np.random.default_rng([self.seed, zlib.crc32(name.encode()), view])
        side = max(1, int(round(shorter * rng.uniform(self.min_scale, 1.0))))
        top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
        return top, left, side, view % 2 == 1

    def __getitem__(self, index: int) -> tuple[Tensor, int, None]:
        name, view = self.view_of(index)
        top, left, side, flipped = self.crop_box(name, view)
        image = self._photo(name)[:, top:top + side, left:left + side][None]
        if flipped:
            image = image.flip(-1)
        image = torch.nn.functional.interpolate(image, size=(self.image_size,) * 2, mode="bilinear",
                                                antialias=True, align_corners=False)[0].clamp(0, 1)
        return image, -1, None
