"""ROAD's noisy linear imputation, solved for a whole batch on the device.

Each removed pixel equals the weighted mean of its 8 neighbours (edge neighbours 1/6, diagonal 1/12,
weights renormalised at the image border), jointly over all removed pixels of an image, with the
channels as independent right-hand sides (Rong et al. 2022, ``road/imputations.py``). The reference
builds one sparse matrix per image and calls scipy's direct solver on the CPU. Here the same system,

    d_i u_i - sum_{j removed} w_ij u_j = sum_{j kept} w_ij x_j     for every removed pixel i,

(d_i = sum of the weights of i's in-image neighbours) is solved for every (image, channel) at once by
Jacobi-preconditioned conjugate gradients: the matrix is symmetric (w_ij = w_ji) and positive definite
whenever each hole touches a kept pixel, and applying it is one 3x3 stencil over the batch. Every
``check_every`` iterations the systems whose relative residual is below ``tol`` are retired from the
working set; a system's arithmetic never involves another's, so a row's result does not depend on
the other rows in its batch.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

EDGE_WEIGHT = 1.0 / 6.0
DIAGONAL_WEIGHT = 1.0 / 12.0


def _stencil(values: Tensor, scale: float = 1.0) -> Tensor:
    """``scale`` times the weighted sum of the 8 neighbours of every pixel of ``values`` (M, C, H, W),
    zero outside the image: one depthwise 3x3 convolution.

    The solver calls it on all systems at once as (1, M*C, H, W) in channels-last layout, where
    oneDNN's depthwise kernel is an order of magnitude faster on the CPU than the same stencil over
    (M*C, 1, H, W).
    """
    channels = values.shape[1]
    kernel = scale * values.new_tensor([[DIAGONAL_WEIGHT, EDGE_WEIGHT, DIAGONAL_WEIGHT],
                                        [EDGE_WEIGHT, 0.0, EDGE_WEIGHT],
                                        [DIAGONAL_WEIGHT, EDGE_WEIGHT, DIAGONAL_WEIGHT]])
    return F.conv2d(values, kernel.expand(channels, 1, 3, 3), padding=1, groups=channels)


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum((2, 3), keepdim=True)


def linear_impute(x: Tensor, removed: Tensor, *, tol: float = 1e-6, max_iter: int | None = None,
                  check_every: int = 8) -> Tensor:
    """Fill the ``removed`` pixels of ``x`` by ROAD's linear imputation (no noise).

    x: (M, C, H, W) float; removed: (M, 1, H, W) bool. Returns (M, C, H, W), equal to ``x`` where not
    removed. ``tol`` bounds each system's (preconditioned) residual relative to its right-hand side;
    ``max_iter`` defaults to 4 * (H + W), well above what holes of any shape need (CG on this stencil
    converges in a number of iterations proportional to the hole's diameter).
    """
    m_rows, channels, h, w = x.shape
    # Every (image, channel) is one system: lay them out as the channels of one image, channels-last,
    # so that per-system scalars broadcast along the contiguous axis and the stencil is one
    # depthwise convolution over all systems.
    layout = torch.channels_last

    def systems(t: Tensor) -> Tensor:
        return t.expand(m_rows, channels, h, w).reshape(1, m_rows * channels, h, w).contiguous(memory_format=layout)

    mask = systems(removed.to(x.dtype))
    kept = systems(x) * (1 - mask)
    degree = systems(_stencil(torch.ones(1, 1, h, w, dtype=x.dtype, device=x.device)))
    inverse_degree = mask / degree  # the Jacobi preconditioner, and 0 outside the removed pixels

    def apply(u: Tensor, degree: Tensor) -> Tensor:
        # The system's matrix on the removed pixels: d_i u_i - sum_j w_ij u_j. u is zero outside the
        # removed set, so the stencil only sums removed neighbours; rows outside it are never read.
        return torch.addcmul(_stencil(u, -1.0), degree, u)

    rhs = mask * _stencil(kept)
    # Start from each system's mean kept value: closer than zero, so fewer iterations.
    kept_count = (1 - mask).sum((2, 3), keepdim=True).clamp_min(1)
    solution = mask * (kept.sum((2, 3), keepdim=True) / kept_count)
    final = solution.clone()
    residual = rhs - mask * apply(solution, degree)
    preconditioned = residual * inverse_degree
    direction = preconditioned
    rz = _dot(residual, preconditioned)
    threshold = (tol ** 2) * _dot(rhs, rhs * inverse_degree)
    # The working set: systems still iterating (indices into the S = M*C systems).
    working = torch.arange(m_rows * channels, device=x.device)
    active = (rz > threshold).view(-1)
    tiny = torch.finfo(x.dtype).tiny
    max_iter = 4 * (h + w) if max_iter is None else max_iter
    for iteration in range(1, max_iter + 1):
        if (iteration - 1) % check_every == 0:
            # One host sync every check_every iterations: retire converged systems, so the later
            # iterations (large holes take the longest) only touch the systems that still need them.
            # A system's arithmetic never depends on the others, so retiring it changes nothing.
            if iteration > 1:
                active = rz.view(-1) > threshold.view(-1)
            keep = active.nonzero().view(-1)
            if keep.numel() == 0:
                break
            if keep.numel() < working.numel():
                final[:, working] = solution
                working = working[keep]

                def pick(t: Tensor) -> Tensor:
                    return t[:, keep].contiguous(memory_format=layout)

                solution, residual, direction = pick(solution), pick(residual), pick(direction)
                degree, inverse_degree = pick(degree), pick(inverse_degree)
                rz, threshold = rz[:, keep], threshold[:, keep]
        applied = apply(direction, degree)
        curvature = _dot(direction, applied)
        alpha = torch.where(curvature > 0, rz / curvature.clamp_min(tiny), 0.0)
        solution.addcmul_(alpha, direction)
        residual.addcmul_(alpha, applied, value=-1.0)
        preconditioned = residual * inverse_degree
        rz_next = _dot(residual, preconditioned)
        direction = torch.addcmul(preconditioned, rz_next / rz.clamp_min(tiny), direction)
        rz = rz_next
    else:
        unconverged = int((rz > threshold).sum())
        if unconverged:
            warnings.warn(f"ROAD imputation: {unconverged} of {m_rows * channels} systems did not reach a relative "
                          f"residual of {tol} in {max_iter} iterations", RuntimeWarning, stacklevel=2)
    final[:, working] = solution
    filled = kept + mask * final
    return filled.contiguous().view(m_rows, channels, h, w)


def noisy_linear_impute(x: Tensor, removed: Tensor, noise: Tensor, *, tol: float = 1e-6,
                        max_iter: int | None = None) -> Tensor:
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
