"""Infidelity and max-sensitivity (Yeh et al. 2019) through ``captum.metrics``.

Captum does the estimation; this module supplies what it leaves to the caller:

- explicit, seeded perturbations. Captum calls the perturbation function once per chunk on the
  inputs repeated ``k`` times each (image-major); sample ``j`` of every image gets the same noise
  field ``noise[j]``, drawn from ``seed``, whatever the chunking or the batch.
- chunk sizes from the memory budget (``max_examples_per_batch``), splitting the images into groups
  when even one sample per image would not fit.
- the clean outputs and clean explanation, computed once instead of once per chunk.
"""
from __future__ import annotations

from typing import Any

import torch
from captum.metrics import infidelity as captum_infidelity
from captum.metrics import sensitivity_max as captum_sensitivity_max
from torch import Tensor, nn

from ..outputs import score_classes, score_param, target_class_param
from ..params import Float, Int, Norm
from ..perturb import clean_logits, rows_per_chunk
from ..registry import MetricResult, as_scores, register
from ..validation import MetricInputError, check_attributions, check_model_inputs

# Each sample costs a forward pass (infidelity) or an explanation (sensitivity) per image, and a
# noise field of the image's size: 1024 samples is 100x Captum's default of 10. Infidelity's scale
# normalisation fits one sample exactly (a score of 0 for any map), so it needs two. Zero noise would
# perturb nothing: infidelity's normalisation divides 0 by 0, sensitivity scores 0 for every method.
MAX_SAMPLES = 1024


class SharedNoise:
    """Captum perturbation function that hands sample ``j`` of every image the field ``noise[j]``.

    Captum walks the samples chunk by chunk in order, so a running offset tells which samples a call
    covers. ``noise``: (S, 1 or C, H, W). ``subtract``: infidelity form, returns (I, x - I); otherwise
    sensitivity form, returns x + noise.
    """

    def __init__(self, noise: Tensor, n_images: int, subtract: bool) -> None:
        self.noise, self.n_images, self.subtract, self.offset = noise, n_images, subtract, 0

    def __call__(self, inputs: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        per_image = inputs.shape[0] // self.n_images
        samples = self.noise[self.offset:self.offset + per_image]
        self.offset += per_image
        field = samples.repeat(self.n_images, 1, 1, 1).expand_as(inputs)
        return (field, inputs - field) if self.subtract else inputs + field


def image_groups(n: int, chunk_rows: int, n_samples: int) -> list[tuple[slice, int]]:
    """Slices of at most ``chunk_rows`` images, each with its ``max_examples_per_batch``: Captum needs
    every chunk to hold each image of the group at least once and at most ``n_samples`` times."""
    size = max(1, min(n, chunk_rows))
    groups = [slice(i, min(i + size, n)) for i in range(0, n, size)]
    return [(g, min(max(chunk_rows, g.stop - g.start), (g.stop - g.start) * n_samples)) for g in groups]


def _generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(int(seed))


def gaussian_pixel_noise(n_samples: int, shape: tuple[int, int, int], std: float, seed: int) -> Tensor:
    """Infidelity's perturbations: N(0, std^2) per pixel, shared by its channels, (S, 1, H, W)."""
    _, h, w = shape
    return float(std) * torch.randn((n_samples, 1, h, w), generator=_generator(seed))


def uniform_noise(n_samples: int, shape: tuple[int, int, int], radius: float, seed: int) -> Tensor:
    """Sensitivity's perturbations: U(-radius, radius) per input value, (S, C, H, W)."""
    return (2 * torch.rand((n_samples, *shape), generator=_generator(seed)) - 1) * float(radius)


@register("infidelity", category="faithfulness", direction="lower",
          params={"n_samples": Int(10, low=2, high=MAX_SAMPLES), "noise_std": Float(0.1, low=0.0, open_low=True),
                  "score": score_param("logit"), "target_class": target_class_param("target")})
def infidelity(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor, seed: int = 0,
               device_budget_bytes: int | None = None, n_samples: int = 10, noise_std: float = 0.1,
               score: str = "logit", target_class: str = "target") -> MetricResult:
    """Infidelity E[(I^T a - (f(x) - f(x - I)))^2] with Captum's scale normalisation (normalize=True).

    I: Gaussian noise of std ``noise_std`` per pixel, shared by the channels of a pixel (a pixel is
    one feature, as in every score here), so I^T a = C * sum_p I_p a_p, the factor C removed by the
    normalisation. f: the ``score`` (logit or probability) of the scored class. Scores (N,), lower is
    better. Cost: n_samples + 1 forward passes per image.
    """
    target = check_model_inputs(model, x, target)
    attributions = check_attributions(attributions, x)
    n, c, h, w = x.shape
    chunk = rows_per_chunk(model, x, device_budget_bytes)
    logits = clean_logits(model, x, chunk)
    classes = score_classes(logits, target, target_class)
    noise = gaussian_pixel_noise(n_samples, (c, h, w), noise_std, seed).to(x.device)

    def outputs(logits: Tensor) -> Tensor:
        return logits.float().softmax(1) if score == "probability" else logits.float()

    values = []
    for group, max_examples in image_groups(n, chunk, n_samples):
        inputs, clean = x[group], outputs(logits[group])

        def forward(batch: Tensor) -> Tensor:
            return clean if batch is inputs else outputs(model(batch))  # the clean pass is already done

        values.append(captum_infidelity(forward, SharedNoise(noise, inputs.shape[0], subtract=True), inputs,
                                        attributions[group].expand_as(inputs), target=classes[group],
                                        n_perturb_samples=n_samples, max_examples_per_batch=max_examples,
                                        normalize=True))
    return MetricResult(scores=as_scores(torch.cat(values)), extras={"classes": classes.cpu()})


@register("sensitivity", category="robustness", direction="lower",
          params={"n_samples": Int(10, low=1, high=MAX_SAMPLES), "radius": Float(0.02, low=0.0, open_low=True),
                  "norm": Norm("fro"), "target_class": target_class_param("target")}, inputs=("method",))
def sensitivity(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor, method: Any,
                seed: int = 0, device_budget_bytes: int | None = None, n_samples: int = 10, radius: float = 0.02,
                norm: str | float = "fro", target_class: str = "target") -> MetricResult:
    """Max-sensitivity (Captum ``sensitivity_max``): max over samples of ||a(x) - a(x + d)|| / ||a(x)||,
    d ~ U(-radius, radius) per input value (Captum's default distribution, drawn here from ``seed``).

    ``method`` is an adapters ``Method``; ``attributions`` must be its map of ``x`` for the scored
    class (they are used as a(x) instead of explaining x again). Scores (N,), lower is better.
    Cost: n_samples explanations per image, plus one forward pass that checks the clean logits.
    """
    target = check_model_inputs(model, x, target)
    attributions = check_attributions(attributions, x)
    if not callable(getattr(method, "attribute", None)):
        raise MetricInputError(f"method must be an adapters Method with .attribute(model, x, target), got {method!r}")
    n = x.shape[0]
    chunk = rows_per_chunk(model, x, device_budget_bytes)
    # The clean pass is cheap next to n_samples explanations, and names a broken model up front.
    classes = score_classes(clean_logits(model, x, chunk), target, target_class)
    noise = uniform_noise(n_samples, tuple(x.shape[1:]), radius, seed).to(x.device)

    values = []
    for group, max_examples in image_groups(n, chunk, n_samples):
        inputs, clean_map = x[group], attributions[group]

        def explain(batch: Tensor | tuple[Tensor, ...], target: Tensor) -> tuple[Tensor]:
            # Captum formats only the perturbed explanations into tuples: return tuples throughout.
            batch = batch[0] if isinstance(batch, tuple) else batch
            if batch is inputs:
                return (clean_map,)
            # Captum leaves a one-element target unexpanded (it reads it as one class for all rows).
            target = target.reshape(-1).expand(batch.shape[0]) if target.numel() == 1 else target
            with torch.enable_grad():  # Captum runs this under no_grad; gradient methods need grad
                return (method.attribute(model, batch, target),)

        values.append(captum_sensitivity_max(explain, inputs, perturb_func=SharedNoise(noise, inputs.shape[0], False),
                                             n_perturb_samples=n_samples, norm_ord=norm,
                                             max_examples_per_batch=max_examples, target=classes[group]))
    return MetricResult(scores=as_scores(torch.cat(values)), extras={"classes": classes.cpu()})
