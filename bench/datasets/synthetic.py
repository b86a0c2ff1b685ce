"""Synthetic shapes on clutter, with ground-truth masks; and the shortcut (watermark) variant.

Each image holds one class-defining object (a disk, square, triangle, cross, ring or diamond of
random size, rotation and colour) on a cluttered background: a smooth random colour field,
stripes, and distractors (thin lines and small dots) drawn from the same distribution for every
class, so they carry no class information. A model that classifies well must look at the object.

Every image is a pure function of ``(seed, split, index)``: deterministic for a seed, and the
same image whatever the dataset's length.

The shortcut variant adds a 6x6 checkerboard watermark in the corner that encodes the class
(class k -> corner k: top-left, top-right, bottom-left, bottom-right) and draws the object's shape
independently of the label, so on its training data only the watermark predicts the class (like
the source tag on PASCAL horse images). Its ground-truth mask for explanations is the watermark.
``watermark="none"`` removes it and ``"shifted"`` moves it to the next class's corner, to show that
the model leans on it.

The *textures* variant (``evidence="texture"``) moves the class from the object's outline into its
fill: the object's shape is drawn at random (disk, square, triangle or diamond) and it is filled
with the class's two-colour texture (stripes, checkerboard, dots, grid; period 4 px, random
rotation). Its silhouette carries no class information, so deleting or imputing exactly the object
removes all the evidence, whatever the hole's shape: for the removal scores (deletion, insertion,
ROAD) the object mask is then the best evidence-removing map (a map can still push a MoRF score
below chance by turning one texture into another). On the shapes, a hole in the object's exact outline
still shows the shape (Rong et al. 2022 call this leakage through the removal pattern), so a coarser
map that erases the outline can beat the mask there.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .base import DatasetError, ImageDataset

SHAPES = ("disk", "square", "triangle", "cross", "ring", "diamond")
TEXTURES = ("stripes", "checkerboard", "dots", "grid")
TEXTURE_PERIOD = 4.0  # pixels: a blur of sigma 5 (insertion's start image) leaves none of it
TEXTURED_SHAPES = ("disk", "square", "triangle", "diamond")  # wide enough to hold several periods
EVIDENCE = ("shape", "texture")
SPLITS = {"train": 0, "test": 1, "val": 2}
WATERMARK_SIZE = 6
WATERMARK_MARGIN = 2


def _rotated(dy: np.ndarray, dx: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (dy, dx) from a centre in the frame rotated by ``angle``: (u, v)."""
    c, s = np.cos(angle), np.sin(angle)
    return c * dx + s * dy, -s * dx + c * dy


def _shape_mask(shape: str, dy: np.ndarray, dx: np.ndarray, radius: float, angle: float) -> np.ndarray:
    u, v = _rotated(dy, dx, angle)
    if shape == "disk":
        return u ** 2 + v ** 2 <= radius ** 2
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= radius * 0.85
    if shape == "triangle":
        # Equilateral triangle with circumradius ``radius``: three half-planes.
        inside = np.ones_like(u, dtype=bool)
        for k in range(3):
            theta = np.pi / 2 + 2 * np.pi * k / 3
            inside &= u * np.cos(theta) + v * np.sin(theta) <= radius / 2
        return inside
    if shape == "cross":
        arm = radius * 0.33
        return ((np.abs(u) <= arm) & (np.abs(v) <= radius)) | ((np.abs(v) <= arm) & (np.abs(u) <= radius))
    if shape == "ring":
        r2 = u ** 2 + v ** 2
        return (r2 <= radius ** 2) & (r2 >= (radius * 0.55) ** 2)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= radius
    raise DatasetError(f"unknown shape {shape!r}")


def _texture(name: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Which pixels take the texture's first colour, in coordinates (u, v) rotated with the texture."""
    p = TEXTURE_PERIOD
    if name == "stripes":
        return np.mod(u, p) < p / 2
    if name == "checkerboard":
        return (np.floor(u / (p / 2)) + np.floor(v / (p / 2))) % 2 == 0
    if name == "dots":
        return (np.mod(u, p) - p / 2) ** 2 + (np.mod(v, p) - p / 2) ** 2 <= (0.3 * p) ** 2
    if name == "grid":
        return (np.mod(u, p) < 0.3 * p) | (np.mod(v, p) < 0.3 * p)
    raise DatasetError(f"unknown texture {name!r}")


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    coarse = torch.from_numpy(rng.uniform(0.15, 0.85, size=(1, 3, 5, 5)).astype(np.float32))
    field = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True)[0].numpy()
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    theta, period = rng.uniform(0, np.pi), rng.uniform(4, 12)
    stripes = np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period)
    field = field + rng.uniform(0.03, 0.12) * stripes[None] * rng.choice([-1, 1], size=(3, 1, 1))
    field = field + rng.normal(0, 0.03, size=field.shape)
    return field


def _distractors(rng: np.random.Generator, image: np.ndarray) -> None:
    size = image.shape[-1]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for _ in range(rng.integers(3, 7)):
        colour = rng.uniform(0, 1, size=3)[:, None]
        if rng.random() < 0.5:  # thin line segment
            cy, cx = rng.uniform(0, size, size=2)
            theta, length = rng.uniform(0, np.pi), rng.uniform(8, 22)
            u = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
            v = -(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)
            hit = (np.abs(u) <= length / 2) & (np.abs(v) <= 0.8)
        else:  # small dot
            cy, cx = rng.uniform(0, size, size=2)
            hit = (yy - cy) ** 2 + (xx - cx) ** 2 <= rng.uniform(1.5, 3.0) ** 2
        image[:, hit] = colour


def _contrasting_colour(rng: np.random.Generator, image: np.ndarray, obj: np.ndarray) -> np.ndarray:
    """A colour that contrasts with the background under ``obj``, so the object is always visible."""
    local = image[:, obj].mean(axis=1)
    return np.where(local > 0.5, rng.uniform(0.0, 0.2, 3), rng.uniform(0.8, 1.0, 3))


def watermark_mask(size: int, corner: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    top = WATERMARK_MARGIN if corner in (0, 1) else size - WATERMARK_MARGIN - WATERMARK_SIZE
    left = WATERMARK_MARGIN if corner in (0, 2) else size - WATERMARK_MARGIN - WATERMARK_SIZE
    mask[top:top + WATERMARK_SIZE, left:left + WATERMARK_SIZE] = True
    return mask


def _draw_watermark(image: np.ndarray, corner: int) -> np.ndarray:
    size = image.shape[-1]
    mask = watermark_mask(size, corner)
    ys, xs = np.nonzero(mask)
    checker = ((ys - ys.min()) // 2 + (xs - xs.min()) // 2) % 2
    image[:, ys, xs] = checker[None].astype(np.float32)
    return mask


class SyntheticShapes(ImageDataset):
    """Synthetic shapes; ``shortcut=True`` gives the watermark variant (see module docstring).

    Items: ``image`` (3,S,S) float32 in [0,1], ``label`` int, ``mask`` (1,S,S) bool (the object, or
    the watermark for the shortcut variant). ``object_mask(i)`` gives the object mask in both.
    """

    def __init__(self, n: int = 512, *, image_size: int = 64, num_classes: int = 4, seed: int = 0,
                 split: str = "test", shortcut: bool = False, watermark: str = "class",
                 evidence: str = "shape") -> None:
        if evidence not in EVIDENCE:
            raise DatasetError(f"evidence must be one of {list(EVIDENCE)}, got {evidence!r}")
        classes = SHAPES if evidence == "shape" else TEXTURES
        if not 2 <= num_classes <= len(classes):
            raise DatasetError(f"num_classes must be in [2, {len(classes)}] for evidence={evidence!r}, got {num_classes}")
        if shortcut and evidence != "shape":
            raise DatasetError("the shortcut variant is defined on the shapes (evidence='shape')")
        if image_size < 32:
            raise DatasetError(f"image_size must be at least 32 pixels, got {image_size}")
        if split not in SPLITS:
            raise DatasetError(f"unknown split {split!r}; choose from {sorted(SPLITS)}")
        if n < 1:
            raise DatasetError(f"n must be positive, got {n}")
        if shortcut and num_classes > 4:
            raise DatasetError("the shortcut variant encodes the class by corner: at most 4 classes")
        if watermark not in ("class", "none", "shifted"):
            raise DatasetError(f"watermark must be 'class', 'none' or 'shifted', got {watermark!r}")
        self.name = "shortcut" if shortcut else "synthetic" if evidence == "shape" else "textures"
        self.n, self.image_size, self.num_classes, self.seed = n, image_size, num_classes, seed
        self.split, self.shortcut, self.watermark, self.evidence = split, shortcut, watermark, evidence
        self.has_masks = True
        self.class_names = classes[:num_classes]

    def __len__(self) -> int:
        return self.n

    def config(self) -> dict:
        return {"name": self.name, "n": self.n, "image_size": self.image_size, "num_classes": self.num_classes,
                "seed": self.seed, "split": self.split, "watermark": self.watermark}

    def _render(self, index: int) -> tuple[np.ndarray, int, np.ndarray, np.ndarray, int]:
        if not 0 <= index < self.n:
            raise IndexError(f"index {index} out of range for a dataset of {self.n} images")
        if self.evidence == "texture":
            return self._render_texture(index)
        rng = np.random.default_rng([self.seed, SPLITS[self.split], index, int(self.shortcut)])
        size = self.image_size
        label = index % self.num_classes  # balanced classes in every contiguous slice
        shape_class = int(rng.integers(self.num_classes)) if self.shortcut else label
        image = _background(rng, size)
        _distractors(rng, image)
        radius = rng.uniform(0.13, 0.2) * size
        cy, cx = rng.uniform(radius + 1, size - radius - 1, size=2)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        obj = _shape_mask(SHAPES[shape_class], yy - cy, xx - cx, radius, rng.uniform(0, 2 * np.pi))
        image[:, obj] = _contrasting_colour(rng, image, obj)[:, None]
        gt = obj
        if self.shortcut:
            wm = None
            if self.watermark == "class":
                wm = _draw_watermark(image, label)
            elif self.watermark == "shifted":
                wm = _draw_watermark(image, (label + 1) % 4)
            gt = wm if wm is not None else np.zeros_like(obj)
        return np.clip(image, 0, 1).astype(np.float32), label, gt, obj, shape_class

    def _render_texture(self, index: int) -> tuple[np.ndarray, int, np.ndarray, np.ndarray, int]:
        rng = np.random.default_rng([self.seed, SPLITS[self.split], index, 2])  # its own stream
        size = self.image_size
        label = index % self.num_classes
        image = _background(rng, size)
        _distractors(rng, image)
        radius = rng.uniform(0.15, 0.22) * size
        cy, cx = rng.uniform(radius + 1, size - radius - 1, size=2)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        shape = TEXTURED_SHAPES[int(rng.integers(len(TEXTURED_SHAPES)))]
        obj = _shape_mask(shape, yy - cy, xx - cx, radius, rng.uniform(0, 2 * np.pi))
        first = _texture(TEXTURES[label], *_rotated(yy - cy, xx - cx, rng.uniform(0, 2 * np.pi)))
        colour = _contrasting_colour(rng, image, obj)
        image[:, obj & first] = colour[:, None]
        image[:, obj & ~first] = 1.0 - colour[:, None]
        return np.clip(image, 0, 1).astype(np.float32), label, obj, obj, label

    def __getitem__(self, index: int) -> tuple[Tensor, int, Tensor]:
        image, label, gt, _, _ = self._render(index)
        return torch.from_numpy(image), label, torch.from_numpy(gt)[None]

    def object_mask(self, index: int) -> Tensor:
        return torch.from_numpy(self._render(index)[3])[None]

    def object_class(self, index: int) -> int:
        """The class the drawn object shows (its shape, or its texture in the textures variant): the
        label, except in the shortcut variant."""
        return self._render(index)[4]
