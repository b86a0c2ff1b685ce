"""A multigrid V-cycle for ROAD's imputation systems, used as the conjugate-gradient preconditioner.

Jacobi-preconditioned CG needs a number of iterations proportional to a hole's diameter, so large
removed regions at 224 px cost hundreds of stencil passes. One V-cycle reduces the error at every
scale at once, so preconditioned CG converges in 12 to 16 iterations from 32 to 224 px.

The hierarchy is algebraic on the geometric grid: level l+1 aggregates 2x2 blocks of level l, with
piecewise-constant prolongation P and restriction R = P^T, and the coarse operator is the Galerkin
product P^T A P, computed once per system as a 9-coefficient stencil field. Galerkin coarsening needs
no rule for which coarse cells are "removed": a cell whose block holds no removed pixel gets a zero
row and column and stays zero. The coarsest grid (at most ``COARSEST_CELLS`` cells) is solved exactly
by a dense inverse per system. Smoothing is damped Jacobi, one sweep before and one after the
(scaled) coarse correction, so the V-cycle is symmetric positive definite, as CG requires.

Layout: every tensor is (h, w, S), S = systems (images x channels) on the contiguous axis, as in
:mod:`metrics.imputation`; a system's arithmetic never reads another system. Every level owns its
buffers and the cycle writes into them: on the CPU a fresh tensor of these sizes costs page faults
that take longer than the arithmetic.
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
Operator = Callable[[Tensor, Tensor], Tensor]  # apply(u, out) -> out = A u
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


def shifted(values: Tensor, dy: int, dx: int) -> Tensor:
    """values[i + dy, j + dx] on the (h, w, S) grid, zero outside."""
    h, w = values.shape[:2]
    out = torch.zeros_like(values)
    out[window(h, w, dy, dx)] = values[window(h, w, -dy, -dx)]
    return out


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


def stencil_operator(stencil: Stencil) -> Operator:
    """apply(u, out): out = sum over offsets of stencil[offset] * u[i + offset]."""
    centre = stencil[(0, 0)]
    neighbours = [(offset, field) for offset, field in stencil.items() if offset != (0, 0)]
    h, w, s = centre.shape
    padded = centre.new_zeros(h + 2, w + 2, s)

    def apply(u: Tensor, out: Tensor) -> Tensor:
        padded[1:-1, 1:-1] = u
        torch.mul(centre, u, out=out)
        for (dy, dx), field in neighbours:
            out.addcmul_(field, padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w])
        return out

    return apply


def dense_inverse(stencil: Stencil) -> Tensor:
    """(S, n, n) inverses of the coarsest systems, n = h * w; rows and columns of empty cells are 0."""
    centre = stencil[(0, 0)]
    h, w, s = centre.shape
    index = torch.arange(h * w, device=centre.device).view(h, w)
    dense = centre.new_zeros(s, h * w, h * w)
    for (dy, dx), field in stencil.items():
        cells, neighbours = window(h, w, dy, dx), window(h, w, -dy, -dx)
        dense[:, index[cells].reshape(-1), index[neighbours].reshape(-1)] = field[cells].reshape(-1, s).T
    empty = (centre <= 0).reshape(-1, s).T.to(centre.dtype)
    dense += torch.diag_embed(empty)
    # pinv: a system with no kept pixel at all is singular (its right-hand side and solution are 0).
    return torch.linalg.pinv(dense, hermitian=True) * (1 - empty).unsqueeze(1) * (1 - empty).unsqueeze(2)


class Level:
    """One grid level: its operator, damped inverse diagonal, cells that are unknowns, and buffers."""

    def __init__(self, apply: Operator, diagonal: Tensor) -> None:
        self.apply = apply
        self.cells = (diagonal > 0).to(diagonal.dtype)
        self.smoother = self.cells * JACOBI_DAMPING / diagonal.clamp_min(torch.finfo(diagonal.dtype).tiny)
        h, w, s = diagonal.shape
        self.rhs = torch.empty_like(diagonal)  # written by the finer level's restriction
        self.correction = torch.empty_like(diagonal)
        self.work = torch.empty_like(diagonal)
        self.pairs = diagonal.new_empty(h // 2, w, s)


class Hierarchy:
    """The levels (fine first) and the coarsest grid's dense inverses; ``precondition(residual)`` is
    one V-cycle, returned in a buffer that the next call overwrites."""

    def __init__(self, fine_apply: Operator, fine_stencil: Stencil, depth: int) -> None:
        """fine_stencil: the fine operator's coefficients, ``{offset: (H, W, S)}`` with A[i, i + offset];
        H and W must be multiples of 2**depth."""
        stencil = fine_stencil
        self.levels = [Level(fine_apply, stencil[(0, 0)])]
        for _ in range(depth):
            stencil = galerkin(stencil)
            self.levels.append(Level(stencil_operator(stencil), stencil[(0, 0)]))
        self.coarsest_inverse = dense_inverse(stencil)

    def precondition(self, residual: Tensor) -> Tensor:
        return self._cycle(0, residual)

    def _cycle(self, depth: int, residual: Tensor) -> Tensor:
        level = self.levels[depth]
        if depth == len(self.levels) - 1:
            h, w, s = residual.shape
            solved = torch.bmm(self.coarsest_inverse, residual.reshape(h * w, s).T.unsqueeze(2))
            return level.correction.copy_(solved.squeeze(2).T.reshape(h, w, s))
        correction, work = level.correction, level.work
        torch.mul(level.smoother, residual, out=correction)  # one damped Jacobi sweep from zero
        torch.sub(residual, level.apply(correction, work), out=work)
        coarse = self._cycle(depth + 1, self._restrict(depth, work))
        h, w, s = correction.shape
        # Prolongation is masked to the level's cells: the operators assume zeros off them (the
        # Galerkin product is unchanged, as A has zero rows and columns there).
        correction.view(h // 2, 2, w // 2, 2, s).addcmul_(level.cells.view(h // 2, 2, w // 2, 2, s),
                                                          coarse[:, None, :, None], value=COARSE_SCALE)
        torch.sub(residual, level.apply(correction, work), out=work)
        return correction.addcmul_(level.smoother, work)

    def _restrict(self, depth: int, values: Tensor) -> Tensor:
        """R = P^T, the sum of every 2x2 block, into the next level's buffer. Pairwise adds of strided
        views: a reduction over the non-adjacent block axes is many times slower."""
        h, w, s = values.shape
        rows = values.view(h // 2, 2, w, s)
        pairs = torch.add(rows[:, 0], rows[:, 1], out=self.levels[depth].pairs).view(h // 2, w // 2, 2, s)
        return torch.add(pairs[:, :, 0], pairs[:, :, 1], out=self.levels[depth + 1].rhs)
