"""Every knob of the extremal-perturbation optimiser, validated, with TorchRay's defaults.

TorchRay's mask geometry (parameter step 7 px, smooth-max sigma 21 px) and its strongest blur
(20 px) are pixel sizes chosen for images whose shorter side is 224 px. On a 64-px image the same
pixels make the smallest reachable mask a blob a third of the image wide, so a 6x6 region can never
be singled out. ``geometry="scaled"`` (the default) reads ``step``, ``sigma`` and ``max_blur`` as
sizes at a 224-px shorter side and scales them with min(H, W) / 224 (equal to TorchRay at 224 px);
``geometry="torchray"`` uses them as pixels at every size, exactly as TorchRay does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from numbers import Real
from typing import Any

from ..checks import check_bool, check_choice, check_float, check_int
from ..errors import AttributionError
from .pyramid import PERTURBATIONS
from .rewards import REWARDS, VARIANTS
from .backend import BACKENDS

#: Iterations of the fast mode (a quarter of the reference 800), with the penalty schedule compressed.
FAST_ITERATIONS: int = 200
#: Upper bounds, generous against TorchRay's defaults (800 iterations, step 7, sigma 21, 8 levels,
#: max_blur 20): past them a run takes hours per image, the blur and smooth-max kernels and the
#: padded mask (image + 2 sigma per side) grow past the image, or the pyramid (one copy of every
#: image per level) fills the device.
MAX_ITERATIONS: int = 10_000
MAX_STEP: int = 64
MAX_LEVELS: int = 64
MAX_PIXELS_SIGMA: float = 256.0
#: The area penalty penalty * penalty_growth ** t must stay far from float32's 3.4e38.
MAX_PENALTY: float = 1e30
#: How ``step``, ``sigma`` and ``max_blur`` are read: scaled from a 224-px shorter side, or as
#: TorchRay's pixels at any size.
GEOMETRIES: tuple[str, ...] = ("scaled", "torchray")
#: The shorter image side that TorchRay's pixel sizes are meant for (its benchmark resizes to it).
REFERENCE_SIZE: int = 224


@dataclass(frozen=True)
class ExtremalSettings:
    """Optimiser settings; the defaults are TorchRay's (and the paper's), with the mask geometry
    scaled to the input size (``geometry``).

    ``step`` (pixels between mask parameters), ``sigma`` (smooth-max kernel, pixels) and
    ``max_blur`` (sigma of the strongest pyramid level, pixels): with ``geometry="scaled"`` these
    are sizes at a 224-px shorter side, and a run on an H x W input uses step
    max(1, round(step * s)), sigma * s and max_blur * s with s = min(H, W) / 224 (at 224 px:
    TorchRay's 7, 21, 20 exactly). With ``geometry="torchray"`` they are pixels whatever the size.
    :meth:`for_size` gives the pixel values a run uses.

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
    geometry: str = "scaled"

    def __post_init__(self) -> None:
        check_choice("geometry", self.geometry, GEOMETRIES, what="mask geometry")
        check_choice("variant", self.variant, VARIANTS)
        check_choice("reward", self.reward, REWARDS)
        check_choice("perturbation", self.perturbation, PERTURBATIONS)
        check_choice("backend", self.backend, BACKENDS)
        check_int("iterations", self.iterations, 1, MAX_ITERATIONS, why="TorchRay uses 800")
        check_int("step", self.step, 1, MAX_STEP, why="pixels between mask parameters; TorchRay uses 7")
        check_int("levels", self.levels, 2, MAX_LEVELS, why="the pyramid holds every level of every image")
        check_int("history_every", self.history_every, 1, MAX_ITERATIONS)
        check_int("schedule_iterations", self.schedule_iterations, 1, MAX_ITERATIONS, optional=True)
        check_float("sigma", self.sigma, 0, MAX_PIXELS_SIGMA, low_open=True)
        check_float("max_blur", self.max_blur, 0, MAX_PIXELS_SIGMA, low_open=True)
        check_float("lr", self.lr, low=0, low_open=True)
        check_float("momentum", self.momentum, 0, 1, high_open=True)
        check_float("dampening", self.dampening, 0, 1)
        check_float("penalty", self.penalty, low=0)
        check_float("penalty_growth", self.penalty_growth, low=0, low_open=True)
        check_bool("flip", self.flip)
        self._check_penalty_schedule()

    def _check_penalty_schedule(self) -> None:
        # The weight grows to penalty * penalty_growth ** (last exponent); in log space, because a
        # Python float power overflows with an exception rather than to inf.
        exponent = (self.schedule_iterations or self.iterations) - 1
        if self.penalty > 0 and math.log(self.penalty) + exponent * math.log(self.penalty_growth) > math.log(MAX_PENALTY):
            raise AttributionError(f"penalty_growth={self.penalty_growth!r} overflows the area penalty: penalty * "
                                   f"penalty_growth ** {exponent} is past {MAX_PENALTY:g} (float32 ends at 3.4e38); "
                                   "use a growth closer to 1 or fewer iterations")

    def for_size(self, height: int, width: int) -> "ExtremalSettings":
        """These settings with ``step``, ``sigma`` and ``max_blur`` in pixels of an ``height`` x
        ``width`` input (``geometry="torchray"``): scaled by min(H, W) / 224 for the scaled geometry,
        unchanged for TorchRay's. Idempotent."""
        if self.geometry == "torchray":
            return self
        scale = min(height, width) / REFERENCE_SIZE
        # Half-up rounding (not Python's half-to-even): a 112-px image gets step 4 from 3.5.
        step = max(1, math.floor(self.step * scale + 0.5))
        return replace(self, step=step, sigma=self.sigma * scale, max_blur=self.max_blur * scale, geometry="torchray")

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
