"""Occlusion (Zeiler and Fergus 2014): the output drop when a square of the image is blanked."""
from __future__ import annotations

import math

import torch
from captum.attr import Occlusion
from torch import Tensor, nn

from ..base import AttributionError, Cost, Method
from ..budget import DEFAULT_MEMORY_MB, check_batch, check_memory_mb, rows_for_budget, spans
from ..checks import check_float, check_int
from ..maps import check_reduction, reduce_channels
from ..modality import is_token_model
from ..registry import register
from ..token_perturbation import occlusion_maps


#: Pixels; a window wider than any image this harness handles is a typo. The window must also fit
#: the image, which ``attribute`` checks against the actual size.
MAX_WINDOW = 4096


@register("occlusion")
class OcclusionMethod(Method):
    """Captum ``Occlusion`` with a ``window`` x ``window`` square over all channels, moved by
    ``stride`` pixels, filled with ``baseline`` (default 0: the dataset mean for normalised inputs).
    Each pixel gets the mean target-logit drop of the windows covering it; all channels of a pixel
    get the same value, so the ``mean`` reduction returns it unchanged.

    Cost: 1 + (ceil((H - window) / stride) + 1) * (ceil((W - window) / stride) + 1) forwards per
    image, no backward. Memory knob: ``perturbations_per_eval`` windows per image in one pass.

    Text: one token at a time replaced by [MASK] (:mod:`adapters.token_perturbation`); cost
    1 + L forwards per sentence (pass ``length=``).
    """

    modalities = ("image", "text")
    memory_knobs = ("perturbations_per_eval",)

    def __init__(self, window: int = 16, stride: int = 8, baseline: float = 0.0, reduction: str = "mean",
                 perturbations_per_eval: int | None = None, memory_mb: float = DEFAULT_MEMORY_MB) -> None:
        window = check_int("window", window, 1, MAX_WINDOW, why="pixels; it must fit the image")
        # Captum asserts stride <= window: a longer stride would leave pixels that no window covers.
        stride = check_int("stride", stride, 1, window, why="at most window, or some pixels get no window")
        super().__init__(window=window, stride=stride, baseline=check_float("baseline", baseline),
                         reduction=check_reduction(reduction),
                         perturbations_per_eval=check_batch("perturbations_per_eval", perturbations_per_eval),
                         memory_mb=check_memory_mb(memory_mb))

    @classmethod
    def quick_params(cls) -> dict[str, object]:
        return {"window": 8, "stride": 8}

    def n_windows(self, height: int, width: int) -> int:
        window, stride = self.params["window"], self.params["stride"]
        if window > min(height, width):
            raise AttributionError(f"occlusion window {window} is larger than the image ({height}x{width})")
        return (math.ceil((height - window) / stride) + 1) * (math.ceil((width - window) / stride) + 1)

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        if is_token_model(model):
            return occlusion_maps(self, model, x, target)
        n_windows = self.n_windows(*x.shape[-2:])
        ppe = self.params["perturbations_per_eval"]
        if ppe is None:
            rows = rows_for_budget(model, x, self.params["memory_mb"], backward=False)
            images = min(len(x), rows)
            ppe = max(1, min(n_windows, rows // images))
        else:
            images = len(x)
        self.diagnostics["perturbations_per_eval"] = ppe
        occlusion = Occlusion(model)
        channels, window, stride = x.shape[1], self.params["window"], self.params["stride"]
        maps = []
        for s in spans(len(x), images):
            attributions = occlusion.attribute(x[s], sliding_window_shapes=(channels, window, window),
                                               strides=(channels, stride, stride), baselines=self.params["baseline"],
                                               target=target[s], perturbations_per_eval=ppe)
            maps.append(reduce_channels(attributions, self.params["reduction"]))
        return torch.cat(maps)

    def cost(self, **context: object) -> Cost:
        if "length" in context:  # text: one forward per token position
            return Cost(forward=1 + int(context["length"]))
        if "height" not in context or "width" not in context:
            raise AttributionError("occlusion's cost depends on the image size: pass height= and width=")
        return Cost(forward=1 + self.n_windows(int(context["height"]), int(context["width"])))
