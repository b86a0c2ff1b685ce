"""ROAD's noisy linear imputation, solved for a whole batch on the device.

Each removed pixel equals the weighted mean of its 8 neighbours (edge neighbours 1/6, diagonal 1/12,
weights renormalised at the image border), jointly over all removed pixels of an image, with the
channels as independent right-hand sides (Rong et al. 2022, ``road/imputations.py``). The reference
builds one sparse matrix per image and calls scipy's direct solver on the CPU. Here the same system,

    d_i u_i - sum_{j removed} w_ij u_j = sum_{j kept} w_ij x_j     for every removed pixel i,

(d_i = sum of the weights of i's in-image neighbours) is solved for every (image, channel) at once by
conjugate gradients preconditioned with one multigrid V-cycle (:mod:`metrics.multigrid`): the matrix
is symmetric (w_ij = w_ji) and positive definite whenever each hole touches a kept pixel, and the
V-cycle keeps the iteration count nearly independent of the holes' size (12 at 32 px to 16 at 224 px
for a relative tolerance of 1e-6 on 10-90 % removals, where Jacobi-preconditioned CG needs a number
proportional to the hole's diameter). A system that has converged takes steps of 0; a system's
arithmetic never involves another's, so a row's result does not depend on the other rows in its batch.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

from .multigrid import Hierarchy, coarsening_depth, shifted

EDGE_WEIGHT = 1.0 / 6.0
DIAGONAL_WEIGHT = 1.0 / 12.0
NEIGHBOUR_WEIGHTS = {(dy, dx): DIAGONAL_WEIGHT if dy and dx else EDGE_WEIGHT
                     for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx}


class NeighbourSum:
    """The [1 2 1] x [1 2 1] sum around every pixel of (H, W, S) values, zero outside the image: 12 x
    the weighted sum of the 8 neighbours plus 4 x the pixel. Two 3-tap passes along contiguous slices,
    into buffers reused across calls (a fresh CPU tensor of these sizes costs page faults that take
    longer than the arithmetic); the result is overwritten by the next call.
    """

    def __init__(self, like: Tensor) -> None:
        h, w, s = like.shape
        self.padded = like.new_zeros(h + 2, w + 2, s)
        self.rows = like.new_empty(h + 2, w, s)
        self.out = like.new_empty(h, w, s)

    def __call__(self, values: Tensor) -> Tensor:
        padded, rows, out = self.padded, self.rows, self.out
        padded[1:-1, 1:-1] = values
        torch.add(padded[:, :-2], padded[:, 2:], out=rows).add_(padded[:, 1:-1], alpha=2.0)
        return torch.add(rows[:-2], rows[2:], out=out).add_(rows[1:-1], alpha=2.0)


class Dot:
    """Per-system dot products of (H, W, S) tensors, through one reused buffer."""

    def __init__(self, like: Tensor) -> None:
        self.product = torch.empty_like(like)

    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.mul(a, b, out=self.product).sum((0, 1))


def _to_systems(t: Tensor, m_rows: int, channels: int, height: int, width: int) -> Tensor:
    """(M, 1 or C, h, w) -> (height, width, M * C), zero-padded at the bottom and right."""
    t = t.expand(m_rows, channels, *t.shape[2:]).permute(2, 3, 0, 1).reshape(*t.shape[2:], m_rows * channels)
    return F.pad(t, (0, 0, 0, width - t.shape[1], 0, height - t.shape[0]))


def linear_impute(x: Tensor, removed: Tensor, *, tol: float = 1e-6, max_iter: int = 100) -> Tensor:
    """Fill the ``removed`` pixels of ``x`` by ROAD's linear imputation (no noise).

    x: (M, C, H, W) float; removed: (M, 1, H, W) bool. Returns (M, C, H, W), equal to ``x`` where not
    removed. A system has converged when its residual's norm in the preconditioner's metric (about
    the error's energy norm) has fallen by ``tol`` from the start; multigrid-preconditioned CG gets
    there in 12 to 16 iterations from 32 to 224 px, so ``max_iter`` is only a guard.
    """
    m_rows, channels, h, w = x.shape
    # Every (image, channel) is one system, on the contiguous last axis: per-system scalars broadcast
    # along it, and shifted views of the grid are contiguous runs. The grid is padded (with pixels
    # that are neither removed nor kept) so that every multigrid level halves exactly.
    depth = coarsening_depth(h, w)
    height, width = -(-h // 2 ** depth) * 2 ** depth, -(-w // 2 ** depth) * 2 ** depth
    mask = _to_systems(removed.to(x.dtype), m_rows, channels, height, width)
    kept = _to_systems(x, m_rows, channels, height, width) * (1 - mask)
    inside = x.new_zeros(height, width, 1)
    inside[:h, :w] = 1
    degree = NeighbourSum(inside)(inside) / 12 - inside / 3  # d_i: the weights of i's in-image neighbours
    neighbours, dot = NeighbourSum(mask), Dot(mask)
    # A u = m (d u - sum_j w_ij u_j) = m ((d + 1/3) u - B(u) / 12) for u zero off the removed set.
    centre, edge = mask * (degree + 1.0 / 3.0), mask / 12.0

    def apply(u: Tensor, out: Tensor) -> Tensor:
        return torch.mul(centre, u, out=out).addcmul_(edge, neighbours(u), value=-1.0)

    stencil = {offset: (-weight) * mask * shifted(mask, *offset) for offset, weight in NEIGHBOUR_WEIGHTS.items()}
    stencil[(0, 0)] = mask * degree
    hierarchy = Hierarchy(apply, stencil, depth)
    del stencil  # the hierarchy keeps what it needs; free the nine fine fields before iterating
    # Start from each system's mean kept value: closer than zero.
    solution = mask * (kept.sum((0, 1)) / (1 - mask).sum((0, 1)).clamp_min(1))
    applied = torch.empty_like(mask)
    # The right-hand side is the kept neighbours' weighted sum (B's centre term is 0 off the kept set).
    residual = (edge * neighbours(kept)).sub_(apply(solution, applied))
    direction = hierarchy.precondition(residual).clone()
    rz = dot(residual, direction)
    threshold = (tol ** 2) * rz
    tiny = torch.finfo(x.dtype).tiny
    for _ in range(max_iter):
        # A converged system takes steps of 0 from here on, so its result never depends on how long
        # the other systems of the batch keep iterating.
        active = rz > threshold
        if not bool(active.any()):
            break
        apply(direction, applied)
        curvature = dot(direction, applied)
        alpha = torch.where(active & (curvature > 0), rz / curvature.clamp_min(tiny), 0.0)
        solution.addcmul_(alpha, direction)
        residual.addcmul_(alpha, applied, value=-1.0)
        preconditioned = hierarchy.precondition(residual)
        rz_next = torch.where(active, dot(residual, preconditioned), rz)
        direction.mul_(rz_next / rz.clamp_min(tiny)).add_(preconditioned)
        rz = rz_next
    else:
        unconverged = int((rz > threshold).sum())
        if unconverged:
            warnings.warn(f"ROAD imputation: {unconverged} of {m_rows * channels} systems did not reach a relative "
                          f"residual of {tol} in {max_iter} iterations", RuntimeWarning, stacklevel=2)
    filled = (kept + mask * solution)[:h, :w]
    return filled.reshape(h, w, m_rows, channels).permute(2, 3, 0, 1).contiguous()


def noisy_linear_impute(x: Tensor, removed: Tensor, noise: Tensor, *, tol: float = 1e-6,
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
