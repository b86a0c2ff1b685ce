"""Sanity checks (Adebayo et al. 2018) and their cheap complements, as registered metrics.

All of them re-explain with the ``method`` they are given (an adapters ``Method``) and compare the
new maps with ``attributions``, the maps of the trained model, which are computed once by the
caller and reused here (computed here only when ``None`` is passed). Lower similarity means the
method *passes*: its maps depend on what the model learnt. A noise map passes trivially (Binder
et al. 2023), which is why the report shows the random control next to the methods.

Similarity measures are those of :mod:`metrics.similarity`; ``measure`` picks the one that fills
``scores`` and ``curves``, and ``extras["curves_<measure>"]`` holds all four. When the method fails
on a randomised model, that step is NaN and ``extras["errors"]`` maps the block to the message;
the other steps are kept. Constant maps give NaN (see :mod:`metrics.similarity`).

Stochastic methods (``method.stochastic``, with a ``seed`` parameter) are re-seeded for every new
explanation pass (``seed + k`` for pass k) when ``reseed_stochastic`` is True, the default: every
reference implementation draws fresh noise each time it explains, and the adapters' noise is a
function of (seed, image) only, so without a fresh seed a pure-noise map would be exactly
model-independent and "fail" like the edge detector, hiding the floor Binder et al. describe.
"""
from __future__ import annotations

from contextlib import closing
from typing import Any

import torch
from torch import Tensor, nn

from .. import randomisation, similarity
from ..params import SEED, Bool, Choice, Int, OrNone
from ..registry import MetricResult, as_scores, register
from ..validation import check_logits
from adapters.seeding import image_seeds


def _measure(default: str) -> Choice:
    return Choice(default, similarity.MEASURES)


# HOG needs 3 cells per map side (checked against the maps at run time): 1024 px cells need maps of
# 3072 px.
_COMMON = {"measure": _measure("spearman_abs"), "hog_cell": Int(16, low=1, high=1024),
           "reseed_stochastic": Bool(True)}
_SEED = OrNone(SEED)  # None means 0
_BATCHNORM = Choice("reset", randomisation.BATCHNORM_MODES)
_RANDOMISATION = {"order": Choice("top_down", randomisation.ORDERS), "seed": _SEED, "batchnorm": _BATCHNORM,
                  **_COMMON}


def _targets(target: Tensor | int | list[int], x: Tensor) -> Tensor:
    target = torch.as_tensor(target, dtype=torch.long, device=x.device)
    return target.expand(x.shape[0]) if target.dim() == 0 else target


def _original_maps(method: Any, model: nn.Module, x: Tensor, target: Tensor, attributions: Tensor | None) -> Tensor:
    maps = method.attribute(model, x, target) if attributions is None else attributions
    if maps.dim() != 4 or maps.shape[0] != x.shape[0] or maps.shape[2:] != x.shape[2:]:
        raise ValueError(f"attributions must be (N, 1, H, W) matching x {tuple(x.shape)}, got {tuple(maps.shape)}")
    return maps


def _draw(method: Any, k: int, reseed: bool) -> Any:
    """The method for the k-th new explanation pass: a fresh seed for a stochastic method (see module doc)."""
    params = getattr(method, "params", {})
    if not reseed or not getattr(method, "stochastic", False) or not isinstance(params.get("seed"), int):
        return method
    return type(method)(**{**params, "seed": params["seed"] + k})


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _randomisation_check(*, mode: str, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor | None,
                         method: Any, blocks: randomisation.Blocks, order: str, seed: int | None, batchnorm: str,
                         measure: str, hog_cell: int, reseed_stochastic: bool,
                         keep_maps: bool = False) -> tuple[Tensor, dict[str, Any]]:
    """Run the steps; return the primary curves (N, B) and the extras."""
    seed = 0 if seed is None else seed
    target = _targets(target, x)
    # clear errors before any explanation is spent
    randomisation.check_options(mode=mode, order=order, batchnorm=batchnorm)
    randomisation.check_blocks(model, blocks)
    original = _original_maps(method, model, x, target, attributions)
    reference = similarity.map_features(original, similarity.MEASURES, hog_cell)
    steps = randomisation.randomisation_steps(model, blocks, mode=mode, order=order, seed=seed, batchnorm=batchnorm)
    names: list[str] = []
    rows: dict[str, list[Tensor]] = {m: [] for m in similarity.MEASURES}
    errors: dict[str, str] = {}
    kept: list[Tensor] = []
    nan = torch.full((x.shape[0],), float("nan"), dtype=torch.float64, device=x.device)
    with closing(steps):  # closing the generator restores the weights, even if a step raises
        for name, randomised_model in steps:
            names.append(name)
            try:
                maps = _draw(method, len(names), reseed_stochastic).attribute(randomised_model, x, target)
                found = similarity.compare(reference, similarity.map_features(maps, similarity.MEASURES, hog_cell))
            except Exception as exc:  # noqa: BLE001 - a failing block is data, the rest of the check goes on
                errors[name] = _error(exc)
                maps, found = None, {m: nan for m in similarity.MEASURES}
            for m in similarity.MEASURES:
                rows[m].append(found[m])
            if keep_maps:
                kept.append(torch.full_like(original[:, 0], float("nan")) if maps is None else maps[:, 0].detach())
    curves = {m: as_scores(torch.stack(rows[m], dim=1)) for m in similarity.MEASURES}
    extras: dict[str, Any] = {f"curves_{m}": curves[m] for m in similarity.MEASURES}
    # original_valid: False where the trained model's map is constant (every similarity NaN)
    extras.update(block_names=names, errors=errors, measure=measure, mode=mode, order=order,
                  original_valid=reference.valid.cpu())
    if keep_maps:
        extras["maps"] = as_scores(torch.stack(kept, dim=1))  # (N, B, H, W)
    return curves[measure], extras


# Every similarity measure (Spearman, SSIM, HOG correlation) lies in [-1, 1]; so do their means.
SIMILARITY_BOUNDS = (-1.0, 1.0)

@register("model_randomisation_cascading", category="sanity", direction="lower",
          params={**_RANDOMISATION, "summary": Choice("mean", ("mean", "last")), "keep_maps": Bool(False)},
          inputs=("method", "blocks"), bounds=SIMILARITY_BOUNDS)
def model_randomisation_cascading(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor | None = None,
                                  method: Any, blocks: randomisation.Blocks, order: str = "top_down", seed: int | None = 0,
                                  batchnorm: str = "reset", measure: str = "spearman_abs", hog_cell: int = 16,
                                  reseed_stochastic: bool = True, summary: str = "mean", keep_maps: bool = False,
                                  **_: Any) -> MetricResult:
    """Cascading model-parameter randomisation: similarity to the original map after each block.

    Blocks are re-initialised cumulatively in ``order`` (``top_down``: from the logits, as the
    paper). ``curves`` (N, B): similarity after 1..B randomised blocks (``curve_x``), for
    ``measure``. ``scores`` (N,), per ``summary``: ``"mean"`` (default) the mean over the B steps,
    i.e. the normalised area under the paper's curve, which is high for a method that stays
    similar while the top blocks are randomised (Guided Backprop) even if it decays at the bottom;
    ``"last"`` the similarity once every block is randomised (Quantus' return_last_correlation).
    Failed steps are NaN and make the score NaN. ``extras["final"]`` (N,) is always the last step.
    Cost: one explanation pass per block (plus one for the original maps when ``attributions`` is
    None). ``keep_maps`` adds ``extras["maps"]`` (N, B, H, W).
    """
    curves, extras = _randomisation_check(mode="cascading", model=model, x=x, target=target, attributions=attributions,
                                          method=method, blocks=blocks, order=order, seed=seed, batchnorm=batchnorm,
                                          measure=measure, hog_cell=hog_cell, reseed_stochastic=reseed_stochastic,
                                          keep_maps=keep_maps)
    extras["final"] = curves[:, -1].clone()
    scores = curves.mean(dim=1) if summary == "mean" else curves[:, -1].clone()
    return MetricResult(scores=scores, curves=curves,
                        curve_x=torch.arange(1, curves.shape[1] + 1, dtype=torch.float32), extras=extras)


@register("model_randomisation_independent", category="sanity", direction="lower",
          params=dict(_RANDOMISATION), inputs=("method", "blocks"), bounds=SIMILARITY_BOUNDS)
def model_randomisation_independent(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor | None = None,
                                    method: Any, blocks: randomisation.Blocks, order: str = "top_down", seed: int | None = 0,
                                    batchnorm: str = "reset", measure: str = "spearman_abs", hog_cell: int = 16,
                                    reseed_stochastic: bool = True, **_: Any) -> MetricResult:
    """Independent model-parameter randomisation: one block at a time, the others trained.

    ``curves`` (N, B): similarity with block k alone randomised (``curve_x`` = block index 1..B in
    ``order``; names in ``extras["block_names"]``). ``scores`` (N,): mean over the blocks that did not
    fail (a method blind to some blocks scores high). Cost: one explanation pass per block.
    """
    curves, extras = _randomisation_check(mode="independent", model=model, x=x, target=target, attributions=attributions,
                                          method=method, blocks=blocks, order=order, seed=seed, batchnorm=batchnorm,
                                          measure=measure, hog_cell=hog_cell, reseed_stochastic=reseed_stochastic)
    return MetricResult(scores=curves.nanmean(dim=1), curves=curves,
                        curve_x=torch.arange(1, curves.shape[1] + 1, dtype=torch.float32), extras=extras)


@register("data_randomisation", category="sanity", direction="lower", params=dict(_COMMON),
          inputs=("method", "random_label_model"), bounds=SIMILARITY_BOUNDS)
def data_randomisation(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor | None = None,
                       method: Any, random_label_model: nn.Module, measure: str = "spearman_abs", hog_cell: int = 16,
                       reseed_stochastic: bool = True, **_: Any) -> MetricResult:
    """Data randomisation: similarity (N,) between the maps of the trained model and those of the
    same architecture trained on shuffled labels, for the same images and target classes.

    ``extras[m]`` (N,) holds every measure. Cost: one explanation pass on ``random_label_model``.
    """
    target = _targets(target, x)
    original = _original_maps(method, model, x, target, attributions)
    maps = _draw(method, 1, reseed_stochastic).attribute(random_label_model, x, target)
    found = similarity.similarities(original, maps, similarity.MEASURES, hog_cell)
    extras: dict[str, Any] = {m: as_scores(v) for m, v in found.items()}
    extras["measure"] = measure
    return MetricResult(scores=as_scores(found[measure]), extras=extras)


def histogram_entropy(maps: Tensor, n_bins: int = 100) -> Tensor:
    """Shannon entropy (nats) of the histogram of each map's values, (N, ...) -> (N,).

    As ``scipy.stats.entropy(np.histogram(a, bins=n_bins)[0])`` (Quantus' ``discrete_entropy``):
    ``n_bins`` equal bins over [min, max] of the map, the last bin closed. A constant map puts
    everything in one bin: entropy 0.
    """
    values = maps.flatten(1).to(torch.float64)
    low = values.min(dim=1, keepdim=True).values
    span = values.max(dim=1, keepdim=True).values - low
    scaled = (values - low) / torch.where(span > 0, span, torch.ones_like(span)) * n_bins
    index = scaled.floor().long().clamp_(0, n_bins - 1)
    counts = torch.zeros(values.shape[0], n_bins, dtype=torch.float64, device=values.device)
    counts.scatter_add_(1, index, torch.ones_like(values))
    p = counts / values.shape[1]
    return -(p * torch.where(p > 0, p.log(), torch.zeros_like(p))).sum(dim=1)


# One bin makes every entropy 0 (every score NaN); 2**16 bins already outnumber the 50,176 pixels of
# a 224-px map, and every bin is a counter per image.
@register("empirical_mprt", category="sanity", direction="higher",
          params={"n_bins": Int(100, low=2, high=2**16), "seed": _SEED, "batchnorm": _BATCHNORM,
                  "reseed_stochastic": Bool(True)}, inputs=("method", "blocks"))
def empirical_mprt(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor | None = None,
                   method: Any, blocks: randomisation.Blocks, n_bins: int = 100, seed: int | None = 0,
                   batchnorm: str = "reset", reseed_stochastic: bool = True, **_: Any) -> MetricResult:
    """eMPRT (Hedstrom et al. 2023): relative rise in histogram entropy of the signed, unnormalised
    map from the trained to the fully randomised model, ``(H(a_random) - H(a)) / H(a)`` per image.

    Higher = the map turns noisier when the model forgets, i.e. it depended on the weights. NaN
    when the original map is constant (H = 0) or the method fails on the randomised model
    (``extras["errors"]``). Cost: one explanation pass (every block randomised at once).
    """
    randomisation.check_options(batchnorm=batchnorm)
    randomisation.check_blocks(model, blocks)  # before any explanation is spent
    target = _targets(target, x)
    original = _original_maps(method, model, x, target, attributions)
    h_original = histogram_entropy(original, n_bins)
    errors: dict[str, str] = {}
    with randomisation.randomised(model, blocks, seed=0 if seed is None else seed, batchnorm=batchnorm) as random_model:
        try:
            maps = _draw(method, 1, reseed_stochastic).attribute(random_model, x, target)
            h_random = histogram_entropy(maps, n_bins)
        except Exception as exc:  # noqa: BLE001 - reported as a NaN score with its message
            errors["all"] = _error(exc)
            h_random = torch.full_like(h_original, float("nan"))
    rise = (h_random - h_original) / h_original
    rise = torch.where(h_original > 0, rise, torch.full_like(rise, float("nan")))
    return MetricResult(scores=as_scores(rise), extras={"entropy_original": as_scores(h_original),
                                                        "entropy_randomised": as_scores(h_random), "errors": errors})


@register("random_logit", category="sanity", direction="lower",
          params={"seed": _SEED, "measure": _measure("ssim"), "hog_cell": _COMMON["hog_cell"],
                  "reseed_stochastic": Bool(True)}, inputs=("method",), bounds=SIMILARITY_BOUNDS)
def random_logit(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor | None = None,
                 method: Any, seed: int | None = 0, measure: str = "ssim", hog_cell: int = 16,
                 reseed_stochastic: bool = True, **_: Any) -> MetricResult:
    """Random-logit check (Sixt et al. 2020): similarity (N,) of the map for the target class and
    the map for a uniformly drawn other class (SSIM by default, as Quantus, but on the [0, 1]
    absolute maps of :mod:`metrics.similarity` with ``data_range=1`` rather than on batch-max
    normalised signed maps with the pair's own range).

    The other class is ``(target + u) mod K`` with u in 1..K-1 drawn per image from ``seed`` and the
    image's bytes (so it does not depend on the batch); ``extras["other_class"]`` (N,) records it. Cost: one forward pass (to read K) and one explanation pass.
    """
    target = _targets(target, x)
    original = _original_maps(method, model, x, target, attributions)
    with torch.no_grad():
        n_classes = check_logits(model(x[:1])).shape[1]
    if n_classes < 2:
        raise ValueError(f"random_logit needs at least 2 classes, the model has {n_classes}")
    # Per image, from the seed and the image itself: the draw never depends on the batch.
    per_image = image_seeds(x, 0 if seed is None else seed)
    offset = torch.tensor([1 + s % (n_classes - 1) for s in per_image], device=x.device)
    other = (target + offset) % n_classes
    maps = _draw(method, 1, reseed_stochastic).attribute(model, x, other)
    found = similarity.similarities(original, maps, similarity.MEASURES, hog_cell)
    extras: dict[str, Any] = {m: as_scores(v) for m, v in found.items()}
    extras.update(other_class=other.cpu(), measure=measure)
    return MetricResult(scores=as_scores(found[measure]), extras=extras)
