"""Axioms an attribution can be checked against: completeness, non-sensitivity, input invariance.

Each score is per image. ``completeness`` and ``input_invariance`` take the ``method`` object
(``inputs=("method",)``): completeness reads its declared channel reduction and baseline, input
invariance re-explains a shifted input with it.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from numbers import Real
from typing import Any, Iterator

import torch
from torch import Tensor, nn

from ..outputs import class_score, score_classes, score_param, target_class_param
from ..params import Choice, Float, Int, Substrate
from ..perturb import clean_and_more_logits, clean_logits, evaluate_pairs, rows_per_chunk
from ..registry import MetricResult, as_scores, register
from ..validation import MetricInputError, check_attributions, check_logits, check_model_inputs
from .deletion_insertion import BLUR, SUBSTRATES, make_substrate


def _check_method(method: Any, name: str) -> Any:
    if not callable(getattr(method, "attribute", None)):
        raise MetricInputError(f"metric {name!r}: method must be an adapters Method with .attribute(model, x, target), "
                               f"got {method!r}")
    return method


def _nan(n: int, device: torch.device | str) -> Tensor:
    return torch.full((n,), float("nan"), dtype=torch.float64, device=device)


# ----------------------------------------------------------------------------------------------
# Completeness

_COMPLETENESS = {"baseline": Substrate("method", ("method", *SUBSTRATES)), "score": score_param("logit"),
                 "error": Choice("relative", ("relative", "absolute"))}


def _completeness_baseline(x: Tensor, baseline: str | Tensor, method: Any) -> tuple[Tensor, str]:
    """The baseline image (N, C, H, W) and how it was chosen."""
    if isinstance(baseline, str) and baseline == "method":
        value = getattr(method, "params", {}).get("baseline", 0.0)
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            value = 0.0  # the method has no constant baseline of its own: zeros, as "zeros"
        return torch.full_like(x, float(value)), f"constant {float(value):g} (the method's baseline)"
    fill = make_substrate(x, baseline, BLUR["blur_kernel"].default, BLUR["blur_sigma"].default)
    return fill, baseline if isinstance(baseline, str) else "tensor"


@register("completeness", category="axiomatic", direction="lower", params=_COMPLETENESS, inputs=("method",))
def completeness(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor, method: Any,
                 seed: int = 0, device_budget_bytes: int | None = None, baseline: str | Tensor = "method",
                 score: str = "logit", error: str = "relative") -> MetricResult:
    """Completeness (Sundararajan et al. 2017): how far the signed map's sum is from the output change it
    should account for, ``|sum_i a_i - (f(x) - f(b))|``, divided by ``|f(x) - f(b)|`` (``error="relative"``,
    default) or not (``"absolute"``, in units of f). 0 = complete; lower is better; no upper bound.

    f: the ``score`` (default the logit, which the gradient methods explain) of the target class.
    b: ``baseline``: ``"method"`` (default) the method's own constant ``baseline`` parameter when it
    declares one (integrated_gradients' 0 unless configured), else zeros; or "zeros", "mean", "blur"
    (as deletion's substrates) or a tensor.

    Which maps it is meaningful for. The harness's maps are (N, 1, H, W) after the method's channel
    reduction, so the score takes the map as given and needs it to be the *signed channel sum*: a
    method that declares a ``reduction`` other than ``"sum"`` (saliency's ``max_abs``, occlusion's
    ``mean``) has lost it, and every image is NaN ("no score") with the reason in
    ``extras["not_applicable"]`` (the method is left unscored, not shown as failing the axiom);
    use ``integrated_gradients(reduction="sum")``, its default. Methods without a ``reduction``
    (Grad-CAM, LIME, the controls) are scored as given: their maps are not additive decompositions
    and the score shows how far from one they are. An unreduced (N, C, H, W) map is summed over
    channels by the input check, which is exactly what the axiom needs.
    NaN too where f(x) = f(b) up to float32 rounding (relative error undefined) or f(b) is not finite.

    Scores (N,); extras ``attribution_sum``, ``output_change``, ``absolute_error`` (N,), ``baseline``
    (how b was chosen). Cost: 2 forward passes per image.

    Quantus' ``Completeness`` returns ``sum(a) == f(x) - f(b)`` as exact float equality, after
    dividing the map by its batch-wide maximum (``normalise=True`` by default) and with "black" =
    the image's minimum value as b: with its defaults no map passes, with ``normalise=False`` only
    bit-exact sums do.
    """
    target = check_model_inputs(model, x, target)
    attributions = check_attributions(attributions, x)
    method = _check_method(method, "completeness")
    n = x.shape[0]
    reduction = getattr(method, "params", {}).get("reduction")
    if reduction is not None and reduction != "sum":
        nan = as_scores(_nan(n, x.device))
        return MetricResult(scores=nan, extras={
            "not_applicable": f"method {getattr(method, 'name', '') or type(method).__name__} reduces channels with "
                              f"{reduction!r}: its map is not the signed channel sum that completeness is about "
                              f"(use reduction='sum')",
            "attribution_sum": nan, "output_change": nan, "absolute_error": nan})
    fill, described = _completeness_baseline(x, baseline, method)
    chunk = rows_per_chunk(model, x, device_budget_bytes)
    logits, baseline_logits = clean_and_more_logits(model, x, fill, chunk)
    f_x = class_score(logits, target, score).double()
    f_b = class_score(baseline_logits, target, score).double()
    change = f_x - f_b
    total = attributions.flatten(1).double().sum(1)
    absolute = (total - change).abs()
    # Float32 logits carry ~1e-7 relative rounding: a change below that is no change at all.
    undefined = (change.abs() <= 1e-6 * (f_x.abs() + f_b.abs())) | ~torch.isfinite(f_b)
    value = absolute / change.abs().clamp_min(torch.finfo(change.dtype).tiny) if error == "relative" else absolute
    value = torch.where(undefined if error == "relative" else ~torch.isfinite(f_b), _nan(n, x.device), value)
    return MetricResult(scores=as_scores(value), extras={
        "attribution_sum": as_scores(total), "output_change": as_scores(change),
        "absolute_error": as_scores(absolute), "baseline": described})


# ----------------------------------------------------------------------------------------------
# Non-sensitivity

# A patch costs one forward pass per image; 256 px patches are coarser than any sensible feature.
_NON_SENSITIVITY = {"patch": Int(1, low=1, high=256), "eps_attribution": Float(1e-5, low=0.0, high=1.0, open_high=True),
                    "eps_output": Float(1e-5, low=0.0), "baseline": Substrate("zeros", SUBSTRATES),
                    "score": score_param("probability"), "target_class": target_class_param("target")}


def patch_ids(height: int, width: int, patch: int, device: torch.device | str) -> tuple[Tensor, int]:
    """The feature each pixel belongs to, (H, W) long: row-major ``patch`` x ``patch`` squares (the last
    row and column of squares smaller when ``patch`` does not divide the side); and their number."""
    rows, cols = -(-height // patch), -(-width // patch)
    r = torch.arange(height, device=device) // patch
    c = torch.arange(width, device=device) // patch
    return r[:, None] * cols + c[None, :], rows * cols


@register("non_sensitivity", category="axiomatic", direction="lower", params=_NON_SENSITIVITY)
def non_sensitivity(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor, seed: int = 0,
                    device_budget_bytes: int | None = None, patch: int = 1, eps_attribution: float = 1e-5,
                    eps_output: float = 1e-5, baseline: str | Tensor = "zeros", score: str = "probability",
                    target_class: str = "target") -> MetricResult:
    """Non-sensitivity (Nguyen & Martinez 2020): the number of features where "has zero attribution"
    and "the model is insensitive to it" disagree, ``|Z symmetric-difference I|``; 0 is the axiom,
    lower is better.

    A feature is a ``patch`` x ``patch`` square of pixels, all channels together (``patch=1``: a pixel,
    the paper's feature). Z: features whose every pixel has ``|a| < eps_attribution * max |a|`` (per
    image, so the map's scale does not matter; an all-zero map has every feature in Z).
    I: features whose replacement by ``baseline`` in the clean image ("zeros", "mean", "blur" or a
    tensor), one feature at a time, moves the ``score`` (default the probability) of the target
    class by less than ``eps_output``. A pixel already equal to the baseline cannot move the output.
    Scores (N,): a count in [0, number of features]; extras ``fraction`` (N,) the count over the
    number of features, ``n_zero``, ``n_insensitive`` (N,), ``n_features``.
    Cost: one forward pass per feature and image (H*W/patch^2), plus one.

    Quantus' ``NonSensitivity`` counts one channel of one pixel as a feature (3x the features on RGB),
    takes "black" to be the image's minimum, thresholds a map divided by the batch-wide maximum, uses
    one eps for attributions and outputs, and (v0.6.0) fails for ``features_in_step > 1``.
    """
    target = check_model_inputs(model, x, target)
    attributions = check_attributions(attributions, x)
    n, _, h, w = x.shape
    ids, n_features = patch_ids(h, w, patch, x.device)
    chunk = rows_per_chunk(model, x, device_budget_bytes)
    logits = clean_logits(model, x, chunk)
    classes = score_classes(logits, target, target_class)
    clean = class_score(logits, classes, score)
    fill = make_substrate(x, baseline, BLUR["blur_kernel"].default, BLUR["blur_sigma"].default)

    def build(images: Tensor, steps: Tensor) -> Tensor:
        return torch.where((ids == steps.view(-1, 1, 1)).unsqueeze(1), fill[images], x[images])

    def read(out: Tensor, images: Tensor) -> Tensor:
        return class_score(out, classes[images], score)

    perturbed = evaluate_pairs(model, n, n_features, build, read, chunk, x.device)
    insensitive = (perturbed - clean[:, None]).abs() < eps_output  # NaN outputs: sensitive
    magnitude = attributions.abs().flatten(1).double()
    peak = magnitude.amax(1, keepdim=True)
    per_pixel = (magnitude < eps_attribution * peak) | (peak == 0)
    # A feature has zero attribution when none of its pixels has any: count the non-zero pixels.
    nonzero = torch.zeros(n, n_features, device=x.device, dtype=torch.float64)
    nonzero.index_add_(1, ids.flatten(), (~per_pixel).double())
    zero = nonzero == 0
    count = (zero ^ insensitive).sum(1).double()
    return MetricResult(scores=as_scores(count), extras={
        "fraction": as_scores(count / n_features), "n_zero": as_scores(zero.sum(1)),
        "n_insensitive": as_scores(insensitive.sum(1)), "n_features": n_features, "classes": classes.cpu()})


# ----------------------------------------------------------------------------------------------
# Input invariance

# Modules that a constant shift passes through unchanged (up to a reshape) before the first layer.
_TRANSPARENT = (nn.Identity, nn.Flatten, nn.Unflatten, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
                nn.AlphaDropout)
_FIRST_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


class _ShiftedPass:
    """One forward of the rows (x, then x + shift) that finds the first layer and checks the shift.

    Pre-hooks on every leaf module stop at the first one called in each chunk other than reshapes and
    dropouts (in eval mode): the first layer that reads the input. It is refused
    (:class:`MetricInputError`) unless it is a Conv1d/2d/3d or Linear that receives the chunk's rows
    unchanged (up to a reshape): a constant shift of the input can then be absorbed into what the
    layer adds to ``W x``. Its output on the shifted rows has ``D = layer(m 1) - layer(0)`` (the layer
    is linear; ``D`` includes what its padding does) taken off, so in the same pass those rows see the
    model compensated position by position, and the clean rows see the model itself. Finding the
    layer, the clean logits and the check then cost one forward call, not three.
    """

    def __init__(self, model: nn.Module, shift: float) -> None:
        self.model, self.shift = model, shift
        self.name: str | None = None
        self.layer: nn.Module | None = None
        self.delta: Tensor | None = None  # D, (1, C_out, ...) or (1, out)
        self.rows: Tensor | None = None
        self.shifted: Tensor | None = None
        self.found_in_chunk = False

    def before(self, name: str, module: nn.Module, args: tuple) -> None:
        if self.found_in_chunk or isinstance(module, _TRANSPARENT):
            return
        self.found_in_chunk = True
        if not isinstance(module, _FIRST_LAYERS):
            raise MetricInputError(f"metric 'input_invariance': the first layer that reads the input, {name!r}, is a "
                                   f"{type(module).__name__}; a constant input shift can only be absorbed into the "
                                   f"bias of a Conv1d/2d/3d or Linear layer")
        seen = args[0] if args and isinstance(args[0], Tensor) else None
        if seen is None or seen.numel() != self.rows.numel() or not torch.equal(seen.reshape(-1), self.rows.reshape(-1)):
            raise MetricInputError(f"metric 'input_invariance': the first layer {name!r} does not receive the model's "
                                   f"input unchanged (the forward transforms it first), so its bias cannot absorb a "
                                   f"shift of the input")
        if self.layer is None:
            probe = torch.zeros((1, *seen.shape[1:]), dtype=seen.dtype, device=seen.device)
            self.delta = module(probe + self.shift) - module(probe)  # both hooks skip these calls (found, no layer yet)
            self.name, self.layer = name, module
        elif module is not self.layer:
            raise MetricInputError(f"metric 'input_invariance': the first layer that reads the input is {self.name!r} "
                                   f"for some images and {name!r} for others")

    def after(self, module: nn.Module, _args: tuple, output: Tensor) -> Tensor | None:
        # Every call of the layer, as in the compensated model that is explained: a model that calls it
        # again deeper in (on features, not on the input) then fails the check instead of passing it.
        if module is not self.layer or output.shape[0] != self.shifted.shape[0]:
            return None
        shifted = self.shifted.view(-1, *([1] * (output.dim() - 1)))
        return torch.where(shifted, output - self.delta, output)

    @torch.no_grad()
    def run(self, x: Tensor, chunk_rows: int) -> tuple[Tensor, Tensor]:
        """Logits (N, K) of the model on x and of the compensated model on x + shift."""
        rows = torch.cat([x, x + self.shift])
        shifted = torch.arange(rows.shape[0], device=x.device) >= x.shape[0]
        handles = []
        try:
            for name, module in self.model.named_modules():
                if not any(True for _ in module.children()):
                    handles.append(module.register_forward_pre_hook(
                        lambda m, args, name=name: self.before(name, m, args)))
                    if isinstance(module, _FIRST_LAYERS):
                        handles.append(module.register_forward_hook(self.after))
            logits = []
            for start in range(0, rows.shape[0], chunk_rows):
                self.rows, self.shifted = rows[start:start + chunk_rows], shifted[start:start + chunk_rows]
                self.found_in_chunk = False
                logits.append(self.model(self.rows))
        finally:
            for handle in handles:
                handle.remove()
        if self.layer is None:
            raise MetricInputError("metric 'input_invariance': the model has no layer that reads its input")
        logits = torch.cat(logits)
        return logits[:x.shape[0]], logits[x.shape[0]:]


@contextmanager
def compensated(layer: nn.Module, delta: Tensor) -> Iterator[str]:
    """Context in which ``layer`` takes ``x + shift`` to exactly the pre-activations it gives for ``x``
    (``delta`` = D of :class:`_ShiftedPass`); yields ``"bias"`` or ``"per_position"``; ``layer`` is
    restored on exit (the model is changed in place, as the randomisation checks do, rather than
    deep-copied: a copy of a ResNet costs more than its forward pass).

    Where ``D`` is one value per output channel (a Linear layer, a convolution without zero padding)
    it is subtracted from the bias, the construction of Kindermans et al. (a missing bias is
    created). A zero-padded convolution sees the shift everywhere but in the padding, so ``D`` varies
    near the border; it is then subtracted position by position (a forward hook): a per-position
    bias, the only exact compensation.
    """
    spatial = tuple(range(2, delta.dim()))
    per_channel = delta.amax(spatial, keepdim=True) if spatial else delta
    constant = not spatial or bool(torch.allclose(delta, per_channel.expand_as(delta), rtol=1e-5,
                                                  atol=1e-6 * float(delta.abs().max().clamp_min(1e-30))))
    if not constant:
        fixed = delta.detach()
        handle = layer.register_forward_hook(lambda module, args, output: output - fixed)
        try:
            yield "per_position"
        finally:
            handle.remove()
        return
    original = layer.bias
    bias = original if original is not None else torch.zeros(delta.shape[1], dtype=delta.dtype, device=delta.device)
    layer.bias = nn.Parameter(bias.detach() - per_channel.reshape(-1), requires_grad=layer.weight.requires_grad)
    try:
        yield "bias"
    finally:
        layer.bias = original


@register("input_invariance", category="axiomatic", direction="lower",
          params={"shift": Float(-1.0)}, inputs=("method",))
def input_invariance(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor, method: Any,
                     seed: int = 0, device_budget_bytes: int | None = None, shift: float = -1.0) -> MetricResult:
    """Input invariance (Kindermans et al. 2017): does the map change when the input is shifted by a
    constant ``shift`` and the model absorbs the shift in its first layer, so that the two models
    compute the same function of the image? Score ``||a(x) - a'(x + shift)||_2 / ||a(x)||_2``, a' the
    method's map of x + shift on the compensated model; 0 = invariant, lower is better.

    ``attributions`` must be the method's map of x (they are a(x)). Gradients are invariant (the
    compensated model has the same gradients at x + shift); methods that multiply by the input or
    integrate from a fixed baseline (gradient x input, integrated gradients from 0) are not, which is
    the paper's point. Stochastic methods draw fresh noise for x + shift (the adapters seed by the
    image's bytes), so their score includes their sampling noise.

    The first layer must be a Conv1d/2d/3d or Linear reading the input (else a clear error; see
    :class:`_ShiftedPass`); the compensation is exact, a bias change or, for zero-padded
    convolutions, a per-position bias (:func:`compensated`; the model is changed in place for the
    explanation and restored), and is verified: the compensated logits on x + shift (per position,
    equal to the bias change up to float rounding) must equal the model's on x, or the score refuses
    (a model that reads its input again further on). NaN ("no score") for an all-zero a(x). Scores
    (N,); extras ``max_abs_difference`` (N,), ``compensation`` ("bias" or "per_position"),
    ``first_layer``. Cost: one explanation, one forward pass of x and x + shift together.

    Quantus' ``InputInvariance`` takes ``named_modules()[1]`` as the first layer (torchvision's ResNet
    ``conv1`` has no bias and fails), builds the shift on the CPU (fails on CUDA models), subtracts the
    minimum over positions of W*m + b from every position (wrong at the border of a zero-padded
    convolution, so the two models differ there) and returns ``all(isclose(a, a', atol=1e-4))``.
    """
    target = check_model_inputs(model, x, target)
    attributions = check_attributions(attributions, x)
    method = _check_method(method, "input_invariance")
    check = _ShiftedPass(model, shift)
    logits, moved = check.run(x, rows_per_chunk(model, x, device_budget_bytes))
    check_logits(logits)
    name = check.name
    # Exact in real arithmetic; the slack is for float32 (and TF32 convolutions on GPUs, ~1e-3 relative),
    # well below what a model that reads its input again shows (of the order of the shift itself).
    tolerance = (1e-2 * min(1.0, abs(shift)) + 1e-5) * (1.0 + float(logits.abs().max()))
    gap = float((moved - logits).abs().max())
    if not gap <= tolerance:
        raise MetricInputError(f"metric 'input_invariance': the shift is not absorbed by the first layer {name!r}: the "
                               f"compensated model's logits on x + {shift:g} differ from the model's on x by {gap:.3g} "
                               f"(the model reads its input again after that layer)")
    with compensated(check.layer, check.delta) as how:
        maps = method.attribute(model, x + shift, target)
    if maps.shape != attributions.shape:
        maps = check_attributions(maps, x)
    difference = (attributions - maps).flatten(1).double()
    norm = attributions.flatten(1).double().norm(dim=1)
    value = difference.norm(dim=1) / norm.clamp_min(torch.finfo(norm.dtype).tiny)
    value = torch.where(norm > 0, value, _nan(x.shape[0], x.device))
    return MetricResult(scores=as_scores(value), extras={
        "max_abs_difference": as_scores(difference.abs().amax(1)), "compensation": how, "first_layer": name})
