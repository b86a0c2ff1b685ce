"""The area constraint (section 3.1 of the paper): a soft rank constraint on the padded mask.

For area a and n padded-mask pixels, the reference vector r_a has floor(n (1 - a)) zeros followed
by ones; the residual is R_a(m) = mean_i (sort_asc(m)_i - r_a,i)^2. Equivalently each pixel is
pulled towards 1 if its rank is among the top n - floor(n (1 - a)) and towards 0 otherwise, which
is how we evaluate it: one sort to find the ranks, then an elementwise square, so that autograd
keeps one (R, n) tensor instead of the sort's indices and values.

Ties: pixels with equal values are ranked in the order ``torch.sort`` returns them, the rule the
reference uses too, so the gradient (a subgradient where values tie) matches it on the same
device. Note that n counts the padded domain (260 x 260 for a 224 x 224 image), as in TorchRay.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


def zeros_in_reference(pixels: int, area: float) -> int:
    """floor(n (1 - a)): how many of the n padded pixels are pulled towards 0."""
    return int(pixels * (1 - area))


def area_reference(areas: Sequence[float], pixels: int, dtype: torch.dtype = torch.float32,
                   device: torch.device | str = "cpu") -> Tensor:
    """Sorted reference vectors (R, n), one per area of ``areas`` (R,): zeros, then ones."""
    zeros = torch.tensor([zeros_in_reference(pixels, float(a)) for a in areas], device=device)
    positions = torch.arange(pixels, device=device)
    return (positions[None, :] >= zeros[:, None]).to(dtype)


def area_residual(mask: Tensor, reference: Tensor) -> Tensor:
    """R_a per row: mask (R, 1, H_out, W_out) padded masks, reference (R, n) sorted -> (R,)."""
    flat = mask.reshape(mask.shape[0], -1)
    with torch.no_grad():
        order = torch.sort(flat, dim=1).indices
        target = torch.empty_like(flat).scatter_(1, order, reference)
    return ((flat - target) ** 2).mean(dim=1)
