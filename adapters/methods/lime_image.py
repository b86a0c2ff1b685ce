"""LIME with the ``lime`` package's own ``LimeImageExplainer`` (the reference implementation)."""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Sequence

import lime.lime_image
import numpy as np
import torch
from torch import Tensor, nn

from ..budget import DEFAULT_MEMORY_MB, rows_for_budget
from ..lime_common import SegmentLime, numpy_seed, probabilities
from ..lime_text import lime_text_maps
from ..maps import paint_segments
from ..modality import is_token_model
from ..registry import register

MIN_CLASSIFIER_BATCH = 64


@register("lime")
class LimeMethod(SegmentLime):
    """``lime.lime_image.LimeImageExplainer(kernel_width, random_state=seed_i).explain_instance(
    image, classifier_fn, labels=(t_i,), hide_color=hide_value, top_labels=None, num_samples=n_samples,
    segmentation_fn=<our superpixels>, random_seed=seed_i)`` per image, with ``image`` the model's
    input x_i as (H, W, C) so lime perturbs in the model's input space (see :class:`SegmentLime`).

    ``classifier_fn`` runs the model on its device, ``batch_size`` perturbed images per call
    (memory knob; default the budget's forward rows, at least 64).

    Text: the package's ``LimeTextExplainer`` over the tokens, [MASK] for a removed one
    (:mod:`adapters.lime_text`); the segmentation parameters and ``hide_value`` are not used.
    """

    modalities = ("image", "text")
    memory_knobs = ("batch_size",)

    def __init__(self, n_samples: int = 1000, kernel_width: float = 0.25, hide_value: float = 0.0,
                 segmentation: str = "slic", segmentation_kwargs: dict[str, Any] | None = None,
                 segmentation_input: str = "minmax", mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, seed: int = 0, batch_size: int | None = None,
                 memory_mb: float = DEFAULT_MEMORY_MB) -> None:
        super().__init__(n_samples=n_samples, kernel_width=kernel_width, hide_value=hide_value,
                         segmentation=segmentation, segmentation_kwargs=segmentation_kwargs,
                         segmentation_input=segmentation_input, mean=mean, std=std, seed=seed,
                         batch_size=batch_size, memory_mb=memory_mb)

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        if is_token_model(model):
            return lime_text_maps(self, model, x, target)
        seeds, segments = self.segments(x)
        batch = self.params["batch_size"] or max(MIN_CLASSIFIER_BATCH,
                                                 rows_for_budget(model, x, self.params["memory_mb"], backward=False))
        self.diagnostics["batch_size"] = batch
        classifier_fn = probabilities_fn(model, x.device, x.dtype)
        maps, weights = [], []
        for i, seed in enumerate(seeds):
            explainer = lime.lime_image.LimeImageExplainer(kernel_width=self.params["kernel_width"],
                                                           random_state=numpy_seed(seed))
            labels = segments[i].cpu().numpy()
            label = int(target[i])
            with _no_progress_bar():
                explanation = explainer.explain_instance(
                    x[i].detach().permute(1, 2, 0).cpu().numpy(), classifier_fn, labels=(label,),
                    hide_color=self.params["hide_value"], top_labels=None, num_samples=self.params["n_samples"],
                    batch_size=batch, segmentation_fn=lambda _image, labels=labels: labels,
                    random_seed=numpy_seed(seed))
            w = torch.zeros(int(labels.max()) + 1, dtype=torch.float64)
            for segment, value in explanation.local_exp[label]:
                w[segment] = value
            weights.append(w.to(x.device))
            maps.append(paint_segments(weights[-1], segments[i]))
        self.diagnostics["segment_weights"] = weights
        return torch.cat(maps)


def probabilities_fn(model: nn.Module, device: torch.device, dtype: torch.dtype) -> Callable[[np.ndarray], np.ndarray]:
    """lime's ``classifier_fn``: (B, H, W, C) numpy images -> (B, K) softmax probabilities, run on ``device``."""

    def classifier_fn(images: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(np.ascontiguousarray(images)).to(device=device, dtype=dtype)
        # (B, H, W, C) permuted is already channels-last: no copy before the model.
        return probabilities(model, batch.permute(0, 3, 1, 2)).double().cpu().numpy()

    return classifier_fn


@contextlib.contextmanager
def _no_progress_bar() -> Iterator[None]:
    # lime 0.2.0.1 always wraps its sampling loop in tqdm, one bar per image; silence it.
    original = lime.lime_image.tqdm
    lime.lime_image.tqdm = lambda iterable, *args, **kwargs: iterable
    try:
        yield
    finally:
        lime.lime_image.tqdm = original
