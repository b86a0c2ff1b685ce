"""Smooth masks from a coarse parameter grid (Fong, Patrick and Vedaldi 2019, section 3.3).

Parameters ``p`` live on a grid with one cell every ``step`` pixels. Output pixel ``u`` of the
padded domain is a smooth maximum over the ``(2 radius + 1)^2`` neighbouring cells ``j``:

    V_j(u) = W_j(u) * p[cell(u) + j - padding],   W_j(u) = k(|u - centre_j(u)| / sigma),
    m(u)   = sum_j V_j(u) softmax_j(coldness * V(u)),   k(z) = exp(-2 max(0, z - 1/2)^2),

clamped to [0, 1]. Cell ``i`` is centred at pixel ``margin + step * i`` with ``margin = sigma``.
Because ``cell(u) = floor(u / step)``, the weight ``W_j(u)`` depends only on ``u mod step`` (the
*phase*): we keep ``W`` as a (candidates, step, step) table instead of one weight per pixel, and
compute the mask phase by phase (see :mod:`.smooth_max`). The mask covers a padded domain larger
than the image (260 x 260 for 224 x 224); the area constraint counts that padded domain, the image
sees the crop starting at ``round(margin)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from .backend import Backend
from .smooth_max import COLDNESS, smooth_max_mask


@dataclass(frozen=True)
class MaskGeometry:
    """Sizes of the parameter grid and of the padded mask for an image of ``height x width``.

    For 224 x 224 with step 7 and sigma 21: 32 x 32 parameters, 9 x 9 = 81 candidates per pixel,
    a 38 x 38 grid of candidate cells, a 260 x 260 padded mask cropped at offset 21.
    """

    height: int
    width: int
    step: int = 7
    sigma: float = 21.0

    def __post_init__(self) -> None:
        if self.step < 1 or int(self.step) != self.step:
            raise ValueError(f"step must be a positive integer, got {self.step!r}")
        if not self.sigma > 0:
            raise ValueError(f"sigma must be positive, got {self.sigma!r}")

    @property
    def margin(self) -> float:
        return float(self.sigma)

    @property
    def padding(self) -> int:
        """Zero cells added around the parameter grid, so that the margin has candidates too."""
        return 1 + math.ceil((self.margin + self.sigma) / self.step)

    @property
    def radius(self) -> int:
        """Half-width of the candidate neighbourhood, in cells: far enough for the kernel to decay."""
        return 1 + math.ceil(self.sigma / self.step)

    @property
    def window(self) -> int:
        return 2 * self.radius + 1

    @property
    def candidates(self) -> int:
        return self.window ** 2

    @property
    def shape_in(self) -> tuple[int, int]:
        """Parameter grid (h, w)."""
        return (math.ceil(self.height / self.step), math.ceil(self.width / self.step))

    @property
    def shape_mid(self) -> tuple[int, int]:
        """Cells that own at least one pixel of the padded mask."""
        return tuple(z + 2 * self.padding - self.window + 1 for z in self.shape_in)  # type: ignore[return-value]

    @property
    def shape_out(self) -> tuple[int, int]:
        """Padded mask (H_out, W_out); the last cell row owns a single pixel row."""
        return tuple(self.step * z - self.step + 1 for z in self.shape_mid)  # type: ignore[return-value]

    @property
    def offset(self) -> int:
        """Top-left corner of the image inside the padded mask."""
        return round(self.margin)

    @property
    def padded_pixels(self) -> int:
        return self.shape_out[0] * self.shape_out[1]

    def kernel_weights(self, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> Tensor:
        """The weight table W (candidates, step, step): W[j, py, px] for candidate j of phase (py, px).

        Computed in float64 from exact integer offsets, then cast: the pixel-to-centre offset of
        candidate (jy, jx) at phase (py, px) is (py + step * (padding - jy) - margin, same for x).
        """
        s = self.step
        phase = torch.arange(s, dtype=torch.float64)
        cand = torch.arange(self.window, dtype=torch.float64)
        # offsets[j, p] along one axis, then combined into (jy, jx, py, px).
        offsets = phase[None, :] + s * (self.padding - cand[:, None]) - self.margin
        dy = offsets[:, None, :, None]
        dx = offsets[None, :, None, :]
        distance = torch.sqrt(dy ** 2 + dx ** 2)
        weights = _kernel(distance / self.sigma)
        return weights.reshape(self.candidates, s, s).to(dtype=dtype, device=device)


def _kernel(z: Tensor) -> Tensor:
    """Flat (= 1) up to half a sigma, then a Gaussian of std sigma / 2."""
    return torch.exp(-2 * ((z - 0.5).clamp(min=0) ** 2))


class MaskGenerator:
    """Turns parameters (R, 1, h, w) into smooth masks: cropped (R, 1, H, W) and padded (R, 1, H_out, W_out).

    ``backend`` chooses how the smooth maximum is evaluated (:class:`.backend.Backend`); every
    backend returns the same values up to float rounding and keeps only the parameters, the mask
    and one normaliser per pixel for the backward pass (no per-candidate tensors).
    """

    def __init__(self, geometry: MaskGeometry, dtype: torch.dtype, device: torch.device | str,
                 backend: Backend | None = None) -> None:
        self.geometry = geometry
        self.dtype = dtype
        self.device = torch.device(device)
        self.backend = backend or Backend("eager")
        # W as (candidates, phases, 1): one row per candidate, broadcast over cells.
        self.weights = geometry.kernel_weights(dtype, self.device).reshape(geometry.candidates, -1, 1)

    @cached_property
    def phase_shape(self) -> tuple[int, int, int, int]:
        g = self.geometry
        return (g.step, g.step, g.shape_mid[0], g.shape_mid[1])

    def __call__(self, params: Tensor) -> tuple[Tensor, Tensor]:
        """params (R, 1, h, w) in [0, 1] -> (cropped (R, 1, H, W), padded (R, 1, H_out, W_out))."""
        full = self.padded(params)
        g = self.geometry
        o = g.offset
        cropped = full[:, :, o:o + g.height, o:o + g.width]
        return cropped, full

    def padded(self, params: Tensor) -> Tensor:
        """params (R, 1, h, w) -> padded mask (R, 1, H_out, W_out)."""
        g = self.geometry
        expected = (1, *g.shape_in)
        if params.dim() != 4 or tuple(params.shape[1:]) != expected:
            raise ValueError(f"mask parameters must have shape (R, {', '.join(map(str, expected))}), "
                             f"got {tuple(params.shape)}")
        rows = params.shape[0]
        phases = smooth_max_mask(params, self.weights, g.window, g.padding, g.shape_mid, self.backend)  # (R, s*s, Hm*Wm)
        s, _, hm, wm = self.phase_shape
        # (R, py, px, iy, ix) -> (R, iy, py, ix, px): pixel (iy * s + py, ix * s + px).
        grid = phases.reshape(rows, s, s, hm, wm).permute(0, 3, 1, 4, 2).reshape(rows, 1, hm * s, wm * s)
        return grid[:, :, :g.shape_out[0], :g.shape_out[1]]


__all__ = ["COLDNESS", "MaskGenerator", "MaskGeometry"]
