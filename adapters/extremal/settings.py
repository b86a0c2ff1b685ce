"""Every knob of the extremal-perturbation optimiser, validated, with TorchRay's defaults."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from numbers import Real
from typing import Any, Sequence

from ..base import AttributionError
from .pyramid import PERTURBATIONS
from .rewards import REWARDS, VARIANTS
from .backend import BACKENDS

#: Iterations of the fast mode (a quarter of the reference 800), with the penalty schedule compressed.
FAST_ITERATIONS: int = 200


@dataclass(frozen=True)
class ExtremalSettings:
    """Optimiser settings; the defaults are TorchRay's (and the paper's).

    ``penalty`` and ``penalty_growth``: the area residual is weighted by
    lambda_t = penalty * penalty_growth ** (t * schedule_iterations / iterations), t = 0 ..
    iterations - 1. With ``schedule_iterations=None`` (the reference) the weight simply grows by
    ``penalty_growth`` every iteration. A shorter run with ``schedule_iterations=800`` (the fast
    mode) compresses the 800-iteration schedule into its iterations, so it ends as tight on area.

    ``flip``: the perturbed inputs are mirrored horizontally on even iterations (TorchRay's
    deterministic "jitter"). ``history_every``: reward and area residual are recorded on the device
    every k iterations and at the last one.
    """

    variant: str = "preserve"
    reward: str = "logit"
    iterations: int = 800
    step: int = 7
    sigma: float = 21.0
    levels: int = 8
    max_blur: float = 20.0
    perturbation: str = "blur"
    lr: float = 0.01
    momentum: float = 0.9
    dampening: float = 0.9
    penalty: float = 300.0
    penalty_growth: float = 1.0035
    schedule_iterations: int | None = None
    flip: bool = True
    history_every: int = 10
    backend: str = "auto"

    def __post_init__(self) -> None:
        _choice("variant", self.variant, VARIANTS)
        _choice("reward", self.reward, REWARDS)
        _choice("perturbation", self.perturbation, PERTURBATIONS)
        _choice("backend", self.backend, BACKENDS)
        _integer("iterations", self.iterations, 1)
        _integer("step", self.step, 1)
        _integer("levels", self.levels, 2)
        _integer("history_every", self.history_every, 1)
        if self.schedule_iterations is not None:
            _integer("schedule_iterations", self.schedule_iterations, 1)
        _number("sigma", self.sigma, low=0, low_open=True)
        _number("max_blur", self.max_blur, low=0, low_open=True)
        _number("lr", self.lr, low=0, low_open=True)
        _number("momentum", self.momentum, low=0, high=1, high_open=True)
        _number("dampening", self.dampening, low=0, high=1)
        _number("penalty", self.penalty, low=0)
        _number("penalty_growth", self.penalty_growth, low=0, low_open=True)
        if not isinstance(self.flip, bool):
            raise AttributionError(f"flip must be True or False, got {self.flip!r}")

    def fast(self, iterations: int = FAST_ITERATIONS) -> "ExtremalSettings":
        """The same problem in fewer iterations, following this run's penalty schedule compressed."""
        return replace(self, iterations=iterations, schedule_iterations=self.schedule_iterations or self.iterations)

    def penalty_weights(self) -> list[float]:
        """lambda_t for t = 0 .. iterations - 1, as host floats (they enter the graph as constants)."""
        if self.schedule_iterations is None or self.schedule_iterations == self.iterations:
            # Grown by repeated multiplication, like the reference's running weight.
            weights, weight = [], float(self.penalty)
            for _ in range(self.iterations):
                weights.append(weight)
                weight *= self.penalty_growth
            return weights
        scale = self.schedule_iterations / self.iterations
        return [self.penalty * self.penalty_growth ** (t * scale) for t in range(self.iterations)]

    def sampled_iterations(self) -> list[int]:
        """Iterations whose reward and residual the history keeps: every k-th and the last."""
        steps = list(range(0, self.iterations, self.history_every))
        if steps[-1] != self.iterations - 1:
            steps.append(self.iterations - 1)
        return steps


def check_areas(areas: Any) -> tuple[float, ...]:
    """Areas as a non-empty tuple of floats strictly inside (0, 1)."""
    if isinstance(areas, Real) and not isinstance(areas, bool):
        areas = (areas,)
    if isinstance(areas, (str, bytes)):
        raise AttributionError(f"areas must be a number or a sequence of numbers in (0, 1), got the string {areas!r}")
    try:
        values = tuple(areas)
    except TypeError:
        raise AttributionError(f"areas must be a number or a sequence of numbers in (0, 1), got {areas!r}") from None
    if not values:
        raise AttributionError("areas is empty: give at least one target area in (0, 1), e.g. [0.05, 0.1]")
    for a in values:
        if isinstance(a, bool) or not isinstance(a, Real) or not math.isfinite(float(a)) or not 0 < float(a) < 1:
            raise AttributionError(f"every area must be a number strictly between 0 and 1, got {a!r} in {list(values)}")
    return tuple(float(a) for a in values)


def _choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise AttributionError(f"unknown {name} {value!r}; choose one of {list(choices)}")


def _integer(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise AttributionError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _number(name: str, value: Any, low: float | None = None, high: float | None = None,
            low_open: bool = False, high_open: bool = False) -> None:
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(float(value))
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        if low is not None and high is not None:
            interval = f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        else:
            interval = f"{'>' if low_open else '>='} {low}"
        raise AttributionError(f"{name} must be a finite number {interval}, got {value!r}")
