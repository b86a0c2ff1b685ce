"""The perturbation pyramid and the mask-driven interpolation through it (section 3.2 of the paper).

Level l of L holds the image blurred with sigma_l = (1 - l / (L - 1)) * max_blur (``"blur"``) or
faded to tau_l * x with tau_l = l / (L - 1) (``"fade"``): level 0 is the strongest perturbation,
level L - 1 the image itself. A mask value m picks the fractional level v = (L - 1) m and
interpolates linearly between levels floor(v) and floor(v) + 1.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .backend import Backend, call_rows, compiled

PERTURBATIONS: tuple[str, ...] = ("blur", "fade")

#: Added to sqrt(2) sigma in the Gaussian's denominator, as in TorchRay's ``imsmooth`` (float32
#: machine epsilon): it keeps sigma = 0 finite there, and keeping it makes our filters equal to the
#: reference's to the last bit in float64 tests. Its effect on the blur is below 1e-7 relative.
BLUR_EPS: float = 2.0 ** -23


def gaussian_taps(sigma: float, dtype: torch.dtype, device: torch.device | str) -> Tensor:
    """Normalised 1-D Gaussian taps at offsets -ceil(4 sigma) .. ceil(4 sigma); sigma = 0 gives [1]."""
    width = math.ceil(4 * sigma)
    offsets = torch.arange(-width, width + 1, dtype=torch.float64)
    taps = torch.exp(-(offsets / (math.sqrt(2) * sigma + BLUR_EPS)) ** 2)
    return (taps / taps.sum()).to(dtype=dtype, device=device)


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of x (N, C, H, W) with zero padding: vertical pass, then horizontal.

    Zero padding makes borders fade towards 0, which in normalised-input space is the mean colour.
    """
    taps = gaussian_taps(sigma, x.dtype, x.device)
    if taps.numel() == 1:
        return x.clone()
    channels = x.shape[1]
    width = (taps.numel() - 1) // 2
    vertical = taps.reshape(1, 1, -1, 1).expand(channels, 1, -1, 1)
    horizontal = taps.reshape(1, 1, 1, -1).expand(channels, 1, 1, -1)
    y = F.conv2d(x, vertical, padding=(width, 0), groups=channels)
    return F.conv2d(y, horizontal, padding=(0, width), groups=channels)


def perturbation_pyramid(x: Tensor, levels: int = 8, max_blur: float = 20.0, kind: str = "blur") -> Tensor:
    """x (N, C, H, W) -> pyramid (N, L, C, H, W), computed without gradients."""
    if kind not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {kind!r}; choose one of {list(PERTURBATIONS)}")
    if levels < 2:
        raise ValueError(f"the pyramid needs at least 2 levels, got {levels}")
    with torch.no_grad():
        out = x.new_empty(x.shape[0], levels, *x.shape[1:])
        for level in range(levels):
            tau = level / (levels - 1)
            if kind == "blur":
                out[:, level] = gaussian_blur(x, (1 - tau) * max_blur)
            else:
                out[:, level] = x * tau
    return out


class PyramidInterpolation(torch.autograd.Function):
    """z[r] = (1 - w) y_k + w y_{min(k+1, L-1)} of image ``index[r]``'s pyramid, k = floor((L-1) m), w = (L-1) m - k,
    mirrored horizontally when ``flip``.

    Saves only the mask (the pyramid is held by the caller anyway) and gathers the two levels
    again in the backward pass, where dz/dm = (L - 1)(y_{k+1} - y_k): zero at m = 1, where both
    levels are the image, and the floor carries no gradient. With the compiled backend the gathers,
    the interpolation and the flip are one fused kernel each way.
    """

    @staticmethod
    def forward(ctx, pyramid: Tensor, index: Tensor, mask: Tensor, flip: bool,  # type: ignore[override]
                backend: Backend | None) -> Tensor:
        fused = backend is not None and backend.resolved == "compiled"
        ctx.setup = (flip, fused)
        ctx.save_for_backward(pyramid, index, mask)
        if fused:
            return call_rows(compiled("apply_forward", _interpolate), [index, mask], pyramid, flip)
        return _interpolate(index, mask, pyramid, flip)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        pyramid, index, mask = ctx.saved_tensors
        flip, fused = ctx.setup
        if fused:
            grad_mask = call_rows(compiled("apply_backward", _interpolation_grad), [index, mask, grad.contiguous()],
                                  pyramid, flip)
        else:
            grad_mask = _interpolation_grad(index, mask, grad, pyramid, flip)
        return None, None, grad_mask, None, None


def _gather_levels(pyramid: Tensor, index: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    n, levels, channels, height, width = pyramid.shape
    v = mask * (levels - 1)
    k = v.floor()
    w = v - k
    k = k.long()
    # Row r reads level k of image index[r]: a gather on the flattened (image, level) dimension.
    flat = pyramid.reshape(n * levels, channels, height, width)
    base = (index * levels).reshape(-1, 1, 1, 1)
    i0 = (base + k).expand(-1, channels, -1, -1)
    i1 = (base + (k + 1).clamp(max=levels - 1)).expand(-1, channels, -1, -1)
    return torch.gather(flat, 0, i0), torch.gather(flat, 0, i1), w


def _interpolate(index: Tensor, mask: Tensor, pyramid: Tensor, flip: bool) -> Tensor:
    y0, y1, w = _gather_levels(pyramid, index, mask)
    z = (1 - w) * y0 + w * y1
    return z.flip(3) if flip else z


def _interpolation_grad(index: Tensor, mask: Tensor, grad: Tensor, pyramid: Tensor, flip: bool) -> Tensor:
    y0, y1, _ = _gather_levels(pyramid, index, mask)
    if flip:
        grad = grad.flip(3)
    return (grad * (y1 - y0)).sum(dim=1, keepdim=True) * (pyramid.shape[1] - 1)


def apply_mask(pyramid: Tensor, index: Tensor, mask: Tensor, flip: bool = False,
               backend: Backend | None = None) -> Tensor:
    """Perturbed inputs (R, C, H, W) for masks (R, 1, H, W) in [0, 1] on the pyramids (N, L, C, H, W)
    of images ``index`` (R,), mirrored horizontally when ``flip``. ``backend``: a resolved
    :class:`.backend.Backend` (None: eager)."""
    return PyramidInterpolation.apply(pyramid, index, mask, flip, backend)  # type: ignore[no-any-return]
