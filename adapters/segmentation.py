"""Superpixels for LIME: scikit-image SLIC or quickshift on the image as a person would see it.

The model's input is usually normalised (mean/std per channel), which scikit-image's colour
conversion (RGB -> Lab) does not expect. ``segmentation_input`` says how the input is turned back
into a [0, 1] image before segmenting:

- ``"minmax"`` (default): rescale each image by its own min and max over all channels. Exact up to
  a per-channel affine map when the normalisation's std is the same for every channel, close
  otherwise, and needs no knowledge of the preprocessing.
- ``"denormalize"``: ``x * std + mean`` per channel, clipped to [0, 1]; needs ``mean`` and ``std``.
- ``"raw"``: the input as it is (already in [0, 1]).

Only the segmentation sees this image; the model is always queried in its own input space.
Labels are renumbered 0..K-1 (SLIC starts at 1, and lime assumes 0..K-1).
"""
from __future__ import annotations

import hashlib
import inspect
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Sequence

import numpy as np
import torch
from skimage.segmentation import quickshift, slic
from torch import Tensor

from .checks import check_choice, check_float, check_int
from .errors import AttributionError

#: Defaults per algorithm; ``segmentation_kwargs`` overrides them. Quickshift's are lime's own.
SEGMENTATION_DEFAULTS: dict[str, dict[str, Any]] = {
    "slic": {"n_segments": 50, "compactness": 10.0, "sigma": 1.0},
    "quickshift": {"kernel_size": 4, "max_dist": 200.0, "ratio": 0.2},
}
SEGMENTATION_INPUTS = ("minmax", "denormalize", "raw")
_ALGORITHMS: dict[str, Callable[..., np.ndarray]] = {"slic": slic, "quickshift": quickshift}
#: Arguments ``segment_one`` sets itself (or that would change what the call returns).
_RESERVED = {"image", "channel_axis", "convert2lab", "rng", "return_tree"}
#: Range checks of the numeric ``segmentation_kwargs``; other accepted keys go to scikit-image as
#: given. Past 4096 superpixels LIME's regression has more unknowns than any usual sample count,
#: and quickshift's cost grows with the square of its kernel.
_KWARG_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "n_segments": partial(check_int, low=1, high=4096, why="more superpixels than LIME can weigh"),
    "max_num_iter": partial(check_int, low=1, high=1000),
    "compactness": partial(check_float, low=0, low_open=True),
    "sigma": partial(check_float, low=0, high=100),
    "kernel_size": partial(check_float, low=0, high=64, low_open=True),
    "max_dist": partial(check_float, low=0, low_open=True),
    "ratio": partial(check_float, low=0, high=1),
}


class _LabelCache:
    """Superpixel labels by (recipe, seed, image bytes), least recently used dropped past ``limit``
    bytes. The grid segments the same images again in every cell (IROF for every method and model,
    LIME for every model) and SLIC costs ~2 ms an image at 32 px, tens of ms at 224 px; the labels
    are a function of the recipe, the seed and the image, so a hit is exact."""

    def __init__(self, limit: int) -> None:
        self.limit, self.size = limit, 0
        self.entries: OrderedDict[tuple, np.ndarray] = OrderedDict()

    def get(self, key: tuple) -> np.ndarray | None:
        labels = self.entries.get(key)
        if labels is not None:
            self.entries.move_to_end(key)
        return labels

    def put(self, key: tuple, labels: np.ndarray) -> None:
        if key in self.entries or labels.nbytes > self.limit:
            return
        self.entries[key] = labels
        self.size += labels.nbytes
        while self.size > self.limit:
            self.size -= self.entries.popitem(last=False)[1].nbytes


#: 64 MiB: the int16 labels of ~650 images at 224 px.
_LABELS = _LabelCache(64 * 2**20)


@dataclass(frozen=True)
class Segmenter:
    """A fixed segmentation recipe; ``segment(x, seeds)`` -> (N, H, W) int64 labels 0..K_i-1."""

    algorithm: str = "slic"
    kwargs: tuple[tuple[str, Any], ...] = ()
    input: str = "minmax"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @classmethod
    def build(cls, algorithm: str, kwargs: dict[str, Any] | None, segmentation_input: str,
              mean: Sequence[float] | None, std: Sequence[float] | None) -> "Segmenter":
        """Validate the parameters and merge ``kwargs`` over the algorithm's defaults."""
        check_choice("segmentation", algorithm, sorted(SEGMENTATION_DEFAULTS))
        check_choice("segmentation_input", segmentation_input, SEGMENTATION_INPUTS)
        mean, std = _channel_values("mean", mean, positive=False), _channel_values("std", std, positive=True)
        if segmentation_input == "denormalize" and (mean is None or std is None):
            raise AttributionError("segmentation_input='denormalize' needs the normalisation's mean= and std=")
        merged = {**SEGMENTATION_DEFAULTS[algorithm], **_check_kwargs(algorithm, kwargs)}
        return cls(algorithm, tuple(sorted(merged.items())), segmentation_input, mean, std)

    def image(self, x_i: Tensor) -> np.ndarray:
        """The (H, W, C) float64 image in [0, 1] that the segmentation sees, from x_i (C, H, W)."""
        image = x_i.detach().to("cpu", torch.float64)
        if self.input == "denormalize":
            if len(self.mean) != len(image) or len(self.std) != len(image):
                raise AttributionError(f"mean/std have {len(self.mean)}/{len(self.std)} values for {len(image)} channels")
            image = (image * torch.tensor(self.std)[:, None, None] + torch.tensor(self.mean)[:, None, None]).clamp(0, 1)
        elif self.input == "minmax":
            low, high = image.min(), image.max()
            image = (image - low) / (high - low) if high > low else torch.zeros_like(image)
        return image.permute(1, 2, 0).numpy()

    def segment_one(self, x_i: Tensor, seed: int) -> np.ndarray:
        """(H, W) int64 labels 0..K-1 of one image x_i (C, H, W); a fresh array (callers may write it)."""
        seed = seed % 2**32 if self.algorithm == "quickshift" else None  # SLIC draws nothing
        key = self._cache_key(x_i, seed)
        labels = None if key is None else _LABELS.get(key)
        if labels is None:
            labels = self._labels(self.image(x_i), seed)
            if key is not None:
                _LABELS.put(key, labels)
        return labels.astype(np.int64)

    def _cache_key(self, x_i: Tensor, seed: int | None) -> tuple | None:
        raw = x_i.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy()
        key = (self, seed, str(x_i.dtype), tuple(x_i.shape), hashlib.blake2b(raw, digest_size=16).digest())
        try:
            hash(key)
        except TypeError:  # an unhashable segmentation_kwargs value: segment without the cache
            return None
        return key

    def _labels(self, image: np.ndarray, seed: int | None) -> np.ndarray:
        """Labels 0..K-1 of the (H, W, C) image, stored as int16 (int32 past 32767 superpixels)."""
        rgb = image.shape[-1] == 3  # Lab conversion only makes sense for colour images
        kwargs = dict(self.kwargs)
        if self.algorithm == "slic":
            labels = slic(image, convert2lab=rgb, channel_axis=-1, **kwargs)
        else:
            labels = quickshift(image, convert2lab=rgb, rng=seed, channel_axis=-1, **kwargs)
        _, dense = np.unique(labels, return_inverse=True)
        return dense.reshape(labels.shape).astype(np.int16 if dense.max(initial=0) < 2**15 else np.int32)

    def segment(self, x: Tensor, seeds: Sequence[int]) -> Tensor:
        """(N, H, W) int64 labels on ``x``'s device for x (N, C, H, W); quickshift uses ``seeds`` (N)."""
        return torch.stack([torch.from_numpy(self.segment_one(x_i, s)) for x_i, s in zip(x, seeds)]).to(x.device)

    def params(self) -> dict[str, Any]:
        """The recipe as method parameters (``segmentation``, ``segmentation_kwargs``, ...)."""
        return {"segmentation": self.algorithm, "segmentation_kwargs": dict(self.kwargs),
                "segmentation_input": self.input, "mean": self.mean, "std": self.std}


def _check_kwargs(algorithm: str, kwargs: Any) -> dict[str, Any]:
    """``segmentation_kwargs`` checked against the algorithm's signature and the ranges above;
    values are kept as given (they are recorded in the method's params)."""
    if kwargs is None:
        return {}
    if not isinstance(kwargs, dict):
        raise AttributionError(f"segmentation_kwargs must be a dict of {algorithm} arguments or None, got {kwargs!r}")
    accepted = set(inspect.signature(_ALGORITHMS[algorithm]).parameters) - _RESERVED
    unknown = sorted(str(k) for k in kwargs if k not in accepted)
    if unknown:
        raise AttributionError(f"segmentation_kwargs has unknown argument(s) {unknown} for {algorithm}; "
                               f"accepted: {sorted(accepted)}")
    for key, value in kwargs.items():
        if key in _KWARG_CHECKS:
            _KWARG_CHECKS[key](f"segmentation_kwargs[{key!r}]", value)
    return kwargs


def _channel_values(name: str, values: Any, positive: bool) -> tuple[float, ...] | None:
    """``mean`` / ``std`` as a tuple of finite floats (``std`` positive), or None."""
    if values is None:
        return None
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or not len(values):
        raise AttributionError(f"{name} must be a non-empty sequence of numbers (one per channel) or None, got {values!r}")
    values = [v.item() if isinstance(v, Tensor) and v.numel() == 1 else v for v in values]  # a tensor of per-channel values
    return tuple(check_float(f"{name}[{i}]", v, 0 if positive else None, low_open=positive) for i, v in enumerate(values))
