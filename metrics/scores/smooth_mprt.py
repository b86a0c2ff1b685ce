"""Smooth MPRT (Hedstrom et al. 2023): the cascading randomisation check on denoised explanations.

Every explanation, of the trained model and of each randomised one, is replaced by its average over
``n_samples`` noisy copies of the input, the last copy noise-free (as Quantus): the noise a method
itself adds to its maps (gradient shattering) then no longer makes a map look "changed" by the
randomisation. Everything else is :func:`metrics.scores.sanity.model_randomisation_cascading`:
blocks from the model spec, seeded re-initialisation, the same similarity measures, NaN for a block
the method fails on, the model restored exactly.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from adapters.seeding import generator, image_seeds

from .. import randomisation
from ..params import Bool, Choice, Float, Int
from ..perturb import rows_per_chunk
from ..registry import MetricResult, register
from ..validation import check_attributions, check_model_inputs
from .sanity import _RANDOMISATION, SIMILARITY_BOUNDS, _draw, _randomisation_check

# Every sample is one more explanation of every image at every block (Quantus' 50 samples of
# ResNet-50's 107 modules: 5,400 explanations per image); 1024 is 20x the paper's 50. Noise past
# 10x the image's own range drowns the image.
_PARAMS = {**_RANDOMISATION, "order": Choice("bottom_up", randomisation.ORDERS),
           "n_samples": Int(50, low=1, high=1024), "noise_magnitude": Float(0.1, low=0.0, high=10.0),
           "summary": Choice("mean", ("mean", "last")), "keep_maps": Bool(False)}


def noise_stds(x: Tensor, noise_magnitude: float) -> Tensor:
    """The noise standard deviation of each image of ``x`` (N, C, H, W): ``noise_magnitude`` times the
    image's range, max - min over all its values (Quantus' ``noise_magnitude * (max - min)``), (N,)."""
    flat = x.detach().flatten(1)
    return noise_magnitude * (flat.amax(1) - flat.amin(1))


def noisy_copies(x_i: Tensor, n_samples: int, std: float, seed: int) -> Tensor:
    """The ``n_samples`` inputs whose maps are averaged for one image ``x_i`` (C, H, W):
    ``x_i + N(0, std^2)`` per value for the first ``n_samples - 1``, then ``x_i`` itself; the noise is
    drawn on ``x_i``'s device from a generator seeded with ``seed``. (n_samples, C, H, W)."""
    noise = torch.randn((n_samples - 1, *x_i.shape), generator=generator(seed, x_i.device), device=x_i.device,
                        dtype=x_i.dtype)
    return torch.cat([x_i + std * noise, x_i[None]])


class SmoothedMethod:
    """Stands in for the method in the randomisation check: its ``attribute`` returns the method's maps
    averaged over :func:`noisy_copies` of each image.

    The noise of image i depends only on ``seed`` and the image's bytes (``adapters.seeding``), and is
    the same in every pass: the trained and every randomised model see the same noisy copies, so
    their maps differ by the model only (and a model-independent map stays exactly the same). Pass k
    (0 = the trained model) explains with :func:`metrics.scores.sanity._draw`'s method for k, i.e. a
    stochastic method gets seed + k, as in the other sanity checks. ``clean_maps`` (the caller's map
    of the clean images on the trained model) stand in for pass 0's noise-free copy.
    """

    stochastic = False

    def __init__(self, method: Any, x: Tensor, *, n_samples: int, noise_magnitude: float, seed: int,
                 reseed_stochastic: bool, rows: int, clean_maps: Tensor | None = None) -> None:
        self.method, self.n_samples, self.reseed, self.rows = method, n_samples, reseed_stochastic, max(1, rows)
        self.seeds = image_seeds(x, seed)
        self.stds = noise_stds(x, noise_magnitude).tolist()
        self.clean_maps = clean_maps
        self.passes = 0
        self.first_maps: Tensor | None = None

    def attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        inner = _draw(self.method, self.passes, self.reseed)
        reuse_clean = self.passes == 0 and self.clean_maps is not None
        self.passes += 1
        n, s = x.shape[0], self.n_samples
        drawn = s - 1 if reuse_clean else s  # rows explained per image
        group = max(1, self.rows // max(drawn, 1))
        sums = []
        for start in range(0, n, group):
            images = range(start, min(start + group, n))
            if drawn == 0:
                sums.append(torch.zeros_like(self.clean_maps[start:start + len(images)], dtype=torch.float64))
                continue
            rows = torch.cat([noisy_copies(x[i], s, self.stds[i], self.seeds[i])[:drawn] for i in images])
            targets = target[start:start + len(images)].repeat_interleave(drawn)
            maps = torch.cat([inner.attribute(model, rows[j:j + self.rows], targets[j:j + self.rows])
                              for j in range(0, rows.shape[0], self.rows)])
            sums.append(maps.double().view(len(images), drawn, *maps.shape[1:]).sum(1))
        total = torch.cat(sums)
        if reuse_clean:
            total = total + self.clean_maps.double()
        smoothed = (total / s).float()
        if self.first_maps is None:
            self.first_maps = smoothed
        return smoothed


@register("smooth_mprt", category="sanity", direction="lower", params=_PARAMS, inputs=("method", "blocks"),
          bounds=SIMILARITY_BOUNDS)
def smooth_mprt(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor | None = None,
                method: Any, blocks: randomisation.Blocks, order: str = "bottom_up", seed: int | None = 0,
                batchnorm: str = "reset", measure: str = "spearman_abs", hog_cell: int = 16,
                reseed_stochastic: bool = True, n_samples: int = 50, noise_magnitude: float = 0.1,
                summary: str = "mean", keep_maps: bool = False, device_budget_bytes: int | None = None,
                **_: Any) -> MetricResult:
    """sMPRT (Hedstrom et al. 2023): cascading model-parameter randomisation where every map is the
    mean of the method's maps of ``n_samples`` copies of the image, ``n_samples - 1`` with Gaussian
    noise of std ``noise_magnitude * (max(x_i) - min(x_i))`` per value and the last noise-free
    (``n_samples=1`` or ``noise_magnitude=0`` is plain MPRT). Lower similarity = the method passes.

    Blocks are randomised cumulatively in ``order``, default ``"bottom_up"`` (from the input, the
    order the paper recommends; the other sanity checks default to the paper of Adebayo et al.'s
    top-down). ``curves`` (N, B): similarity (``measure``, default ``spearman_abs``) of the smoothed map
    after 1..B randomised blocks to the smoothed map of the trained model; ``scores`` (N,) their mean
    (``summary="mean"``) or the last step (``"last"``); ``extras`` as the cascading check
    (``curves_<measure>``, ``block_names``, ``errors``, ``final``), with ``keep_maps`` the smoothed
    maps (N, B, H, W) and ``original_maps`` (N, H, W). The noise depends on ``seed`` and each image
    only, and is shared by every model (see :class:`SmoothedMethod`); ``seed`` also seeds the
    re-initialisation, as in the cascading check. ``attributions``, the method's maps of the clean
    images on the trained model, serve as that model's noise-free copy (None: computed here).
    Cost: ``n_samples`` explanations per image per block, plus ``n_samples - 1`` for the trained model.

    What differs from Quantus' ``SmoothMPRT``: it smooths through ``quantus.explain`` whatever
    ``explain_func`` it is given; a supplied ``a_batch`` is compared unsmoothed with smoothed maps;
    its noise comes from NumPy's global generator, fresh for every layer (so a model-independent map
    scores below 1); it re-initialises every module with ``reset_parameters`` under the same
    ``torch.manual_seed(seed + 1)`` rather than whole blocks; it compares by plain Spearman of |a|
    (here the measures of the sanity checks, ``spearman_abs`` clipping at the 99th percentile as
    Adebayo et al.), and its average over layers includes the "original" entry.
    """
    target = check_model_inputs(model, x, target)
    randomisation.check_options(mode="cascading", order=order, batchnorm=batchnorm)
    randomisation.check_blocks(model, blocks)  # before any explanation is spent
    clean = None if attributions is None else check_attributions(attributions, x)
    seed = 0 if seed is None else seed
    smoother = SmoothedMethod(method, x, n_samples=n_samples, noise_magnitude=noise_magnitude, seed=seed,
                              reseed_stochastic=reseed_stochastic, rows=rows_per_chunk(model, x, device_budget_bytes),
                              clean_maps=clean)
    curves, extras = _randomisation_check(mode="cascading", model=model, x=x, target=target, attributions=None,
                                          method=smoother, blocks=blocks, order=order, seed=seed, batchnorm=batchnorm,
                                          measure=measure, hog_cell=hog_cell, reseed_stochastic=False,
                                          keep_maps=keep_maps)
    extras["final"] = curves[:, -1].clone()
    if keep_maps:
        extras["original_maps"] = smoother.first_maps[:, 0].detach().cpu()
    extras.update(n_samples=n_samples, noise_std=torch.tensor(smoother.stds))
    scores = curves.mean(dim=1) if summary == "mean" else curves[:, -1].clone()
    return MetricResult(scores=scores, curves=curves,
                        curve_x=torch.arange(1, curves.shape[1] + 1, dtype=torch.float32), extras=extras)
