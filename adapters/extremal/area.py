"""The area constraint (section 3.1 of the paper): a soft rank constraint on the padded mask.

For area a and n padded-mask pixels, the reference vector r_a has floor(n (1 - a)) zeros followed
by ones; the residual is R_a(m) = mean_i (sort_asc(m)_i - r_a,i)^2. Equivalently each pixel is
pulled towards 1 if its rank is among the top n - floor(n (1 - a)) and towards 0 otherwise, which
is how we evaluate it: one sort to find the ranks, then an elementwise square, so that autograd
keeps one (R, n) tensor instead of the sort's indices and values.

Ranks come from one of two rules, equal except where values tie (there the gradient is a
subgradient and either choice is valid):

* ``sort``: ``torch.sort``'s order, the reference's rule: the gradient matches TorchRay's on the
  same device, bit for bit in float64 (at the all-ones start every interior phase of the mask ties).
* ``select``: a k-th value selection per area (O(n), about 10x faster than sorting 67,600 pixels on
  a CPU), ties at the threshold going to the highest indices. Used by the fused backend, whose float
  rounding differs from the reference anyway.

Note that n counts the padded domain (260 x 260 for a 224 x 224 image), as in TorchRay.
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


class AreaConstraint:
    """The area residual of R rows with areas ``areas`` (host floats) on masks of n pixels.

    Everything that depends on the areas is built once, on the host side, so that evaluating the
    residual in the loop never synchronises with the device.
    """

    def __init__(self, areas: Sequence[float], pixels: int, dtype: torch.dtype, device: torch.device | str,
                 ties: str = "sort") -> None:
        if ties not in ("sort", "select"):
            raise ValueError(f"unknown tie rule {ties!r}; choose 'sort' or 'select'")
        self.ties = ties
        self.pixels = pixels
        self.reference = area_reference(areas, pixels, dtype, device)
        zeros = [zeros_in_reference(pixels, float(a)) for a in areas]
        self.ones = torch.tensor([pixels - z for z in zeros], device=device)
        # kthvalue takes one k for all rows: one call per distinct area. k = zeros + 1 is the rank
        # (1-based, ascending) of the smallest value that belongs to the top.
        self.groups = [(z + 1, torch.tensor([r for r, zr in enumerate(zeros) if zr == z], device=device))
                       for z in sorted(set(zeros))]

    def residual(self, mask: Tensor) -> Tensor:
        """R_a per row (R,) for padded masks (R, 1, H_out, W_out)."""
        flat = mask.reshape(mask.shape[0], -1)
        with torch.no_grad():
            if self.ties == "sort":
                order = torch.sort(flat, dim=1).indices
                target = torch.empty_like(flat).scatter_(1, order, self.reference)
            else:
                target = self._top(flat).to(flat.dtype)
        return ((flat - target) ** 2).mean(dim=1)

    def _top(self, flat: Tensor) -> Tensor:
        """Boolean (R, n): each row's ``ones`` largest values, ties at the threshold to the highest indices."""
        threshold = flat.new_empty(flat.shape[0])
        for k, rows in self.groups:
            threshold[rows] = flat[rows].kthvalue(k, dim=1).values
        above = flat > threshold[:, None]
        tied = flat == threshold[:, None]
        needed = self.ones - above.sum(dim=1)  # how many tied values join the top
        tied_from_end = tied.flip(1).cumsum(dim=1).flip(1)  # tied values at index >= i
        return above | (tied & (tied_from_end <= needed[:, None]))
