"""A multigrid V-cycle for ROAD's imputation systems, used as the conjugate-gradient preconditioner.

Jacobi-preconditioned CG needs a number of iterations proportional to a hole's diameter, so large
removed regions at 224 px cost hundreds of stencil passes. One V-cycle reduces the error at every
scale at once, so preconditioned CG converges in 10 to 15 iterations from 32 to 224 px (relative
tolerance 2e-6).

The hierarchy is algebraic on the geometric grid: level l+1 aggregates 2x2 blocks of level l, with
piecewise-constant prolongation P and restriction R = P^T, and the coarse operator is the Galerkin
product P^T A P, computed once per image as a 9-coefficient stencil field. Galerkin coarsening needs
no rule for which coarse cells are "removed": a cell whose block holds no removed pixel gets a zero
row and column and stays zero. The coarsest grid (at most ``COARSEST_CELLS`` cells) is solved exactly
by a dense inverse per image. Smoothing is damped Jacobi, one sweep before and one after the
(scaled) coarse correction, so the V-cycle is symmetric positive definite, as CG requires.

Layout: fields (the operators' coefficients, the smoothers) are (h, w, M), one per image, and
vectors are (C, h, w, M): the C channels of an image share its matrix, so a field broadcasts over
the leading axis and every elementwise pass runs over contiguous h * w * M runs. A system is one
(channel, image) column; its arithmetic never reads another system. Every level owns its buffers
and the cycle writes into them: on the CPU a fresh tensor of these sizes costs page faults that
take longer than the arithmetic.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

COARSEST_CELLS = 64
SMALL_COARSEST_CELLS = 16
JACOBI_DAMPING = 0.9
# Piecewise-constant aggregation underestimates the smooth error's coarse correction; scaling it up
# (the cycle stays symmetric) saves a few CG iterations on ROAD's holes.
COARSE_SCALE = 1.5
# apply(u, out, rhs): out = A u, or rhs - A u when rhs is given (out may be rhs). u is a bordered
# buffer (see ``bordered``) so that the stencil reads the neighbours of the vector in its interior
# without first copying it into a padded one.
Operator = Callable[[Tensor, Tensor, "Tensor | None"], Tensor]
Stencil = dict[tuple[int, int], Tensor]


def coarsening_depth(h: int, w: int) -> int:
    """How many 2x2 aggregations bring an h x w grid down to at most COARSEST_CELLS cells (or on to
    SMALL_COARSEST_CELLS while they halve exactly: the dense solve's cost grows with the square of the
    cells); the grid is padded to a multiple of 2**depth so that every level halves exactly."""
    depth = 0
    while -(-h // 2 ** depth) * -(-w // 2 ** depth) > COARSEST_CELLS:
        depth += 1
    height, width = -(-h // 2 ** depth), -(-w // 2 ** depth)
    while height % 2 == 0 and width % 2 == 0 and height * width > SMALL_COARSEST_CELLS:
        depth, height, width = depth + 1, height // 2, width // 2
    return depth


def window(h: int, w: int, dy: int, dx: int) -> tuple[slice, slice]:
    """The cells (i, j) of an h x w grid whose neighbour (i + dy, j + dx) is inside it."""
    return slice(max(0, -dy), h - max(0, dy)), slice(max(0, -dx), w - max(0, dx))


def galerkin(stencil: Stencil) -> Stencil:
    """P^T A P for 2x2 aggregation: fine coefficient A[i, i + o] lands on coarse offset
    floor((a + o) / 2) of block i // 2, where a is i's place in its block."""
    coarse: Stencil = {}
    for (dy, dx), field in stencil.items():
        for a in (0, 1):
            for b in (0, 1):
                target = ((a + dy) // 2, (b + dx) // 2)
                part = field[a::2, b::2]
                coarse[target] = part.clone() if target not in coarse else coarse[target].add_(part)
    return coarse


def bordered(like: Tensor, channels: int) -> Tensor:
    """A zeroed (C, h + 2, w + 2, M) buffer for the (h, w, M) field ``like``; its interior
    ``[:, 1:-1, 1:-1]`` holds a vector and the border stays 0, the value outside the grid."""
    h, w, m = like.shape
    return like.new_zeros(channels, h + 2, w + 2, m)


def stencil_operator(stencil: Stencil) -> Operator:
    """out = sum over offsets of stencil[offset] * u[i + offset] (or rhs minus that), for (C, h, w, M)
    vectors and (h, w, M) stencil fields."""
    centre = stencil[(0, 0)]
    neighbours = [(offset, field) for offset, field in stencil.items() if offset != (0, 0)]
    h, w, _ = centre.shape

    def apply(u: Tensor, out: Tensor, rhs: Tensor | None = None) -> Tensor:
        if rhs is None:
            torch.mul(centre, u[:, 1:-1, 1:-1], out=out)
        else:
            torch.addcmul(rhs, centre, u[:, 1:-1, 1:-1], value=-1.0, out=out)
        sign = 1.0 if rhs is None else -1.0
        for (dy, dx), field in neighbours:
            out.addcmul_(field, u[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w], value=sign)
        return out

    return apply


def dense_inverse(stencil: Stencil) -> Tensor:
    """(M, n, n) inverses of the coarsest systems, n = h * w; rows and columns of empty cells are 0."""
    centre = stencil[(0, 0)]
    h, w, m = centre.shape
    index = torch.arange(h * w, device=centre.device).view(h, w)
    dense = centre.new_zeros(m, h * w, h * w)
    for (dy, dx), field in stencil.items():
        cells, neighbours = window(h, w, dy, dx), window(h, w, -dy, -dx)
        dense[:, index[cells].reshape(-1), index[neighbours].reshape(-1)] = field[cells].reshape(-1, m).T
    empty = (centre <= 0).reshape(-1, m).T.to(centre.dtype)
    dense += torch.diag_embed(empty)
    # pinv: an image with no kept pixel at all is singular (its right-hand sides and solutions are 0).
    return torch.linalg.pinv(dense, hermitian=True) * (1 - empty).unsqueeze(1) * (1 - empty).unsqueeze(2)


class Level:
    """One grid level: its operator, damped inverse diagonal, cells that are unknowns (fields
    (h, w, M)), and buffers for (C, h, w, M) vectors; the correction is the interior of a bordered
    buffer, which the operator reads."""

    def __init__(self, apply: Operator, diagonal: Tensor, channels: int) -> None:
        self.apply = apply
        self.cells = (diagonal > 0).to(diagonal.dtype)
        self.smoother = self.cells * JACOBI_DAMPING / diagonal.clamp_min(torch.finfo(diagonal.dtype).tiny)
        h, w, m = diagonal.shape
        self.rhs = diagonal.new_empty(channels, h, w, m)  # written by the finer level's restriction
        self.bordered = bordered(diagonal, channels)
        self.correction = self.bordered[:, 1:-1, 1:-1]
        self.work = torch.empty_like(self.rhs)
        self.pairs = diagonal.new_empty(channels, h // 2, w, m)  # restriction's half-way sums
        self.columns = diagonal.new_empty(channels, h // 2, w, m)  # prolongation's half-way copies


class Hierarchy:
    """The levels (fine first) and the coarsest grid's dense inverses; ``precondition(residual)`` is
    one V-cycle, returned in a buffer that the next call overwrites."""

    def __init__(self, fine_apply: Operator, fine_diagonal: Tensor, stencil: Stencil, depth: int,
                 channels: int) -> None:
        """fine_diagonal: the fine operator's diagonal (H, W, M); stencil: its Galerkin product on the
        first coarse level, ``{offset: (H / 2, W / 2, M)}`` with A[i, i + offset], or for depth 0 the
        fine operator's own stencil, which the dense inverse then solves. H and W must be multiples of
        2**depth."""
        self.levels = [Level(fine_apply, fine_diagonal, channels)]
        for k in range(depth):
            stencil = galerkin(stencil) if k else stencil
            self.levels.append(Level(stencil_operator(stencil), stencil[(0, 0)], channels))
        self.coarsest_inverse = dense_inverse(stencil).permute(1, 2, 0).contiguous()  # (n, n, M)
        n, m = self.coarsest_inverse.shape[1:]
        self.products = self.coarsest_inverse.new_empty(channels, n, n, m)

    def precondition(self, residual: Tensor) -> Tensor:
        return self._cycle(0, residual)

    def _cycle(self, depth: int, residual: Tensor) -> Tensor:
        level = self.levels[depth]
        c, h, w, m = residual.shape
        if depth == len(self.levels) - 1:
            # inverse (n, n, M) times residual (C, n, M) per image, as a broadcast product and sum:
            # the systems are on the last axis, where bmm would want them first.
            products = torch.mul(self.coarsest_inverse, residual.view(c, 1, h * w, m), out=self.products)
            return torch.sum(products, 2, out=level.work.view(c, h * w, m)).view(c, h, w, m)
        correction, work = level.correction, level.work
        torch.mul(level.smoother, residual, out=correction)  # one damped Jacobi sweep from zero
        coarse = self._cycle(depth + 1, self._restrict(depth, level.apply(level.bordered, work, residual)))
        # Prolongation is masked to the level's cells: the operators assume zeros off them (the
        # Galerkin product is unchanged, as A has zero rows and columns there).
        # Duplicating the columns first makes the masked add run over contiguous w * M rows: with a
        # stride-0 axis next to M its inner loop would be only M long.
        level.columns.view(c, h // 2, w // 2, 2, m).copy_(coarse[:, :, :, None])
        correction.view(c, h // 2, 2, w, m).addcmul_(level.cells.view(h // 2, 2, w, m), level.columns[:, :, None],
                                                     value=COARSE_SCALE)
        return correction.addcmul_(level.smoother, level.apply(level.bordered, work, residual))

    def _restrict(self, depth: int, values: Tensor) -> Tensor:
        """R = P^T, the sum of every 2x2 block, into the next level's buffer. Pairwise adds of strided
        views: a reduction over the non-adjacent block axes is many times slower."""
        c, h, w, m = values.shape
        rows = values.view(c, h // 2, 2, w, m)
        pairs = torch.add(rows[:, :, 0], rows[:, :, 1], out=self.levels[depth].pairs).view(c, h // 2, w // 2, 2, m)
        return torch.add(pairs[:, :, :, 0], pairs[:, :, :, 1], out=self.levels[depth + 1].rhs)
