"""Batched perturbations: forward passes over (image, step) pairs, chunked to a memory budget.

Every perturbation score evaluates the model on many perturbed copies of each image (one per step,
run or sample). Those copies are built on the model's device, in batches that span images *and*
steps, and never leave it until the per-row read-out (a few numbers per row) is stored. Chunking
changes only how many rows share a forward pass, never which rows are computed.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adapters.budget import DEFAULT_MEMORY_MB, rows_for_budget

from .validation import check_logits

BuildRows = Callable[[Tensor, Tensor], Tensor]
ReadRows = Callable[[Tensor, Tensor], Tensor]


def rows_per_chunk(model: nn.Module, x: Tensor, budget_bytes: int | None = None, *,
                   extra_bytes_per_row: int = 0) -> int:
    """How many perturbed rows shaped like one image of ``x`` (N, C, H, W) one forward pass may take
    within ``budget_bytes`` (default: the adapters' default budget), at least 1.

    A row costs the model's activations for one image (measured once per model by the adapters'
    probe), the perturbed input itself and ``extra_bytes_per_row`` (e.g. the imputation solver's
    buffers); the same rule sizes the methods' internal batches.
    """
    memory_mb = DEFAULT_MEMORY_MB if budget_bytes is None else max(int(budget_bytes), 1) / 2**20
    input_bytes = x[0].numel() * x.element_size()
    return rows_for_budget(model, x, memory_mb, backward=False, extra_bytes_per_row=input_bytes + extra_bytes_per_row)


@torch.no_grad()
def forward_chunked(model: nn.Module, x: Tensor, chunk_rows: int) -> Tensor:
    """Logits (N, K) of ``model`` on ``x`` (N, C, H, W), ``chunk_rows`` images per forward pass."""
    return torch.cat([model(x[i:i + chunk_rows]) for i in range(0, x.shape[0], chunk_rows)])


def clean_logits(model: nn.Module, x: Tensor, chunk_rows: int) -> Tensor:
    """Logits (N, K) on the clean images ``x``, checked finite (:func:`metrics.validation.check_logits`).

    Every score that reads the model calls this before its first perturbed pass; the exceptions are
    scores whose only other rows are one reference input per image (completeness' baseline, input
    invariance's shifted copy), which share the clean pass (:func:`clean_and_more_logits`). Perturbed
    inputs that make the model non-finite are left to each score (they are data about the perturbation)."""
    return check_logits(forward_chunked(model, x, chunk_rows))


def clean_and_more_logits(model: nn.Module, x: Tensor, more: Tensor, chunk_rows: int) -> tuple[Tensor, Tensor]:
    """Logits on the clean images ``x`` (N, C, H, W), checked as :func:`clean_logits`, and on ``more``
    (M, C, H, W), in the same chunks: a forward call of its own for a few rows per image costs, on a
    CPU at small batches, ~1.5x what sharing the call does (resnet18 at 32 px: 8 + 8 rows 50 ms,
    16 rows 34 ms). The clean check then comes after the extra rows, not before them."""
    logits = forward_chunked(model, torch.cat([x, more]), chunk_rows)
    return check_logits(logits[:x.shape[0]]), logits[x.shape[0]:]


@torch.no_grad()
def evaluate_pairs(model: nn.Module, n_images: int, n_steps: int, build: BuildRows, read: ReadRows,
                   chunk_rows: int, device: torch.device | str) -> Tensor:
    """Evaluate ``model`` on every (image, step) pair, many pairs per forward pass.

    build(images, steps) -> (M, C, H, W): the perturbed inputs of M pairs (index tensors (M,)).
    read(logits (M, K), images (M,)) -> (M,) or (M, F): what to keep of each row.
    Returns (N, S) or (N, S, F). Pairs are enumerated image-major, so a chunk holds whole runs of
    steps of consecutive images.
    """
    total = n_images * n_steps
    out: Tensor | None = None
    for start in range(0, total, chunk_rows):
        pairs = torch.arange(start, min(start + chunk_rows, total), device=device)
        images, steps = pairs // n_steps, pairs % n_steps
        values = read(model(build(images, steps)), images)
        if out is None:
            out = values.new_empty((total, *values.shape[1:]))
        out[start:start + pairs.numel()] = values
    assert out is not None
    return out.view(n_images, n_steps, *out.shape[1:])


def step_counts(n_positions: int, n_steps: int, device: torch.device | str = "cpu") -> Tensor:
    """Number of positions changed after each of ``n_steps`` equal steps: (n_steps + 1,), from 0 to
    ``n_positions`` inclusive (both endpoints of the curve)."""
    steps = torch.arange(n_steps + 1, dtype=torch.float64)
    return torch.floor(steps * n_positions / n_steps + 1e-9).to(device=device, dtype=torch.long)


def rise_blur_kernel(size: int = 11, sigma: float = 5.0) -> Tensor:
    """The blur kernel of the RISE evaluation code, (size, size), summing to 1.

    RISE builds it as ``scipy.ndimage.gaussian_filter`` of a centred delta: a Gaussian truncated at
    4 sigma and folded back into the window by half-sample reflection ('reflect' mode). It is
    separable, so the 1-D profile is built here and its outer product taken.
    """
    radius = int(4.0 * sigma + 0.5)
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * (taps / sigma) ** 2)
    weights /= weights.sum()
    centre = size // 2
    profile = torch.zeros(size, dtype=torch.float64)
    for i in range(size):
        # Output i reads the delta at i + t after reflecting i + t into [0, size).
        positions = torch.arange(-radius, radius + 1) + i
        period = 2 * size
        positions = positions % period
        positions = torch.where(positions >= size, period - 1 - positions, positions)
        profile[i] = weights[positions == centre].sum()
    return torch.outer(profile, profile).to(torch.float32)


def rise_blur(x: Tensor, size: int = 11, sigma: float = 5.0) -> Tensor:
    """Blur every channel of ``x`` (N, C, H, W) with :func:`rise_blur_kernel`, zero padding (as RISE)."""
    channels = x.shape[1]
    kernel = rise_blur_kernel(size, sigma).to(device=x.device, dtype=x.dtype)
    kernel = kernel.expand(channels, 1, size, size)
    return F.conv2d(x, kernel, padding=size // 2, groups=channels)


def trapezoid_auc(curves: Tensor, curve_x: Tensor) -> Tensor:
    """Area under each curve (N, S) over ``curve_x`` (S,) spanning [0, 1]: a normalised AUC that does
    not grow with the number of steps."""
    return torch.trapezoid(curves, curve_x.to(curves.dtype), dim=1)
