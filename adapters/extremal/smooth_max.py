"""The smooth maximum over candidate cells, in phase form, with a backward pass that recomputes.

For row r, phase p = (py, px) and cell i = (iy, ix) of the candidate grid, pixel (iy*s + py,
ix*s + px) of the padded mask is

    m[r, p, i] = sum_j V_j softmax_j(c V),   V_j = W[j, p] * U[r, j, i],   c = COLDNESS,

where U = unfold(params) holds the (2 radius + 1)^2 candidate parameters of each cell. Autograd
through these ops would keep V and the softmax for every candidate of every pixel (about 47 MB
per row at 224 x 224). :class:`SmoothMax` keeps the parameters and the mask instead (plus one
normaliser per pixel for the fused kernels) and recomputes V in the backward pass, where

    dm/dV_j = s_j (1 + c (V_j - m)),   s = softmax(c V),   dL/dU_j = sum_p W[j, p] g_p s_j (1 + c (V_j - m)).

Kernels (:mod:`.backend`):

* eager: plain PyTorch ops, one row at a time (optionally a block of phases at a time) to bound
  the temporaries. The softmax is ``torch.softmax`` over the candidate dimension with all phases
  of a row in one tensor, which makes float64 masks agree with TorchRay's bit for bit on the sizes
  we test (so that ties in the area sort break the same way).
* compiled: the same formulas fused by ``torch.compile`` into one pass over the candidates of
  every pixel of every row (nothing per candidate is stored; U itself is J x M per row). It
  exponentiates ``c V - c`` instead of subtracting each pixel's maximum: V lies in [0, 1], so the
  exponent lies in [-c, 0] and nothing overflows.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .backend import Backend, call_rows, compiled

#: Softmax temperature of the smooth maximum (TorchRay's fixed ``coldness``).
COLDNESS: float = 20.0


# --------------------------------------------------------------------------------------------
# Eager kernels (exact reference semantics)
# --------------------------------------------------------------------------------------------

def _eager_forward(u: Tensor, weights: Tensor, block: int | None) -> Tensor:
    """u (R, J, M), weights (J, P, 1) -> m (R, P, M)."""
    rows, _, cells = u.shape
    phases = weights.shape[1]
    block = block or phases
    m = u.new_empty(rows, phases, cells)
    for r in range(rows):
        ur = u[r].unsqueeze(1)  # (J, 1, M)
        for start in range(0, phases, block):
            v = weights[:, start:start + block] * ur  # (J, b, M)
            m[r, start:start + block] = (v * torch.softmax(COLDNESS * v, dim=0)).sum(dim=0)
    return m


def _eager_backward(u: Tensor, weights: Tensor, m: Tensor, grad: Tensor, block: int | None) -> Tensor:
    """dL/du (R, J, M) from dL/dm (R, P, M)."""
    grad_u = torch.zeros_like(u)
    phases = weights.shape[1]
    block = block or phases
    for r in range(u.shape[0]):
        ur = u[r].unsqueeze(1)
        for start in range(0, phases, block):
            w = weights[:, start:start + block]  # (J, b, 1)
            v = w * ur
            s = torch.softmax(COLDNESS * v, dim=0)
            # s (1 + c (v - m)) g, in place to keep to one temporary of the candidate tensor's size.
            t = v.sub_(m[r, start:start + block]).mul_(COLDNESS).add_(1).mul_(s).mul_(grad[r, start:start + block])
            # sum over the phases of W[j, p] t[j, p, i]: a batched (1 x b) @ (b x M) product per candidate.
            grad_u[r] += torch.bmm(w.transpose(1, 2), t).squeeze(1)
    return grad_u


# --------------------------------------------------------------------------------------------
# Fused kernels (torch.compile), all rows at once
# --------------------------------------------------------------------------------------------

def _fused_forward(u: Tensor, cold_weights: Tensor) -> tuple[Tensor, Tensor]:
    """u (R, J, 1, M) candidates, cold_weights = c W (J, P) -> (m (R, P, M), normaliser (R, P, M))."""
    cv = cold_weights[None, :, :, None] * u  # (R, J, P, M), never stored
    # Two independent reductions, each with its own exp: sharing one exp tensor between them makes
    # inductor store it (R x J x P x M), which costs far more than computing the exp twice.
    den = torch.exp(cold_weights[None, :, :, None] * u - COLDNESS).sum(dim=1)
    num = (cv * torch.exp(cv - COLDNESS)).sum(dim=1)
    return num / (den * COLDNESS), den


def _fused_backward(u: Tensor, m: Tensor, den: Tensor, grad: Tensor, cold_weights: Tensor,
                    weights: Tensor) -> Tensor:
    """dL/dU (R, J, M) for dL/dm ``grad`` (R, P, M); u (R, J, 1, M)."""
    cv = cold_weights[None, :, :, None] * u
    t = torch.exp(cv - COLDNESS) * (cv + (1 - COLDNESS * m)[:, None]) * (grad / den)[:, None]
    return (t * weights[None, :, :, None]).sum(dim=2)


def fused_forward(u: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Compiled :func:`_fused_forward`: u (R, J, M) from :func:`unfold_candidates`, weights (J, P, 1)."""
    fn = compiled("smooth_max_forward", _fused_forward)
    # U is computed eagerly (it is small) and passed in: inside the graph, the window indexing
    # would stop the candidate loop from vectorising.
    return call_rows(fn, [u.unsqueeze(2)], COLDNESS * weights[:, :, 0])  # type: ignore[no-any-return]


def fused_backward(u: Tensor, m: Tensor, den: Tensor, grad: Tensor, weights: Tensor) -> Tensor:
    """Compiled :func:`_fused_backward`: dL/du (R, J, M)."""
    fn = compiled("smooth_max_backward", _fused_backward)
    w = weights[:, :, 0]
    return call_rows(fn, [u.unsqueeze(2), m, den, grad], COLDNESS * w, w)  # type: ignore[no-any-return]


class SmoothMax(torch.autograd.Function):
    """params (R, 1, h, w) -> phase-form smooth maximum (R, P, M), saving only params, m and normaliser.

    The result is not clamped here: :func:`smooth_max_mask` clamps it with ``torch.clamp``, whose
    gradient at exactly 0 or 1 is then whatever the installed PyTorch defines (it has changed
    between versions), as in the reference. The clamp saves the same tensor, so no extra memory.
    """

    @staticmethod
    def forward(ctx, params: Tensor, weights: Tensor, window: int, padding: int,  # type: ignore[override]
                cells: tuple[int, int], backend: Backend) -> Tensor:
        u = unfold_candidates(params, window, padding, cells)
        kind = backend.resolve(params.dtype, params.device, lambda: _probe_fused(u[:1], weights))
        if kind == "compiled":
            m, den = fused_forward(u, weights)
        else:
            m, den = _eager_forward(u, weights, backend.eager_block), params.new_empty(0)
        ctx.setup = (window, padding, cells, kind, backend.eager_block)
        ctx.save_for_backward(params, weights, m, den)
        return m

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        params, weights, m, den = ctx.saved_tensors
        window, padding, cells, kind, block = ctx.setup
        u = unfold_candidates(params, window, padding, cells)
        if kind == "compiled":
            grad_u = fused_backward(u, m, den, grad.contiguous(), weights)
        else:
            grad_u = _eager_backward(u, weights, m, grad, block)
        grad_params = F.fold(grad_u, tuple(params.shape[-2:]), (window, window), padding=(padding, padding))
        return grad_params, None, None, None, None, None


def unfold_candidates(params: Tensor, window: int, padding: int, cells: tuple[int, int]) -> Tensor:
    """U (R, J, M) = ``F.unfold(params, window, padding=padding)``, as a strided view of the padded
    parameters and one copy (im2col's per-element loop is several times slower for one channel)."""
    padded = F.pad(params[:, 0], (padding, padding, padding, padding))
    windows = padded.unfold(1, cells[0], 1).unfold(2, cells[1], 1)  # (R, window, window, Hm, Wm)
    return windows.reshape(params.shape[0], window * window, cells[0] * cells[1])


def _probe_fused(u: Tensor, weights: Tensor) -> None:
    """Compile and run the fused kernels once (raises if this machine cannot compile them)."""
    with torch.no_grad():
        m, den = fused_forward(u, weights)
        fused_backward(u, m, den, torch.ones_like(m), weights)


def smooth_max_mask(params: Tensor, weights: Tensor, window: int, padding: int, cells: tuple[int, int],
                    backend: Backend) -> Tensor:
    """params (R, 1, h, w), weights (J, P, 1) -> phase-form mask in [0, 1] (R, P, Hm * Wm)."""
    return SmoothMax.apply(params, weights, window, padding, cells, backend).clamp(0, 1)  # type: ignore[union-attr]
