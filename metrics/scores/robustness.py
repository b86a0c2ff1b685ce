"""Robustness: how much a map changes when the input changes a little.

Every score here re-explains perturbed copies of each image with the ``method`` it is given (an
adapters ``Method``; ``attributions`` must be that method's map of ``x`` for the scored class and is
used as a(x)). The (image, sample) rows are built on the model's device and explained in batches that
span images and samples, chunked to the memory budget as a method's own input-gradient passes are
(:func:`explain_rows_per_chunk`). The perturbations are drawn from ``seed`` on the CPU and shared by
every image (sample j of every image gets the same noise field), and a method's maps do not depend on
the batch (adapters contract), so a score never depends on the other images of the batch. Nothing is
normalised across images: where a score normalises a map, it divides by that map's own maximum.

Quantus 0.6 normalises each batch of explanations by one batch-wide maximum (LocalLipschitzEstimate
and Continuity by default), returns NaN for the whole image when one of 200 samples changes the
prediction (the relative stabilities), and compares Continuity's translations of up to the full
image width (one of them a zero shift, divided by 1e-9). The tests show each next to our choice.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn

from adapters.budget import DEFAULT_MEMORY_MB, rows_for_budget
from adapters.probe import probe

from ..outputs import score_classes, target_class_param
from ..params import Bool, Float, Int, Norm, Param, Rejected, Substrate
from ..perturb import clean_logits, forward_chunked
from ..registry import MetricResult, as_scores, register
from ..validation import MetricInputError, check_attributions, check_model_inputs
from .captum_scores import MAX_SAMPLES, uniform_noise
from .deletion_insertion import BLUR, SUBSTRATES, make_substrate

#: build(images (M,), samples (M,)) -> the perturbed inputs (M, C, H, W).
Build = Callable[[Tensor, Tensor], Tensor]
#: read(inputs (M, C, H, W), maps (M, 1, H, W), images, samples) -> (M,) or (M, F).
Read = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class LayerName(Param):
    """None, or the dotted name of a module as in ``model.named_modules()`` (checked against the
    model at run time)."""

    default: str | None = None

    def accepts(self) -> str:
        return "None or a module name (a non-empty string)"

    def convert(self, value: Any) -> str | None:
        if value is None or (isinstance(value, str) and value):
            return value
        raise Rejected


def explain_rows_per_chunk(model: nn.Module, x: Tensor, budget_bytes: int | None) -> int:
    """How many perturbed rows one ``method.attribute`` call may take within ``budget_bytes``: the
    activations of a forward and an input-gradient backward per row (the adapters' rule), plus the
    row and its map."""
    memory_mb = DEFAULT_MEMORY_MB if budget_bytes is None else max(int(budget_bytes), 1) / 2**20
    return rows_for_budget(model, x, memory_mb, backward=True, extra_bytes_per_row=2 * x[0].numel() * x.element_size())


def check_method(method: Any) -> Any:
    if not callable(getattr(method, "attribute", None)):
        raise MetricInputError(f"method must be an adapters Method with .attribute(model, x, target), got {method!r}")
    return method


def explain_pairs(method: Any, model: nn.Module, classes: Tensor, n_samples: int, build: Build, read: Read,
                  chunk_rows: int) -> Tensor:
    """Explain every (image, sample) row and keep ``read``'s values: (N, S) or (N, S, F).

    Rows are enumerated image-major, ``chunk_rows`` per ``method.attribute`` call, each explained
    for its image's class in ``classes`` (N,)."""
    total = classes.shape[0] * n_samples
    out: Tensor | None = None
    for start in range(0, total, chunk_rows):
        rows = torch.arange(start, min(start + chunk_rows, total), device=classes.device)
        images, samples = rows // n_samples, rows % n_samples
        inputs = build(images, samples)
        with torch.enable_grad():  # gradient methods need it, whatever the caller's mode
            maps = method.attribute(model, inputs, classes[images])
        values = read(inputs, check_attributions(maps, inputs).detach(), images, samples)
        if out is None:
            out = values.new_empty((total, *values.shape[1:]))
        out[start:start + rows.numel()] = values
    assert out is not None
    return out.view(classes.shape[0], n_samples, *out.shape[1:])


def _prepare(model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor, method: Any,
             device_budget_bytes: int | None, target_class: str) -> tuple[Tensor, Tensor, Tensor, int]:
    """Checked attributions, clean logits, classes and the rows per explanation call."""
    target = check_model_inputs(model, x, target)
    attributions = check_attributions(attributions, x)
    check_method(method)
    chunk = explain_rows_per_chunk(model, x, device_budget_bytes)
    logits = clean_logits(model, x, chunk)
    return attributions, logits, score_classes(logits, target, target_class), chunk


def _flat_norm(values: Tensor, p: str | float = "fro") -> Tensor:
    return torch.norm(values.flatten(1).double(), p=p, dim=1)


def max_normalised(maps: Tensor) -> Tensor:
    """Each map (M, 1, H, W) divided by its own maximum absolute value (a zero map stays zero)."""
    peak = maps.abs().flatten(1).amax(1).view(-1, 1, 1, 1)
    return maps / torch.where(peak > 0, peak, torch.ones_like(peak))


def _nanmax(values: Tensor) -> Tensor:
    """Max over the last axis ignoring NaN; NaN where every entry is NaN."""
    missing = torch.isnan(values)
    peak = torch.where(missing, torch.full_like(values, -torch.inf), values).amax(-1)
    return torch.where(missing.all(-1), torch.full_like(peak, float("nan")), peak)


_SENSITIVITY = {"n_samples": Int(10, low=1, high=MAX_SAMPLES), "radius": Float(0.02, low=0.0, open_low=True),
                "norm": Norm("fro"), "relative": Bool(True), "target_class": target_class_param("target")}


@register("avg_sensitivity", category="robustness", direction="lower", params=_SENSITIVITY, inputs=("method",))
def avg_sensitivity(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor, method: Any,
                    seed: int = 0, device_budget_bytes: int | None = None, n_samples: int = 10, radius: float = 0.02,
                    norm: str | float = "fro", relative: bool = True, target_class: str = "target") -> MetricResult:
    """Average sensitivity (Yeh et al. 2019): the mean over samples of ||a(x) - a(x + d)||, divided
    by ||a(x)|| when ``relative`` (Captum's and Quantus's convention; Yeh et al. use the absolute
    change: ``relative=False``), d ~ U(-radius, radius) per input value.

    The samples are those of the max ``sensitivity`` for the same seed, n_samples and radius (the
    same noise fields, :func:`metrics.scores.captum_scores.uniform_noise`), so on the same settings
    avg_sensitivity <= sensitivity. A zero map is divided by 1, as Captum does. Lower is better;
    scores (N,) >= 0, never NaN; extras ``sensitivities`` (N, n_samples).

    Quantus ``AvgSensitivity`` (relative, U(-0.2, 0.2), 200 samples, no normalisation by default)
    computes the same mean given the same noise. Cost: n_samples explanations per image, plus a
    forward pass that checks the clean logits.
    """
    attributions, _, classes, chunk = _prepare(model, x, target, attributions, method, device_budget_bytes,
                                               target_class)
    noise = uniform_noise(n_samples, tuple(x.shape[1:]), radius, seed).to(x.device)
    clean_norm = _flat_norm(attributions, norm)
    clean_norm = torch.where(clean_norm == 0, torch.ones_like(clean_norm), clean_norm) if relative \
        else torch.ones_like(clean_norm)

    def build(images: Tensor, samples: Tensor) -> Tensor:
        return x[images] + noise[samples]

    def read(_: Tensor, maps: Tensor, images: Tensor, __: Tensor) -> Tensor:
        return _flat_norm(attributions[images] - maps, norm) / clean_norm[images]

    values = explain_pairs(method, model, classes, n_samples, build, read, chunk)
    return MetricResult(scores=as_scores(values.mean(1)), extras={"sensitivities": values.float().cpu(),
                                                                 "classes": classes.cpu()})


def gaussian_noise(n_samples: int, shape: tuple[int, ...], std: float, seed: int) -> Tensor:
    """N(0, std^2) per input value, (S, C, H, W), drawn on the CPU from ``seed``."""
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    return float(std) * torch.randn((n_samples, *shape), generator=generator)


@register("local_lipschitz", category="robustness", direction="lower", inputs=("method",),
          params={"n_samples": Int(10, low=1, high=MAX_SAMPLES), "noise_std": Float(0.1, low=0.0, open_low=True),
                  "normalise": Bool(True), "target_class": target_class_param("target")})
def local_lipschitz(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor, method: Any,
                    seed: int = 0, device_budget_bytes: int | None = None, n_samples: int = 10, noise_std: float = 0.1,
                    normalise: bool = True, target_class: str = "target") -> MetricResult:
    """Local Lipschitz estimate (Alvarez-Melis & Jaakkola 2018): max over samples x' of
    ||a(x) - a(x')||_2 / ||x - x'||_2, x' = x + d, d ~ N(0, noise_std^2) per input value.

    The paper maximises over an epsilon-ball (by optimisation); sampling Gaussian neighbours is
    Quantus's estimate. With ``normalise`` each map, a(x) and every a(x'), is divided by its own
    maximum absolute value, so that methods with maps of different scales compare (Quantus divides
    by one maximum over the whole batch: a score then depends on the other images). Lower is
    better; scores (N,) >= 0, never NaN; extras ``ratios`` (N, n_samples).
    Cost: n_samples explanations per image, plus the clean forward pass.
    """
    attributions, _, classes, chunk = _prepare(model, x, target, attributions, method, device_budget_bytes,
                                               target_class)
    noise = gaussian_noise(n_samples, tuple(x.shape[1:]), noise_std, seed).to(x.device)
    reference = max_normalised(attributions) if normalise else attributions
    distances = _flat_norm(noise)

    def build(images: Tensor, samples: Tensor) -> Tensor:
        return x[images] + noise[samples]

    def read(_: Tensor, maps: Tensor, images: Tensor, samples: Tensor) -> Tensor:
        maps = max_normalised(maps) if normalise else maps
        return _flat_norm(reference[images] - maps) / distances[samples]

    values = explain_pairs(method, model, classes, n_samples, build, read, chunk)
    return MetricResult(scores=as_scores(values.amax(1)), extras={"ratios": values.float().cpu(),
                                                                 "classes": classes.cpu()})


def translated(x: Tensor, fill: Tensor, shifts: Tensor) -> Tensor:
    """Each row of ``x`` (M, C, H, W) moved right by ``shifts`` (M,) pixels (left when negative):
    out[..., j] = x[..., j - s], and ``fill``'s values where j - s falls outside the image."""
    width = x.shape[3]
    source = torch.arange(width, device=x.device).view(1, -1) - shifts.view(-1, 1)
    inside = ((source >= 0) & (source < width)).view(-1, 1, 1, width)
    index = source.clamp(0, width - 1).view(-1, 1, 1, width).expand_as(x)
    return torch.where(inside, x.gather(3, index), fill)


@register("continuity", category="robustness", direction="lower", inputs=("method",),
          params={"max_shift": Int(4, low=1, high=1024), "substrate": Substrate("zeros", SUBSTRATES),
                  "normalise": Bool(True), "target_class": target_class_param("target")})
def continuity(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor, method: Any,
               seed: int = 0, device_budget_bytes: int | None = None, max_shift: int = 4,
               substrate: str | Tensor = "zeros", normalise: bool = True, target_class: str = "target") -> MetricResult:
    """Explanation continuity (Montavon et al. 2018): the strongest variation of the map under small
    translations of the input, max_s ||a(x) - a(x_s)||_1 / ||x - x_s||_2.

    x_s: x moved horizontally by s pixels, s = -max_shift..-1, 1..max_shift (Montavon et al. translate
    the input horizontally), the columns it leaves filled from ``substrate``. With ``normalise`` each
    map is divided by its own maximum absolute value (see ``local_lipschitz``). A shift that does not
    change x (a row-constant image) is left out; NaN ("no score") if every shift is. Lower is
    better; scores (N,) >= 0; extras ``ratios`` (N, 2 * max_shift) and ``shifts``.

    Quantus ``Continuity`` recomputes a(x) (it ignores the map it is given), translates by
    -W + k * floor((2W + 1) / nr_steps) pixels, k = 1..nr_steps (up to the full width, one of
    them a zero shift divided by 1e-9), fills with the image minimum and normalises by a batch-wide
    maximum. Cost: 2 * max_shift explanations per image, plus the clean forward pass.
    """
    attributions, _, classes, chunk = _prepare(model, x, target, attributions, method, device_budget_bytes,
                                               target_class)
    if max_shift >= x.shape[3]:
        raise MetricInputError(f"max_shift ({max_shift}) must be smaller than the image width ({x.shape[3]})")
    shifts = torch.cat([torch.arange(-max_shift, 0), torch.arange(1, max_shift + 1)]).to(x.device)
    fill = make_substrate(x, substrate, BLUR["blur_kernel"].default, BLUR["blur_sigma"].default)
    reference = max_normalised(attributions) if normalise else attributions

    def build(images: Tensor, samples: Tensor) -> Tensor:
        return translated(x[images], fill[images], shifts[samples])

    def read(inputs: Tensor, maps: Tensor, images: Tensor, _: Tensor) -> Tensor:
        maps = max_normalised(maps) if normalise else maps
        distance = _flat_norm(x[images] - inputs)
        ratio = _flat_norm(reference[images] - maps, 1) / distance
        return torch.where(distance > 0, ratio, torch.full_like(ratio, float("nan")))

    values = explain_pairs(method, model, classes, shifts.numel(), build, read, chunk)
    return MetricResult(scores=as_scores(_nanmax(values)), extras={"ratios": values.float().cpu(),
                                                                  "shifts": shifts.cpu(), "classes": classes.cpu()})


def penultimate_module(model: nn.Module, x: Tensor) -> tuple[str, nn.Module]:
    """The last leaf module, in execution order, that returns the logits (1, K) for the probe's image
    and runs once: its *input* is the representation the classifier reads (the features a ResNet's
    or a ViT's ``fc``/``head`` maps to logits)."""
    found = probe(model, x)
    logits_shape = (1, found.n_classes)
    for call in reversed(found.order):
        if call.output_shape == logits_shape and call.calls == 1:
            module = model.get_submodule(call.name)
            if not any(True for _ in module.children()):
                return call.name, module
    raise MetricInputError("found no leaf module that returns the logits (N, K) once per forward pass; "
                           "pass layer='<module name>' for the representation")


@contextlib.contextmanager
def captured(module: nn.Module, name: str, use_input: bool) -> Iterator[list[Tensor]]:
    """Collect the input (``use_input``) or the output of ``module`` of every forward pass run inside
    the block, flattened to (M, D); the hook is removed on leaving, whatever happens."""
    seen: list[Tensor] = []

    def hook(_: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        value = inputs[0] if use_input and inputs else output
        if not isinstance(value, Tensor):
            raise MetricInputError(f"layer {name!r} gives {type(value).__name__}, not a tensor: pass another layer=")
        seen.append(value.detach().flatten(1).double())

    handle = module.register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def _relative(difference: Tensor, reference: Tensor, eps_min: float) -> Tensor:
    """||difference / reference||_2 per row, entries of ``reference`` that are 0 replaced by eps_min."""
    reference = reference.flatten(1).double()
    safe = torch.where(reference == 0, torch.full_like(reference, eps_min), reference)
    return torch.norm(difference.flatten(1).double() / safe, dim=1)


# radius 0.1, not sensitivity's 0.02: the output stability divides by a difference of logits, which at
# 0.02 is small enough (~1e-3 on the test CNN) for float32 forwards of different batch shapes to move
# the score by ~4e-4 relative; at 0.1, by ~4e-5. Quantus draws shifts of 0.02 to 0.2.
_STABILITY = {"n_samples": Int(10, low=1, high=MAX_SAMPLES), "radius": Float(0.1, low=0.0, open_low=True),
              "eps_min": Float(1e-6, low=0.0, open_low=True), "target_class": target_class_param("target")}


def relative_stability(kind: str, *, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor,
                       method: Any, seed: int, device_budget_bytes: int | None, n_samples: int, radius: float,
                       eps_min: float, target_class: str, layer: str | None = None) -> MetricResult:
    """RIS, ROS or RRS (``kind`` "input", "output", "representation"); see the registered functions."""
    attributions, logits, classes, chunk = _prepare(model, x, target, attributions, method, device_budget_bytes,
                                                    target_class)
    predicted = logits.argmax(1)
    noise = uniform_noise(n_samples, tuple(x.shape[1:]), radius, seed).to(x.device)
    if kind == "representation":
        if layer is None:
            name, module = penultimate_module(model, x)
        else:
            name, module = layer, _submodule(model, layer)
        use_input = layer is None
        with captured(module, name, use_input) as seen:
            forward_chunked(model, x, chunk)
        clean_representation = torch.cat(seen)

    def read(inputs: Tensor, maps: Tensor, images: Tensor, _: Tensor) -> Tensor:
        if kind == "representation":
            with captured(module, name, use_input) as seen, torch.no_grad():
                perturbed_logits = model(inputs)
            reference = clean_representation[images]
            denominator = _relative(reference - torch.cat(seen), reference, eps_min)
        else:
            with torch.no_grad():
                perturbed_logits = model(inputs)
            if kind == "input":
                denominator = _relative(x[images] - inputs, x[images], eps_min)
            else:
                denominator = torch.norm((logits[images] - perturbed_logits).double(), dim=1)
        numerator = _relative(attributions[images] - maps, attributions[images], eps_min)
        ratio = numerator / denominator.clamp_min(eps_min)
        same = perturbed_logits.argmax(1) == predicted[images]
        return torch.where(same, ratio, torch.full_like(ratio, float("nan")))

    values = explain_pairs(method, model, classes, n_samples, lambda i, s: x[i] + noise[s], read, chunk)
    extras = {"ratios": values.float().cpu(), "n_kept": (~torch.isnan(values)).sum(1).cpu(), "classes": classes.cpu()}
    if kind == "representation":
        extras["layer"] = name
    return MetricResult(scores=as_scores(_nanmax(values)), extras=extras)


def _submodule(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        available = [n for n, _ in model.named_modules() if n][:12]
        raise MetricInputError(f"the model has no layer {name!r}; module names look like {available}") from None


_STABILITY_DOC = """

    Agarwal et al. 2022 (eqs. 2-4): the max over neighbours x' = x + d, d ~ U(-radius, radius) per
    input value (the sampler of ``sensitivity``, radius 0.1 by default), *that keep the clean prediction*, of
    ||(a(x) - a(x')) / a(x)||_2 / max(D, eps_min), the division by a(x) element-wise (entries of
    a(x) that are 0 divided by eps_min, as Quantus does). Lower is better; scores (N,) >= 0, NaN
    ("no score") when every neighbour changes the prediction; extras ``ratios`` (N, n_samples; NaN
    for a neighbour left out) and ``n_kept`` (N,).

    Quantus returns NaN for the whole image as soon as one of its 200 neighbours changes the
    prediction (``return_nan_when_prediction_changes=True``; the paper restricts the max to the
    neighbours that keep it), draws U(0.02, 0.2) (a one-sided shift) and divides by D + eps only
    when D is exactly 0. Cost: n_samples explanations and forward passes per image, plus the clean pass.
    """


def _documented(first: str, denominator: str) -> Callable[[Callable[..., MetricResult]], Callable[..., MetricResult]]:
    """Give a relative stability its docstring (before ``register`` reads its first line)."""
    def decorate(fn: Callable[..., MetricResult]) -> Callable[..., MetricResult]:
        fn.__doc__ = f"{first}\n\n    D = {denominator}." + _STABILITY_DOC
        return fn

    return decorate


@register("relative_input_stability", category="robustness", direction="lower", params=_STABILITY,
          inputs=("method",))
@_documented("Relative input stability (Agarwal et al. 2022): the relative change of the map over the relative "
             "change of the input.", "||(x - x') / x||_2, element-wise (entries of x that are 0 divided by eps_min)")
def relative_input_stability(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor, method: Any,
                             seed: int = 0, device_budget_bytes: int | None = None, n_samples: int = 10,
                             radius: float = 0.1, eps_min: float = 1e-6, target_class: str = "target") -> MetricResult:
    return relative_stability("input", model=model, x=x, target=target, attributions=attributions, method=method,
                              seed=seed, device_budget_bytes=device_budget_bytes, n_samples=n_samples, radius=radius,
                              eps_min=eps_min, target_class=target_class)


@register("relative_output_stability", category="robustness", direction="lower", params=_STABILITY,
          inputs=("method",))
@_documented("Relative output stability (Agarwal et al. 2022): the relative change of the map over the change "
             "of the logits.", "||h(x) - h(x')||_2, h the logits")
def relative_output_stability(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor, method: Any,
                              seed: int = 0, device_budget_bytes: int | None = None, n_samples: int = 10,
                              radius: float = 0.1, eps_min: float = 1e-6, target_class: str = "target") -> MetricResult:
    return relative_stability("output", model=model, x=x, target=target, attributions=attributions, method=method,
                              seed=seed, device_budget_bytes=device_budget_bytes, n_samples=n_samples, radius=radius,
                              eps_min=eps_min, target_class=target_class)


@register("relative_representation_stability", category="robustness", direction="lower",
          params={**_STABILITY, "layer": LayerName(None)}, inputs=("method",))
@_documented("Relative representation stability (Agarwal et al. 2022): the relative change of the map over the "
             "relative change of an internal representation.",
             "||(L(x) - L(x')) / L(x)||_2, element-wise. L: the output of module ``layer``; by default the input "
             "of the last leaf module that returns the logits (the penultimate representation, e.g. a ResNet's "
             "pooled features or a ViT's class token, found from the model's module calls: "
             ":func:`penultimate_module`). Quantus concatenates the outputs of every module unless layers are "
             "named. extras ``layer`` names the module used")
def relative_representation_stability(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor,
                                      method: Any, seed: int = 0, device_budget_bytes: int | None = None,
                                      n_samples: int = 10, radius: float = 0.1, eps_min: float = 1e-6,
                                      target_class: str = "target", layer: str | None = None) -> MetricResult:
    return relative_stability("representation", model=model, x=x, target=target, attributions=attributions,
                              method=method, seed=seed, device_budget_bytes=device_budget_bytes, n_samples=n_samples,
                              radius=radius, eps_min=eps_min, target_class=target_class, layer=layer)
