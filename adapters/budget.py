"""Internal batch sizes from a memory budget: the one place that turns megabytes into rows.

A "row" is one input image (or one perturbed / noisy / interpolated copy of it) in a model pass.
Its cost is estimated from the probe: the outputs of every leaf module for one image, which is what
autograd keeps for the backward pass; gradients of the same size exist transiently during the
backward, hence the factor 2. Forward-only passes free activations as they go, so the same sum is a
safe upper bound for them.
"""
from __future__ import annotations

from torch import Tensor, nn

from .checks import check_float, check_int
from .errors import AttributionError
from .probe import probe

DEFAULT_MEMORY_MB: float = 1024.0
# Beyond these, larger batches stop paying: a GPU is saturated long before 1024 rows, and on a CPU
# batches past a few dozen rows only spill the caches (measured: 1000 forwards of a small CNN at
# 64x64 run ~1.7x faster in batches of 64 than in one batch of 1000).
MAX_ROWS: dict[str, int] = {"cuda": 1024, "cpu": 64}
#: Upper bound of an explicit internal batch size: 64 times the budget's own GPU cap; a pass of
#: more rows than that does not fit any device for image inputs (65536 rows of 3x224x224 float32
#: inputs alone are 37 GiB), so a larger value is a typo, not a setting.
MAX_BATCH: int = 65536


def rows_for_budget(model: nn.Module, x: Tensor, memory_mb: float, *, backward: bool,
                    extra_bytes_per_row: int = 0) -> int:
    """How many rows of ``x``'s shape (N, C, H, W) fit one model pass in ``memory_mb``; at least 1."""
    check_memory_mb(memory_mb)
    per_row = probe(model, x).activation_bytes * (2 if backward else 1) + extra_bytes_per_row
    cap = MAX_ROWS.get(x.device.type, MAX_ROWS["cuda"])
    return int(max(1, min(cap, memory_mb * 2**20 // max(per_row, 1))))


def check_memory_mb(memory_mb: float) -> float:
    # Finite: an infinite budget would turn into an infinite number of rows.
    return check_float("memory_mb", memory_mb, low=0, low_open=True)


def check_batch(name: str, value: int | None, minimum: int = 1) -> int | None:
    """Validate an internal batch size parameter (``None`` = derive from the budget)."""
    return check_int(name, value, minimum, MAX_BATCH, optional=True,
                     why="more rows than any device holds in one pass")


def check_fits(what: str, n_bytes: int, memory_mb: float, advice: str) -> None:
    """Refuse, before allocating, a tensor of ``n_bytes`` that alone exceeds the method's budget."""
    if n_bytes > memory_mb * 2**20:
        raise AttributionError(f"{what} needs {n_bytes / 2**20:,.0f} MiB, over memory_mb={memory_mb:g}; {advice}")


def spans(n: int, size: int) -> list[slice]:
    """Consecutive slices of at most ``size`` covering ``range(n)``."""
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]
