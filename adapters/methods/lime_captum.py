"""LIME on Captum's LIME engine: the ``lime`` package's recipe, with sampling, model calls and the
regression on the model's device."""
from __future__ import annotations

from functools import partial
from typing import Any, Iterator, Sequence

import torch
from captum._utils.models.linear_model import LinearModel
from captum.attr import LimeBase
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ..budget import DEFAULT_MEMORY_MB, rows_for_budget
from ..lime_common import SegmentLime, lime_kernel, numpy_seed, probabilities
from ..maps import paint_segments
from ..registry import register
from ..seeding import generator


@register("lime_captum")
class LimeCaptumMethod(SegmentLime):
    """Captum's LIME engine (``LimeBase``, the base of ``captum.attr.Lime``) with the ``lime``
    package's choices plugged in (see :class:`SegmentLime`): the superpixels as the feature mask,
    ``hide_value`` as the baseline, the first sample all ones, lime's kernel as the similarity, and
    lime's ridge regression (alpha 1, intercept, sample weights) solved in closed form on the device
    as the interpretable model. The samples come from a torch generator per image on the device,
    seeded with the same 32-bit seed as ``lime``'s numpy RandomState. On the CPU both are MT19937
    and both take the low bit of each 32-bit draw, so the samples, and hence the maps, equal
    ``lime``'s to float precision; on CUDA (Philox) they are different draws of the same
    distribution.

    Why ``LimeBase`` in the interpretable space rather than ``Lime(feature_mask=...)``: ``Lime``
    builds every perturbed image in its Python sampling loop, one small tensor op chain per sample
    (1-5 ms each on a busy CPU, more than the model). Here Captum's loop only moves binary vectors;
    each batch of ``perturbations_per_eval`` vectors becomes images in one masked multiply on the
    device inside the forward function, and the kernel weights are computed once, vectorised.

    Memory knob: ``perturbations_per_eval`` perturbed images per model pass (default: the budget's
    forward rows, at most ``n_samples``).
    """

    memory_knobs = ("perturbations_per_eval",)

    def __init__(self, n_samples: int = 1000, kernel_width: float = 0.25, hide_value: float = 0.0,
                 segmentation: str = "slic", segmentation_kwargs: dict[str, Any] | None = None,
                 segmentation_input: str = "minmax", mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, seed: int = 0, perturbations_per_eval: int | None = None,
                 memory_mb: float = DEFAULT_MEMORY_MB) -> None:
        super().__init__(n_samples=n_samples, kernel_width=kernel_width, hide_value=hide_value,
                         segmentation=segmentation, segmentation_kwargs=segmentation_kwargs,
                         segmentation_input=segmentation_input, mean=mean, std=std, seed=seed,
                         perturbations_per_eval=perturbations_per_eval, memory_mb=memory_mb)

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        seeds, segments = self.segments(x)
        n_samples = self.params["n_samples"]
        ppe = self.params["perturbations_per_eval"] or min(
            n_samples, rows_for_budget(model, x, self.params["memory_mb"], backward=False))
        self.diagnostics["perturbations_per_eval"] = ppe
        maps, weights = [], []
        for i, seed in enumerate(seeds):
            n_segments = int(segments[i].max()) + 1
            samples = torch.randint(0, 2, (n_samples, n_segments), generator=generator(numpy_seed(seed), x.device),
                                    device=x.device)
            samples[0] = 1  # as lime: the unperturbed image is the first sample
            explainer = LimeBase(
                _SegmentClassifier(model, x[i], segments[i], self.params["hide_value"]),
                interpretable_model=LinearModel(train_fn=partial(ridge_fit, alpha=1.0)),
                similarity_func=_replay(lime_kernel(samples, self.params["kernel_width"])),
                perturb_func=_replay_rows(samples), perturb_interpretable_space=True,
                from_interp_rep_transform=lambda sample, _inputs, **_: sample, to_interp_rep_transform=None)
            coefs = explainer.attribute(samples[:1].float(), target=int(target[i]), n_samples=n_samples,
                                        perturbations_per_eval=ppe)
            weights.append(coefs.detach().reshape(-1).double())
            maps.append(paint_segments(weights[-1], segments[i]))
        self.diagnostics["segment_weights"] = weights
        return torch.cat(maps)


class _SegmentClassifier:
    """Forward function on binary segment vectors z (B, K): the model's softmax on x_i with the
    segments where z is 0 set to ``hide_value``, built for the whole batch at once."""

    def __init__(self, model: nn.Module, x_i: Tensor, segments: Tensor, hide_value: float) -> None:
        # Built in (B, H, W, C) so that the batch is channels-last without a copy (see ``probabilities``).
        self.model, self.hide_value = model, hide_value
        self.x_i = x_i.detach().permute(1, 2, 0).contiguous()
        self.pixels = segments.flatten()

    def __call__(self, z: Tensor) -> Tensor:
        # A 0/1 float mask times the image, not torch.where on a bool mask and not z[:, segments]:
        # index_select plus a multiply is ~5x faster on a CPU, and exact (1*x = x, 0*x + hide = hide).
        keep = z.to(self.x_i.dtype).index_select(1, self.pixels).view(len(z), *self.x_i.shape[:2], 1)
        images = keep * self.x_i
        if self.hide_value:
            images += (1 - keep) * self.hide_value
        return probabilities(self.model, images.permute(0, 3, 1, 2))


def _replay_rows(samples: Tensor):  # noqa: ANN202 - Captum needs a generator function
    def perturb(_inputs: Tensor, **_: Any) -> Iterator[Tensor]:
        yield from samples.split(1)

    return perturb


def _replay(values: Tensor):  # noqa: ANN202
    # Captum asks for one similarity per sample, in sampling order; they were computed at once.
    # One-element tensors, not floats: Captum would build a tensor from each float.
    stream = iter(values.split(1))

    def similarity(*_: Any, **__: Any) -> Tensor:
        return next(stream)

    return similarity


def ridge_fit(model: LinearModel, dataloader: DataLoader, construct_kwargs: dict[str, Any], alpha: float = 1.0,
              **_: Any) -> dict[str, float]:
    """Captum ``LinearModel`` train_fn: sklearn's ``Ridge(alpha, fit_intercept=True).fit(X, y,
    sample_weight=w)`` in closed form, in float64 on the data's device.

    Like sklearn: centre X and y by their weighted means, scale rows by sqrt(w), solve
    ``(Xc^T Xc + alpha I) coef = Xc^T yc``, ``intercept = mean_y - mean_x . coef``.
    """
    data, labels, weights = (t.double() for t in dataloader.dataset.tensors)  # Captum's TensorDataset
    labels, weights = labels.reshape(-1), weights.reshape(-1)
    mean_x = (weights[:, None] * data).sum(0) / weights.sum()
    mean_y = (weights * labels).sum() / weights.sum()
    root = weights.sqrt()
    xc, yc = (data - mean_x) * root[:, None], (labels - mean_y) * root
    gram = xc.T @ xc + alpha * torch.eye(data.shape[1], dtype=data.dtype, device=data.device)
    coef = torch.linalg.solve(gram, xc.T @ yc)
    intercept = mean_y - mean_x @ coef
    model._construct_model_params(weight_values=coef.reshape(1, -1).float(), bias_value=intercept.reshape(1).float(),
                                  norm_type=None)
    return {}
