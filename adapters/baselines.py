"""Seeded baseline distributions for DeepLiftShap and GradientShap (expected gradients).

SHAP-style methods average over reference inputs. Erion et al. (2019, expected gradients) draw them
from the training data, which an adapter does not see; these distributions stand in for it, one set
of ``n`` baselines per image, drawn from a generator seeded with the image's own seed (so an image
gets the same baselines in any batch). Sturmfels, Lundberg and Lee (Distill 2020) compare such
choices.

- ``"gaussian"`` (default): N(0, ``std``^2) in every value. For mean/std-normalised inputs these are
  noise images with the dataset's per-channel mean and, with ``std=1``, its standard deviation.
- ``"uniform"``: U(min x_i, max x_i) in every value (the image's own range).
- ``"blur"``: the image blurred by a Gaussian of sigma ``u * blur * min(H, W)`` pixels, one
  u ~ U(0, 1) per baseline (zero padding: borders fade to 0, the mean colour of normalised inputs).
- ``"zero"``: the all-zero image (the dataset mean of normalised inputs), repeated; deterministic.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import Tensor

from .checks import check_choice, check_float, check_int
from .extremal.pyramid import gaussian_blur
from .seeding import generator

DISTRIBUTIONS: tuple[str, ...] = ("gaussian", "uniform", "blur", "zero")
#: Beyond a few hundred baselines the average stops changing; DeepLiftShap runs every (image, baseline) pair.
MAX_BASELINES = 1024


@dataclass(frozen=True)
class BaselineDistribution:
    """``kind`` (one of :data:`DISTRIBUTIONS`) with ``n`` baselines per image."""

    kind: str = "gaussian"
    n: int = 16
    std: float = 1.0
    blur: float = 0.1

    @classmethod
    def build(cls, kind: str, n: int, std: float, blur: float, minimum: int = 1) -> "BaselineDistribution":
        return cls(check_choice("baselines", kind, DISTRIBUTIONS, what="baseline distribution"),
                   check_int("n_baselines", n, minimum, MAX_BASELINES, why="the average stops changing long before"),
                   check_float("baseline_std", std, 0, 100, low_open=True),
                   check_float("baseline_blur", blur, 0, 1, low_open=True))

    def params(self) -> dict[str, object]:
        return {"baselines": self.kind, "n_baselines": self.n, "baseline_std": self.std, "baseline_blur": self.blur}

    def draw(self, x_i: Tensor, seed: int) -> Tensor:
        """(n, C, H, W) baselines for the image x_i (C, H, W), from the image's ``seed``."""
        shape = (self.n,) + tuple(x_i.shape)
        gen = generator(baseline_seed(seed), x_i.device)
        x_i = x_i.detach()
        if self.kind == "zero":
            return torch.zeros(shape, device=x_i.device, dtype=x_i.dtype)
        if self.kind == "gaussian":
            return torch.randn(shape, generator=gen, device=x_i.device, dtype=x_i.dtype) * self.std
        if self.kind == "uniform":
            low, high = x_i.min(), x_i.max()
            return torch.rand(shape, generator=gen, device=x_i.device, dtype=x_i.dtype) * (high - low) + low
        scale = self.blur * min(x_i.shape[-2:])
        fractions = torch.rand(self.n, generator=gen, device=x_i.device, dtype=torch.float64).tolist()
        return torch.cat([gaussian_blur(x_i.unsqueeze(0), u * scale) for u in fractions])


def baseline_seed(seed: int) -> int:
    """The baselines' own seed, derived from an image seed: apart from the stream the method's
    other draws (noise, path points) take from that image seed."""
    digest = hashlib.blake2b(int(seed).to_bytes(8, "little", signed=False), digest_size=8, person=b"baselines")
    return int.from_bytes(digest.digest(), "little") >> 1
