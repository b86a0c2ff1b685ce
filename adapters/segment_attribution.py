"""What the superpixel-based Captum methods share (feature ablation, Shapley value sampling,
Kernel SHAP): LIME's superpixels as Captum's feature mask, the hidden value, seeds, the memory knob.

Per image the superpixels come from :class:`adapters.segmentation.Segmenter` (scikit-image SLIC by
default, quickshift on request) exactly as the LIME adapters make them, with the same per-image
seeds (:func:`adapters.seeding.image_seeds`), so that with the same segmentation parameters and
seed all of them weigh the same superpixels. A hidden superpixel is set to ``hide_value`` in the
model's input space (0, the dataset mean for normalised inputs). The model is explained as
Captum's methods explain it by default: the target *logit* (LIME explains the softmax
probability). Every pixel of a superpixel gets its superpixel's value in all channels; the
per-superpixel values are in ``diagnostics["segment_weights"]`` and the labels in
``diagnostics["segments"]``.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor, nn

from .base import AttributionError, Cost, Method
from .budget import check_batch, check_memory_mb, rows_for_budget
from .checks import check_float
from .segmentation import Segmenter
from .seeding import check_seed, image_seeds


class SegmentPerturbation(Method):
    """Base of the superpixel perturbation methods; subclasses implement ``_attribute`` with
    :meth:`segments` and :meth:`paint`, and pass their own parameters first."""

    memory_knobs = ("perturbations_per_eval",)

    def __init__(self, *, hide_value: float, segmentation: str, segmentation_kwargs: dict[str, Any] | None,
                 segmentation_input: str, mean: Sequence[float] | None, std: Sequence[float] | None, seed: int,
                 perturbations_per_eval: int | None, memory_mb: float, **own: Any) -> None:
        self.segmenter = Segmenter.build(segmentation, segmentation_kwargs, segmentation_input, mean, std)
        super().__init__(**own, hide_value=check_float("hide_value", hide_value), **self.segmenter.params(),
                         seed=check_seed(seed),
                         perturbations_per_eval=check_batch("perturbations_per_eval", perturbations_per_eval),
                         memory_mb=check_memory_mb(memory_mb))

    @classmethod
    def quick_params(cls) -> dict[str, Any]:
        return {"segmentation_kwargs": {"n_segments": 16}}

    def segments(self, x: Tensor) -> tuple[list[int], Tensor]:
        """Per-image seeds (N) and superpixel labels (N, H, W), 0..K_i-1, of ``x`` (N, C, H, W)."""
        seeds = image_seeds(x, self.params["seed"])
        segments = self.segmenter.segment(x, seeds)
        self.diagnostics["segments"] = segments
        return seeds, segments

    def rows(self, model: nn.Module, x: Tensor) -> int:
        """Rows one forward-only pass may hold under ``memory_mb``."""
        return rows_for_budget(model, x, self.params["memory_mb"], backward=False)

    def paint(self, attributions: Tensor, segments: Tensor) -> Tensor:
        """Captum's (N, C, H, W) attributions, equal across channels and within each superpixel, as
        the (N, 1, H, W) map; the per-superpixel values go to ``diagnostics["segment_weights"]``."""
        maps = attributions[:, :1].detach().float().to(segments.device)
        weights = []
        for map_i, labels in zip(maps, segments):
            k = int(labels.max()) + 1
            first = torch.full((k,), labels.numel(), device=labels.device, dtype=torch.long)
            first.scatter_reduce_(0, labels.flatten(), torch.arange(labels.numel(), device=labels.device), "amin")
            weights.append(map_i.flatten()[first].double())
        self.diagnostics["segment_weights"] = weights
        return maps

    def n_segments(self, context: dict[str, object]) -> int:
        """The superpixel count a cost estimate uses: ``context["n_segments"]``, else SLIC's target."""
        if "n_segments" in context:
            return int(context["n_segments"])
        kwargs = self.params["segmentation_kwargs"]
        if self.params["segmentation"] == "slic":
            return int(kwargs["n_segments"])
        raise AttributionError(f"{self.name}'s cost depends on the number of superpixels, which quickshift does not "
                               "fix: pass n_segments=")

    def cost(self, **context: object) -> Cost:
        raise NotImplementedError


@contextlib.contextmanager
def seeded_global_rng(seed: int) -> Iterator[None]:
    """Run a Captum method that draws from torch's global CPU generator (``torch.randperm``,
    ``torch.randn``, ``Categorical.sample``) as after ``torch.manual_seed(seed)``, and give the
    caller's generator state back afterwards (``torch.random.fork_rng``). Not thread-safe: another
    thread drawing meanwhile would see, and change, the seeded stream."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
