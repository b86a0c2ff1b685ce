"""Deletion and insertion (Petsiuk et al. 2018, RISE protocol).

Pixel positions are ranked by attribution (all channels of a pixel together, ties by ``seed``).
Deletion replaces the top-k positions of the image by a substrate (zeros in normalised space by
default); insertion starts from a blurred image and puts the original pixels back in the same order;
k = 0, HW/S, 2HW/S, ..., HW. The curve is the score (probability of the class predicted on the clean
image, by default) over the fraction of pixels changed, x in [0, 1] with both endpoints; the AUC is
the trapezoid over that axis, so it does not grow with the step count (Quantus integrates with
dx=1 and does). Deletion: lower is better; insertion: higher is better.

Cost: (S + 1) forward passes per image, the clean image being one of the curve's endpoints.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..outputs import class_score, score_classes, score_param, target_class_param
from ..params import Float, Int, Substrate
from ..perturb import clean_logits, evaluate_pairs, rise_blur, rows_per_chunk, step_counts, trapezoid_auc
from ..ranking import pixel_ranks
from ..registry import MetricResult, as_scores, register
from ..validation import MetricInputError, check_attributions, check_model_inputs, check_substrate

SUBSTRATES = ("zeros", "blur", "mean")
# The blur of the RISE substrate. An even kernel has no centre pixel (the blurred image would be one
# pixel larger than x). A kernel past 255 px is wider than any image the harness runs; sigma past
# 1000 px is a flat box on such a kernel, while the reference taps it is built from grow as 8 sigma.
BLUR = {"blur_kernel": Int(11, low=1, high=255, odd=True),
        "blur_sigma": Float(5.0, low=0.0, high=1000.0, open_low=True)}
# n_steps costs one forward pass per image and step; 2**16 gives every pixel its own step up to
# 256 x 256 px. It cannot exceed H * W either, which the score checks once it sees x.
_COMMON = {"n_steps": Int(32, low=1, high=2**16), **BLUR, "score": score_param("probability"),
           "target_class": target_class_param("predicted")}


def make_substrate(x: Tensor, substrate: str | Tensor, blur_kernel: int, blur_sigma: float) -> Tensor:
    """The substrate image (N, C, H, W): "zeros" (zero in the model's normalised input space, i.e.
    the dataset mean colour), "blur" (RISE's Gaussian blur), "mean" (each image's channel means) or a
    tensor (C, H, W), (1, C, H, W) or (N, C, H, W)."""
    if isinstance(substrate, Tensor):
        return check_substrate(substrate, x)
    if substrate == "zeros":
        return torch.zeros_like(x)
    if substrate == "blur":
        return rise_blur(x, blur_kernel, float(blur_sigma))
    if substrate == "mean":
        return x.mean((2, 3), keepdim=True).expand_as(x)
    raise MetricInputError(f"substrate must be one of {list(SUBSTRATES)} or a tensor, got {substrate!r}")


def causal_curves(model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor, *, insert: bool,
                  seed: int, device_budget_bytes: int | None, n_steps: int, substrate: str | Tensor,
                  blur_kernel: int, blur_sigma: float, score: str, target_class: str) -> MetricResult:
    """Deletion (``insert=False``) or insertion curves; see the module docstring. Shapes: x (N, C, H, W),
    attributions (N, 1, H, W) or (N, C, H, W); returns scores (N,), curves (N, S+1), curve_x (S+1,)."""
    target = check_model_inputs(model, x, target)
    attributions = check_attributions(attributions, x)
    n, _, h, w = x.shape
    if n_steps > h * w:
        raise MetricInputError(f"n_steps ({n_steps}) exceeds the number of pixel positions ({h * w})")
    chunk = rows_per_chunk(model, x, device_budget_bytes)
    logits = clean_logits(model, x, chunk)
    other = make_substrate(x, substrate, blur_kernel, blur_sigma)
    start, finish = (other, x) if insert else (x, other)
    ranks = pixel_ranks(attributions, seed)
    counts = step_counts(h * w, n_steps, x.device)
    classes = score_classes(logits, target, target_class)
    # The clean image is one endpoint of the curve (step 0 of deletion, step S of insertion): reuse it.
    offset = 1 if not insert else 0

    def build(images: Tensor, steps: Tensor) -> Tensor:
        changed = ranks[images] < counts[steps + offset].view(-1, 1, 1, 1)
        return torch.where(changed, finish[images], start[images])

    def read(logits: Tensor, images: Tensor) -> Tensor:
        return class_score(logits, classes[images], score)

    perturbed = evaluate_pairs(model, n, n_steps, build, read, chunk, x.device)
    clean = class_score(logits, classes, score).unsqueeze(1)
    curves = torch.cat([perturbed, clean] if insert else [clean, perturbed], dim=1)
    curve_x = counts.double() / (h * w)
    return MetricResult(scores=as_scores(trapezoid_auc(curves.double(), curve_x)), curves=as_scores(curves),
                        curve_x=curve_x.float().cpu(), extras={"classes": classes.cpu()})


@register("deletion", category="faithfulness", direction="lower",
          params={**_COMMON, "substrate": Substrate("zeros", SUBSTRATES)})
def deletion(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor, seed: int = 0,
             device_budget_bytes: int | None = None, n_steps: int = 32, substrate: str | Tensor = "zeros",
             blur_kernel: int = 11, blur_sigma: float = 5.0, score: str = "probability",
             target_class: str = "predicted") -> MetricResult:
    """Deletion AUC (RISE): remove the most relevant pixels first; lower is better. Scores (N,),
    curves (N, n_steps + 1) over the fraction of pixels removed."""
    return causal_curves(model, x, target, attributions, insert=False, seed=seed,
                         device_budget_bytes=device_budget_bytes, n_steps=n_steps, substrate=substrate,
                         blur_kernel=blur_kernel, blur_sigma=blur_sigma, score=score, target_class=target_class)


@register("insertion", category="faithfulness", direction="higher",
          params={**_COMMON, "substrate": Substrate("blur", SUBSTRATES)})
def insertion(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor, seed: int = 0,
              device_budget_bytes: int | None = None, n_steps: int = 32, substrate: str | Tensor = "blur",
              blur_kernel: int = 11, blur_sigma: float = 5.0, score: str = "probability",
              target_class: str = "predicted") -> MetricResult:
    """Insertion AUC (RISE): put the most relevant pixels back into the substrate (blur) first; higher
    is better. Scores (N,), curves (N, n_steps + 1) over the fraction of pixels inserted."""
    return causal_curves(model, x, target, attributions, insert=True, seed=seed,
                         device_budget_bytes=device_budget_bytes, n_steps=n_steps, substrate=substrate,
                         blur_kernel=blur_kernel, blur_sigma=blur_sigma, score=score, target_class=target_class)
