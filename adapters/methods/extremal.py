"""Extremal perturbations (Fong, Patrick and Vedaldi, ICCV 2019) with our own batched optimiser.

TorchRay is the reference (and the test oracle); this adapter does not depend on it.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..base import Cost, Method
from ..budget import DEFAULT_MEMORY_MB, check_batch, check_memory_mb
from ..checks import check_bool, check_float, check_int
from ..extremal.explain import DEFAULT_AREAS, ExtremalMasks, extremal_masks, stack_images
from ..extremal.optimiser import StepCallback
from ..extremal.rewards import model_rows
from ..extremal.settings import FAST_ITERATIONS, MAX_ITERATIONS, ExtremalSettings, check_areas
from ..registry import register


@register("extremal")
class ExtremalMethod(Method):
    """Extremal perturbation masks, summed over areas as in TorchRay's benchmark.

    One row per (image, area) is optimised in a single batch (chunked to ``memory_mb`` or to
    ``chunk_rows`` rows): 800 iterations of projected momentum SGD on a 7-pixel-step parameter grid,
    smooth-max masks with sigma 21, an 8-level blur pyramid (strongest blur 20), area penalty
    300 * 1.0035^t on the padded mask, inputs mirrored on even iterations (TorchRay's defaults).

    ``geometry``: ``"scaled"`` (default) reads ``step``, ``sigma`` and ``max_blur`` as sizes at a
    224-px shorter side and scales them with min(H, W) / 224 (step rounded, at least 1): at 224 px
    this is TorchRay exactly, at the zoo's 64 px step 2, sigma 6, max blur 5.7, so a small region
    (a 6x6 watermark) can be kept alone. ``"torchray"`` uses them as pixels at every size, as
    TorchRay does (on 64 px its smallest mask is a blob a third of the image wide). The pixel values
    used are in ``diagnostics["settings"]``. ``attribute`` returns the
    sum of the A area masks, blurred with sigma = ``smoothing`` * min(H, W) (0.09 in the benchmark;
    0 for none): values in [0, A]. :meth:`explain` returns the per-area masks and the history.

    ``variant``: ``preserve`` (keep the target's score with the mask's area visible), ``delete``
    (destroy it by perturbing the mask's area) or ``dual``. ``reward``: ``logit`` or ``contrastive``
    (target logit minus the largest other). ``fast``: run ``fast_iterations`` (200) iterations with
    the penalty schedule of ``iterations`` compressed into them; quicker, slightly worse optima,
    never the default. ``backend``: how the mask generator runs (``auto``: fused by
    ``torch.compile`` in float32 when it works here, eager otherwise; results agree to rounding).
    ``flip``: TorchRay's jitter, which assumes a mirror-invariant model; switch it off for models
    trained without mirror augmentation whose evidence is not symmetric (on the shortcut zoo model
    the class is the watermark's corner, and with the flip on the masks find nothing at either
    geometry).

    Cost per image: iterations x areas forward and input-gradient backward passes (twice for dual).
    """

    memory_knobs = ("chunk_rows",)

    def __init__(self, areas: float | Sequence[float] = DEFAULT_AREAS, variant: str = "preserve",
                 reward: str = "logit", iterations: int = 800, step: int = 7, sigma: float = 21.0,
                 levels: int = 8, max_blur: float = 20.0, perturbation: str = "blur", lr: float = 0.01,
                 momentum: float = 0.9, dampening: float = 0.9, penalty: float = 300.0,
                 penalty_growth: float = 1.0035, flip: bool = True, smoothing: float = 0.09,
                 fast: bool = False, fast_iterations: int = FAST_ITERATIONS, history_every: int = 10,
                 backend: str = "auto", geometry: str = "scaled", chunk_rows: int | None = None,
                 memory_mb: float = DEFAULT_MEMORY_MB) -> None:
        settings = ExtremalSettings(
            variant=variant, reward=reward, iterations=iterations, step=step, sigma=sigma, levels=levels,
            max_blur=max_blur, perturbation=perturbation, lr=lr, momentum=momentum, dampening=dampening,
            penalty=penalty, penalty_growth=penalty_growth, flip=flip, history_every=history_every, backend=backend,
            geometry=geometry)
        # Checked even when fast is off: a bad value must not wait until someone switches it on.
        check_int("fast_iterations", fast_iterations, 1, MAX_ITERATIONS)
        if check_bool("fast", fast):
            settings = settings.fast(fast_iterations)
        # A fraction of min(H, W): at 1 the blur already spreads over the whole image.
        smoothing = check_float("smoothing", smoothing, 0, 1)
        super().__init__(areas=check_areas(areas), variant=variant, reward=reward, iterations=iterations, step=step,
                         sigma=sigma, levels=levels, max_blur=max_blur, perturbation=perturbation, lr=lr,
                         momentum=momentum, dampening=dampening, penalty=penalty, penalty_growth=penalty_growth,
                         flip=flip, smoothing=smoothing, fast=fast, fast_iterations=fast_iterations,
                         history_every=history_every, backend=backend, geometry=geometry,
                         chunk_rows=check_batch("chunk_rows", chunk_rows), memory_mb=check_memory_mb(memory_mb))
        self.settings = settings

    @classmethod
    def quick_params(cls) -> dict[str, Any]:
        """A few iterations on two areas, eager backend (no compilation): for smoke and contract tests."""
        return {"iterations": 5, "areas": (0.1, 0.3), "backend": "eager", "history_every": 1}

    @classmethod
    def test_params(cls) -> dict[str, Any]:
        """Alias of :meth:`quick_params`."""
        return cls.quick_params()

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        result = self._run(model, x, target)
        return result.saliency(self.params["smoothing"])[:, 0]

    def explain(self, model: nn.Module, x: Tensor | Sequence[Tensor], target: Tensor | int | Sequence[Any],
                callback: StepCallback | None = None) -> ExtremalMasks:
        """Per-area masks (N, T, A, 1, H, W), history and saliency for targets (N,) or (N, T).

        ``x`` may also be a list of same-size images. The model is left as found (checked).
        """
        x = stack_images(x)
        result, saw_non_finite = self._watched(model, x, lambda: self._run(model, x, target, callback))
        if saw_non_finite or not torch.isfinite(result.masks).all():
            self._refuse_non_finite_logits(model, x)
        return result

    def _run(self, model: nn.Module, x: Tensor | Sequence[Tensor], target: Any,
             callback: StepCallback | None = None) -> ExtremalMasks:
        result = extremal_masks(model, x, target, self.params["areas"], self.settings,
                                chunk_rows=self.params["chunk_rows"], memory_mb=self.params["memory_mb"],
                                callback=callback)
        self.diagnostics = {
            "chunk_rows": result.chunk_rows,
            "backend": result.backend,
            "iterations": self.settings.iterations,
            "settings": asdict(result.settings),  # step, sigma and max_blur in pixels of this input
            "final_reward": result.history.reward[-1].detach(),
            "final_residual": result.history.residual[-1].detach(),
        }
        return result

    def cost(self, **context: Any) -> Cost:
        passes = self.settings.iterations * len(self.params["areas"]) * model_rows(self.settings.variant)
        return Cost(forward=passes, backward=passes)


__all__ = ["ExtremalMethod"]
