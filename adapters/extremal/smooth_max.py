"""The smooth maximum over candidate cells, in phase form, with a backward pass that recomputes.

For row r, phase p = (py, px) and cell i = (iy, ix) of the candidate grid, pixel (iy*s + py,
ix*s + px) of the padded mask is

    m[r, p, i] = sum_j V_j softmax_j(c V),   V_j = W[j, p] * U[r, j, i],   c = COLDNESS,

where U = unfold(params) holds the (2 radius + 1)^2 candidate parameters of each cell. Autograd
through these ops would keep V and the softmax for every candidate of every pixel (about 47 MB
per row at 224 x 224). :class:`SmoothMax` keeps the parameters and the mask instead (plus one
normaliser per pixel for the fused backend) and recomputes V in the backward pass, where

    dm/dV_j = s_j (1 + c (V_j - m)),   s = softmax(c V),   dL/dU_j = sum_p W[j, p] g_p s_j (1 + c (V_j - m)).

Two backends evaluate the same maths:

* ``eager``: plain PyTorch ops, one row at a time (optionally a block of phases at a time) to
  bound the temporaries. It evaluates the softmax with ``torch.softmax`` over the candidate
  dimension, with all phases of a row in one tensor, which makes float64 masks agree with
  TorchRay's bit for bit on the sizes we test (and so ties in the area sort break the same way).
* ``compiled``: ``torch.compile`` of the same formulas, fused into one pass over the candidates
  per pixel (no per-candidate tensor in memory at all), called one row at a time so that the
  generated code, and hence every row's result, does not depend on how many rows share a batch.
  It exponentiates ``c V - c`` instead of subtracting each pixel's maximum: V lies in [0, 1], so
  the exponent lies in [-c, 0] and nothing overflows.

``auto`` picks ``compiled`` for float32 and lower precisions when compilation works on this
machine (a C++ compiler on CPU, Triton on GPU) and ``eager`` otherwise; float64 is the
verification dtype and always runs eagerly.
"""
from __future__ import annotations

import threading
import warnings
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

#: Softmax temperature of the smooth maximum (TorchRay's fixed ``coldness``).
COLDNESS: float = 20.0

BACKENDS: tuple[str, ...] = ("auto", "compiled", "eager")


# --------------------------------------------------------------------------------------------
# Eager kernels (exact reference semantics)
# --------------------------------------------------------------------------------------------

def _eager_forward(u: Tensor, weights: Tensor, block: int | None) -> tuple[Tensor, None]:
    """u (R, J, M), weights (J, P, 1) -> m (R, P, M); no normaliser is kept (recomputed in backward)."""
    rows, _, cells = u.shape
    phases = weights.shape[1]
    block = block or phases
    m = u.new_empty(rows, phases, cells)
    for r in range(rows):
        ur = u[r].unsqueeze(1)  # (J, 1, M)
        for start in range(0, phases, block):
            v = weights[:, start:start + block] * ur  # (J, b, M)
            m[r, start:start + block] = (v * torch.softmax(COLDNESS * v, dim=0)).sum(dim=0)
    return m, None


def _eager_backward(u: Tensor, weights: Tensor, m: Tensor, _den: Tensor | None, grad: Tensor,
                    block: int | None) -> Tensor:
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
# Fused kernels (torch.compile)
# --------------------------------------------------------------------------------------------

def _fused_forward_row(u: Tensor, cold_weights: Tensor) -> tuple[Tensor, Tensor]:
    """u (J, 1, M), cold_weights = c W (J, P, 1) -> (m (P, M), normaliser (P, M))."""
    cv = cold_weights * u
    e = torch.exp(cv - COLDNESS)
    den = e.sum(dim=0)
    num = (cv * e).sum(dim=0)
    return num / (den * COLDNESS), den


def _fused_backward_row(u: Tensor, cold_weights: Tensor, weights: Tensor, m: Tensor, den: Tensor,
                        grad: Tensor) -> Tensor:
    """dL/du (J, M) for one row; m, den, grad are (P, M)."""
    cv = cold_weights * u
    e = torch.exp(cv - COLDNESS)
    t = e * (cv + (1 - COLDNESS * m)) * (grad / den)
    return (t * weights).sum(dim=1)


_COMPILED: dict[str, Callable[..., object]] = {}
_COMPILE_LOCK = threading.Lock()
_COMPILE_BROKEN: dict[tuple[str, torch.dtype], str] = {}


def _compiled(name: str) -> Callable[..., object]:
    with _COMPILE_LOCK:
        if name not in _COMPILED:
            fn = {"forward": _fused_forward_row, "backward": _fused_backward_row}[name]
            _COMPILED[name] = torch.compile(fn, dynamic=False, fullgraph=True)
        return _COMPILED[name]


def _compiled_forward(u: Tensor, weights: Tensor, cold_weights: Tensor) -> tuple[Tensor, Tensor]:
    fwd = _compiled("forward")
    outs = [fwd(u[r].unsqueeze(1), cold_weights) for r in range(u.shape[0])]
    return torch.stack([o[0] for o in outs]), torch.stack([o[1] for o in outs])  # type: ignore[index]


def _compiled_backward(u: Tensor, weights: Tensor, cold_weights: Tensor, m: Tensor, den: Tensor,
                       grad: Tensor) -> Tensor:
    bwd = _compiled("backward")
    return torch.stack([bwd(u[r].unsqueeze(1), cold_weights, weights, m[r], den[r], grad[r])  # type: ignore[misc]
                        for r in range(u.shape[0])])


# --------------------------------------------------------------------------------------------
# Backend choice
# --------------------------------------------------------------------------------------------

class SmoothMaxBackend:
    """Which kernels evaluate the smooth maximum: ``"auto"``, ``"compiled"`` or ``"eager"``.

    ``resolve`` turns ``auto`` into a concrete choice for a dtype and device, compiling (and
    running once) the fused kernels for the given shapes; a compilation failure makes ``auto``
    fall back to ``eager`` with a warning, and makes ``compiled`` raise.
    """

    def __init__(self, name: str = "auto", eager_block: int | None = None) -> None:
        if name not in BACKENDS:
            raise ValueError(f"unknown smooth-max backend {name!r}; choose one of {list(BACKENDS)}")
        self.name = name
        self.eager_block = eager_block
        self.resolved: str | None = None if name == "auto" else name
        self._checked: set[tuple[str, torch.dtype, int, int]] = set()

    def resolve(self, weights: Tensor, cells: int) -> str:
        """Settle ``auto`` for ``weights``' dtype and device; try the fused kernels on (1, J, cells) once."""
        if self.resolved is None:
            wants_fused = weights.dtype != torch.float64
            self.resolved = "compiled" if wants_fused and self._fused_works(weights, cells, strict=False) else "eager"
            if self.resolved == "compiled":
                self._checked.add((weights.device.type, weights.dtype, weights.shape[0], cells))
        elif self.resolved == "compiled":
            key = (weights.device.type, weights.dtype, weights.shape[0], cells)
            if key not in self._checked:
                self._fused_works(weights, cells, strict=True)
                self._checked.add(key)
        return self.resolved

    @staticmethod
    def _fused_works(weights: Tensor, cells: int, strict: bool) -> bool:
        key = (weights.device.type, weights.dtype)
        if key in _COMPILE_BROKEN and not strict:
            return False
        try:
            u = torch.rand(1, weights.shape[0], cells, dtype=weights.dtype, device=weights.device)
            m, den = _compiled_forward(u, weights, COLDNESS * weights)
            _compiled_backward(u, weights, COLDNESS * weights, m, den, torch.ones_like(m))
            return True
        except Exception as error:  # noqa: BLE001 - any compiler/toolchain failure means "use eager"
            if strict:
                raise RuntimeError(f"the compiled smooth-max backend failed on {key}: {error}") from error
            _COMPILE_BROKEN[key] = f"{type(error).__name__}: {error}"
            warnings.warn(f"torch.compile is unavailable for the extremal mask generator on {key} "
                          f"({type(error).__name__}); using the eager backend (slower, same results)",
                          RuntimeWarning, stacklevel=3)
            return False


class SmoothMax(torch.autograd.Function):
    """params (R, 1, h, w) -> phase-form smooth maximum (R, P, M), saving only params, m and normaliser.

    The result is not clamped here: :func:`smooth_max_mask` clamps it with ``torch.clamp``, whose
    gradient at exactly 0 or 1 is then whatever the installed PyTorch defines (it has changed
    between versions), as in the reference. The clamp saves the same tensor, so no extra memory.
    """

    @staticmethod
    def forward(ctx, params: Tensor, weights: Tensor, window: int, padding: int,  # type: ignore[override]
                backend: SmoothMaxBackend) -> Tensor:
        u = F.unfold(params, (window, window), padding=(padding, padding))
        kind = backend.resolve(weights, u.shape[-1])
        if kind == "compiled":
            m, den = _compiled_forward(u, weights, COLDNESS * weights)
        else:
            m, den = _eager_forward(u, weights, backend.eager_block)
        ctx.geometry = (window, padding, tuple(params.shape[-2:]), kind, backend.eager_block)
        ctx.save_for_backward(params, weights, m, den if den is not None else m.new_empty(0))
        return m

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        params, weights, m, den = ctx.saved_tensors
        window, padding, size, kind, block = ctx.geometry
        u = F.unfold(params, (window, window), padding=(padding, padding))
        if kind == "compiled":
            grad_u = _compiled_backward(u, weights, COLDNESS * weights, m, den, grad)
        else:
            grad_u = _eager_backward(u, weights, m, None, grad, block)
        grad_params = F.fold(grad_u, size, (window, window), padding=(padding, padding))
        return grad_params, None, None, None, None


def smooth_max_mask(params: Tensor, weights: Tensor, window: int, padding: int,
                    backend: SmoothMaxBackend) -> Tensor:
    """params (R, 1, h, w), weights (J, P, 1) -> phase-form mask in [0, 1] (R, P, Hm * Wm)."""
    return SmoothMax.apply(params, weights, window, padding, backend).clamp(0, 1)  # type: ignore[union-attr]
