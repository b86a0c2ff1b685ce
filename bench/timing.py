"""Timing helpers: a synchronising timer for pytest-benchmark, the roofline of a method, and
adaptive rounds that measure until the spread is small enough to trust.

The roofline of a method is the model passes it cannot avoid (``Method.cost``), run as plain
batched passes of the same model on the same images: ``backward`` input-gradient passes and
``forward - backward`` forward-only passes per image, in chunks sized by the same memory budget
the adapters use. Efficiency = roofline time / method time (1.0 = no overhead).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor, nn

from adapters import Cost
from adapters.budget import DEFAULT_MEMORY_MB, rows_for_budget
from adapters.token_gradients import forward_with_embedding_leaf

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
    pool = x.repeat((chunk + n - 1) // n, *([1] * (x.dim() - 1)))[:chunk].detach()  # images or token ids
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
                if pool.is_floating_point():
                    inputs = pool[:rows].clone().requires_grad_(True)
                    logits = model(inputs)
                else:  # token ids: the gradient methods differentiate at the embedding layer's output
                    logits, inputs = forward_with_embedding_leaf(model, pool[:rows])
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


#: Fewer rounds than this give no usable quartiles: a cell is never called settled on less.
MIN_SETTLE_ROUNDS = 4


def iqr(times: list[float]) -> float:
    """Interquartile range (statistics.quantiles' default method, as pytest-benchmark's)."""
    if len(times) < 2:
        return float("nan")
    quartiles = statistics.quantiles(times, n=4)
    return quartiles[2] - quartiles[0]


def iqr_fraction(times: list[float]) -> float:
    """IQR / median: the spread the report judges a timing by; NaN when it cannot be estimated."""
    if len(times) < 2:
        return float("nan")
    median = statistics.median(times)
    return iqr(times) / median if median > 0 else float("nan")


@dataclass(frozen=True)
class RoundPolicy:
    """When to stop timing a cell: at least ``min_rounds`` (and :data:`MIN_SETTLE_ROUNDS`) rounds;
    settled once the IQR of every series is at most ``target_iqr`` of its median; never more than
    ``max_rounds`` rounds nor more rounds once ``max_seconds`` have been spent on the cell."""

    min_rounds: int = 5
    max_rounds: int = 30
    target_iqr: float = 0.1
    max_seconds: float = 60.0

    @classmethod
    def from_config(cls, timing) -> RoundPolicy:
        """From a run configuration's ``[timing]`` section (``bench.config.TimingConfig``)."""
        return cls(timing.rounds, max(timing.max_rounds, timing.rounds), timing.target_iqr, timing.max_seconds)

    def settled(self, *series: list[float]) -> bool:
        """Every non-empty series has enough rounds and a small enough spread."""
        return all(len(s) >= max(self.min_rounds, MIN_SETTLE_ROUNDS) and iqr_fraction(s) <= self.target_iqr
                   for s in series if s)

    def more(self, rounds: int, spent_s: float, *series: list[float]) -> bool:
        """Whether to time another round after ``rounds`` rounds and ``spent_s`` seconds."""
        if rounds < self.min_rounds:
            return True
        return rounds < self.max_rounds and spent_s < self.max_seconds and not self.settled(*series)


@dataclass
class Rounds:
    """The interleaved rounds of one cell: method and roofline time per round (seconds)."""

    method: list[float] = field(default_factory=list)
    roofline: list[float] = field(default_factory=list)

    def summary(self, policy: RoundPolicy) -> dict:
        """What ``extra_info`` records: rounds, medians, IQRs and their fractions, and ``noisy``
        (the policy's limit was reached before the spread settled)."""
        return {"rounds": len(self.method), "method_rounds_s": list(self.method),
                "roofline_rounds_s": list(self.roofline),
                "method_median_s": statistics.median(self.method) if self.method else float("nan"),
                "method_iqr_s": iqr(self.method), "method_iqr_fraction": iqr_fraction(self.method),
                "roofline_iqr_fraction": iqr_fraction(self.roofline), "target_iqr": policy.target_iqr,
                "noisy": not policy.settled(self.method, self.roofline)}


def extend_rounds(rounds: Rounds, time_method: Callable[[], float], time_roofline: Callable[[], float] | None,
                  policy: RoundPolicy, spent_s: float, clock: Callable[[], float]) -> list[float]:
    """Add interleaved (method, roofline) rounds to ``rounds`` until ``policy`` says stop; returns the
    method times added. Interleaving means a load spike on a shared machine hits both series, so
    their ratio (the efficiency) stays honest even when the absolute numbers move."""
    added = []
    start = clock() - spent_s
    while policy.more(len(rounds.method), clock() - start, rounds.method, rounds.roofline):
        if time_roofline is not None:
            rounds.roofline.append(time_roofline())
        seconds = time_method()
        rounds.method.append(seconds)
        added.append(seconds)
    return added
