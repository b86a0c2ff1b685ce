"""ROAD's noisy linear imputation, solved for a whole batch on the device.

Each removed pixel equals the weighted mean of its 8 neighbours (edge neighbours 1/6, diagonal 1/12,
weights renormalised at the image border), jointly over all removed pixels of an image, with the
channels as independent right-hand sides (Rong et al. 2022, ``road/imputations.py``). The reference
builds one sparse matrix per image and calls scipy's direct solver on the CPU. Here the same system,

    d_i u_i - sum_{j removed} w_ij u_j = sum_{j kept} w_ij x_j     for every removed pixel i,

(d_i = sum of the weights of i's in-image neighbours) is solved for every (image, channel) at once by
conjugate gradients preconditioned with one multigrid V-cycle (:mod:`metrics.multigrid`): the matrix
is symmetric (w_ij = w_ji) and positive definite whenever each hole touches a kept pixel, and the
V-cycle keeps the iteration count nearly independent of the holes' size (10 at 32 px to 15 at 224 px
for the default relative tolerance of 2e-6 on 10-90 % removals, where Jacobi-preconditioned CG needs
a number proportional to the hole's diameter). The matrix depends only on the image's mask, so its
fields (and the V-cycle's levels) are built once per image and shared by its channels. A system that
has converged takes steps of 0; a system's arithmetic never involves another's, so a row's result
does not depend on the other rows in its batch.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

from .multigrid import Hierarchy, Stencil, bordered, coarsening_depth

# The max abs difference from scipy's direct solver is about 1e-5 per 1e-6 of tolerance at 224 px
# (2.4e-5 on the speed suite's masks), well inside the 1e-4 the tests require.
DEFAULT_TOL = 2e-6
EDGE_WEIGHT = 1.0 / 6.0
DIAGONAL_WEIGHT = 1.0 / 12.0
NEIGHBOUR_WEIGHTS = {(dy, dx): DIAGONAL_WEIGHT if dy and dx else EDGE_WEIGHT
                     for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx}


class NeighbourSum:
    """The [1 2 1] x [1 2 1] sum around every pixel of (L, H, W, M) values, zero outside the image: 12 x
    the weighted sum of the 8 neighbours plus 4 x the pixel. It reads the values from a bordered
    (L, H + 2, W + 2, M) buffer (:func:`metrics.multigrid.bordered`) and makes two 3-tap passes along
    contiguous slices, into buffers reused across calls (a fresh CPU tensor of these sizes costs page
    faults that take longer than the arithmetic); the result is overwritten by the next call.
    """

    def __init__(self, like: Tensor) -> None:
        n, h, w, m = like.shape
        self.rows = like.new_empty(n, h + 2, w, m)
        self.out = like.new_empty(n, h, w, m)

    def __call__(self, padded: Tensor) -> Tensor:
        rows, out = self.rows, self.out
        torch.add(padded[:, :, :-2], padded[:, :, 2:], out=rows).add_(padded[:, :, 1:-1], alpha=2.0)
        return torch.add(rows[:, :-2], rows[:, 2:], out=out).add_(rows[:, 1:-1], alpha=2.0)


class Dot:
    """Per-system dot products of (C, H, W, M) tensors, (C, 1, 1, M), through one reused buffer."""

    def __init__(self, like: Tensor) -> None:
        self.product = torch.empty_like(like)

    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.mul(a, b, out=self.product).sum((1, 2), keepdim=True)


def aggregated_stencil(mask: Tensor, degree: Tensor, block: int) -> Stencil:
    """P^T A P of the fine operator A for block x block aggregation (block 1: A itself), fields
    (H / block, W / block, M), straight from the mask: A[i, i + o] = -w_o m_i m_(i+o) off the diagonal
    and m_i d_i on it, so A's nine fine fields are never materialised. Coefficient A[i, i + o] lands on
    coarse offset floor((a + o) / block), where a is i's place in its block."""
    h, w, m = mask.shape
    ch, cw = h // block, w // block
    padded = F.pad(mask, (0, 0, 1, 1, 1, 1))
    diagonal = mask * degree
    coarse = {(dy, dx): mask.new_zeros(ch, cw, m) for dy in (-1, 0, 1) for dx in (-1, 0, 1)}
    for a in range(block):
        for b in range(block):
            cells = mask[a::block, b::block]
            coarse[(0, 0)].add_(diagonal[a::block, b::block])
            for (dy, dx), weight in NEIGHBOUR_WEIGHTS.items():
                neighbours = padded[1 + a + dy::block, 1 + b + dx::block][:ch, :cw]
                coarse[((a + dy) // block, (b + dx) // block)].addcmul_(cells, neighbours, value=-weight)
    return coarse


def linear_impute(x: Tensor, removed: Tensor, *, tol: float = DEFAULT_TOL, max_iter: int = 100) -> Tensor:
    """Fill the ``removed`` pixels of ``x`` by ROAD's linear imputation (no noise).

    x: (M, C, H, W) float; removed: (M, 1, H, W) bool (or (M, C, H, W): every channel its own
    pattern). Returns (M, C, H, W), equal to ``x`` where not removed. A system has converged when its
    residual's norm in the preconditioner's metric (about the error's energy norm) has fallen by
    ``tol`` from the start; multigrid-preconditioned CG gets there in 10 to 15 iterations from 32 to
    224 px, so ``max_iter`` is only a guard. The default ``tol`` keeps the result within about 3e-5
    of scipy's direct solver on 224 px images (1e-6 halves that for one more iteration at 64 px).
    """
    m_rows, channels, h, w = x.shape
    if removed.shape[1] != 1:  # one pattern per channel: every channel is an image of its own
        flat = linear_impute(x.reshape(-1, 1, h, w), removed.expand_as(x).reshape(-1, 1, h, w), tol=tol,
                             max_iter=max_iter)
        return flat.view(m_rows, channels, h, w)
    # The channels of an image share its matrix: fields are (height, width, M), one per image, and
    # vectors (C, height, width, M), so a field broadcasts over the leading axis, every elementwise
    # pass is one contiguous run, shifted views of the grid are contiguous runs of width * M, and
    # per-system scalars are (C, 1, 1, M). The grid is padded (with pixels that are neither removed
    # nor kept) so that every multigrid level halves exactly.
    depth = coarsening_depth(h, w)
    height, width = -(-h // 2 ** depth) * 2 ** depth, -(-w // 2 ** depth) * 2 ** depth
    mask = x.new_zeros(height, width, m_rows)
    mask[:h, :w] = removed[:, 0].permute(1, 2, 0)
    inside = bordered(x.new_empty(height, width, 1), 1)
    inside[:, 1:h + 1, 1:w + 1] = 1
    # d_i: the weights of i's in-image neighbours.
    degree = NeighbourSum(inside[:, 1:-1, 1:-1])(inside)[0] / 12 - inside[0, 1:-1, 1:-1] / 3
    # Vectors that the fine operator reads live in bordered buffers (see metrics.multigrid.bordered).
    kept_bordered = bordered(mask, channels)
    kept = kept_bordered[:, 1:-1, 1:-1]
    kept[:, :h, :w] = x.permute(1, 2, 3, 0)
    kept.mul_(1 - mask)
    neighbours = NeighbourSum(kept)
    # A u = m (d u - sum_j w_ij u_j) = m ((d + 1/3) u - B(u) / 12) for u zero off the removed set.
    centre, edge = mask * (degree + 1.0 / 3.0), mask / 12.0

    def apply(u: Tensor, out: Tensor, rhs: Tensor | None = None) -> Tensor:
        if rhs is None:
            return torch.mul(centre, u[:, 1:-1, 1:-1], out=out).addcmul_(edge, neighbours(u), value=-1.0)
        return torch.addcmul(rhs, centre, u[:, 1:-1, 1:-1], value=-1.0, out=out).addcmul_(edge, neighbours(u))

    hierarchy = Hierarchy(apply, centre - mask / 3.0, aggregated_stencil(mask, degree, 2 if depth else 1), depth,
                          channels)
    # Start from each system's mean kept value: closer than zero.
    solution = mask * (kept.sum((1, 2), keepdim=True) / ((1 - mask) * inside[0, 1:-1, 1:-1]).sum((0, 1)).clamp_min(1))
    direction_bordered = bordered(mask, channels)
    direction = direction_bordered[:, 1:-1, 1:-1]
    direction.copy_(solution)  # the operator reads bordered buffers
    # The right-hand side is the kept neighbours' weighted sum (B's centre term is 0 off the kept set).
    residual = torch.mul(edge, neighbours(kept_bordered))
    apply(direction_bordered, residual, residual)
    direction.copy_(hierarchy.precondition(residual))
    applied = torch.empty_like(residual)
    dot = Dot(applied)
    rz = dot(residual, direction)
    threshold = (tol ** 2) * rz
    tiny = torch.finfo(x.dtype).tiny

    def across(scalars: Tensor) -> Tensor:
        """(C, 1, 1, M) per-system scalars copied along a grid row, (C, 1, width, M): broadcast over
        the rows only, a vector update then runs over contiguous width * M runs instead of M."""
        return scalars.expand(channels, 1, width, m_rows).contiguous()

    for _ in range(max_iter):
        # A converged system takes steps of 0 from here on, so its result never depends on how long
        # the other systems of the batch keep iterating.
        active = rz > threshold
        if not bool(active.any()):
            break
        apply(direction_bordered, applied)
        curvature = dot(direction, applied)
        alpha = across(torch.where(active & (curvature > 0), rz / curvature.clamp_min(tiny), 0.0))
        solution.addcmul_(alpha, direction)
        residual.addcmul_(alpha, applied, value=-1.0)
        preconditioned = hierarchy.precondition(residual)
        rz_next = torch.where(active, dot(residual, preconditioned), rz)
        torch.addcmul(preconditioned, across(rz_next / rz.clamp_min(tiny)), direction, out=direction)
        rz = rz_next
    else:
        unconverged = int((rz > threshold).sum())
        if unconverged:
            warnings.warn(f"ROAD imputation: {unconverged} of {m_rows * channels} systems did not reach a relative "
                          f"residual of {tol} in {max_iter} iterations", RuntimeWarning, stacklevel=2)
    filled = kept.addcmul_(mask, solution)[:, :h, :w]
    return filled.permute(3, 0, 1, 2).contiguous()


def noisy_linear_impute(x: Tensor, removed: Tensor, noise: Tensor, *, tol: float = DEFAULT_TOL,
                        max_iter: int = 100) -> Tensor:
    """:func:`linear_impute` plus ``noise`` (broadcastable to ``x``) on the removed pixels only."""
    filled = linear_impute(x, removed, tol=tol, max_iter=max_iter)
    return filled + removed.to(x.dtype) * noise


def imputation_noise(n_fractions: int, shape: tuple[int, int, int], std: float, seed: int,
                     device: torch.device | str) -> Tensor:
    """N(0, std^2) noise (n_fractions, C, H, W), one field per removal fraction, from ``seed``.

    The same field serves every image, so an image's imputation never depends on its batch.
    """
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    return (std * torch.randn((n_fractions, *shape), generator=generator)).to(device)
