"""Timing helpers: a synchronising timer for pytest-benchmark, and the roofline of a method.

The roofline of a method is the model passes it cannot avoid (``Method.cost``), run as plain
batched passes of the same model on the same images: ``backward`` input-gradient passes and
``forward - backward`` forward-only passes per image, in chunks sized by the same memory budget
the adapters use. Efficiency = roofline time / method time (1.0 = no overhead).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from adapters import Cost
from adapters.budget import DEFAULT_MEMORY_MB, rows_for_budget

from .device import Device, resolve_device

_active = resolve_device("cpu")


def set_active_device(device: Device) -> None:
    """The device whose queue :func:`device_timer` waits for."""
    global _active
    _active = device


def device_timer() -> float:
    """pytest-benchmark timer (``--benchmark-timer=bench.timing.device_timer``): synchronise, then read the clock."""
    return _active.time()


def roofline(model: nn.Module, x: Tensor, target: Tensor, cost: Cost, memory_mb: float = DEFAULT_MEMORY_MB) -> Callable[[], None]:
    """A callable that runs the plain passes ``cost`` names for the batch ``x`` (N,C,H,W)."""
    n = len(x)
    backward_rows, forward_rows = n * cost.backward, n * max(cost.forward - cost.backward, 0)
    chunk = max(1, rows_for_budget(model, x, memory_mb, backward=cost.backward > 0))
    # Pre-built inputs: the roofline should time the model, not tensor copies.
    pool = x.repeat((chunk + n - 1) // n, 1, 1, 1)[:chunk].detach()
    pool_target = target.repeat((chunk + n - 1) // n)[:chunk]
    params = [p for p in model.parameters()]

    def passes() -> None:
        saved = [p.requires_grad for p in params]
        for p in params:  # input gradients only, as the methods compute
            p.requires_grad_(False)
        try:
            remaining = backward_rows
            while remaining > 0:
                rows = min(chunk, remaining)
                inputs = pool[:rows].clone().requires_grad_(True)
                logits = model(inputs)
                torch.autograd.grad(logits.gather(1, pool_target[:rows, None]).sum(), inputs)
                remaining -= rows
            remaining = forward_rows
            with torch.no_grad():
                while remaining > 0:
                    rows = min(chunk, remaining)
                    model(pool[:rows])
                    remaining -= rows
        finally:
            for p, flag in zip(params, saved):
                p.requires_grad_(flag)

    return passes
