"""Sanity checks on token models: cascading randomisation of the encoder (Adebayo et al. 2018) and
the random-logit check (Sixt et al. 2020), with the similarity measured over tokens.

The re-initialisation is :mod:`metrics.randomisation` (the same seeded ``reset_parameters`` and
exact restoration as for images) over the spec's blocks, from the logits down: for the zoo's BERT
classifier, pooler, the encoder layers last first, embeddings (LayerNorm reset to weight 1, bias
0). Similarity: Spearman correlation of the absolute maps over each sentence's editable tokens
(:func:`metrics.tokens.sentence_spearman`); image measures (SSIM, HOG) have no meaning on a token
sequence. Lower is better (the map depends on what the model learnt); the random control is the
floor. Stochastic methods are re-seeded for every new explanation pass, as in the image checks.
"""
from __future__ import annotations

from contextlib import closing
from typing import Any

import torch
from torch import Tensor, nn

from adapters.seeding import image_seeds

from .. import randomisation
from ..params import SEED, Bool, Choice, OrNone
from ..registry import MetricResult, as_scores, register
from ..tokens import check_token_inputs, sentence_spearman
from ..validation import check_logits


def _draw(method: Any, k: int, reseed: bool) -> Any:
    params = getattr(method, "params", {})
    if not reseed or not getattr(method, "stochastic", False) or not isinstance(params.get("seed"), int):
        return method
    return type(method)(**{**params, "seed": params["seed"] + k})


@register("token_randomisation_cascading", category="sanity", direction="lower", inputs=("method", "blocks"),
          params={"seed": OrNone(SEED), "summary": Choice("mean", ("mean", "last")), "reseed_stochastic": Bool(True)},
          bounds=(-1.0, 1.0), modalities=("text",))
def token_randomisation_cascading(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor | None,
                                  method: Any, blocks: randomisation.Blocks, seed: int | None = 0,
                                  summary: str = "mean", reseed_stochastic: bool = True, **_: Any) -> MetricResult:
    """Spearman (N,) of |map| before and after re-initialising blocks cumulatively from the logits
    down, averaged over the steps (``summary="mean"``) or after the last (``"last"``); curves (N, B)."""
    original = method.attribute(model, x, target) if attributions is None else attributions
    target, original = check_token_inputs(model, x, target, original)
    randomisation.check_blocks(model, blocks)
    names, rows, errors = [], [], {}
    steps = randomisation.randomisation_steps(model, blocks, mode="cascading", order="top_down",
                                              seed=0 if seed is None else seed, batchnorm="reset")
    with closing(steps):
        for name, randomised in steps:
            names.append(name)
            try:
                maps = _draw(method, len(names), reseed_stochastic).attribute(randomised, x, target)
                rows.append(sentence_spearman(model, x, original, maps))
            except Exception as exc:  # noqa: BLE001 - a failing block is data; the other steps go on
                errors[name] = f"{type(exc).__name__}: {exc}"
                rows.append(torch.full((x.shape[0],), float("nan"), dtype=torch.float64, device=x.device))
    curves = torch.stack(rows, dim=1)
    scores = curves.nanmean(dim=1) if summary == "mean" else curves[:, -1]
    return MetricResult(scores=as_scores(scores), curves=as_scores(curves),
                        curve_x=torch.arange(1, len(names) + 1, dtype=torch.float32),
                        extras={"block_names": names, "errors": errors})


@register("token_random_logit", category="sanity", direction="lower", inputs=("method",),
          params={"seed": OrNone(SEED), "reseed_stochastic": Bool(True)}, bounds=(-1.0, 1.0), modalities=("text",))
def token_random_logit(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor | None, method: Any,
                       seed: int | None = 0, reseed_stochastic: bool = True, **_: Any) -> MetricResult:
    """Spearman (N,) of |map| for the target and for another class drawn per sentence from ``seed``
    and the sentence's ids ((target + u) mod K, u in 1..K-1); ``extras["other_class"]``."""
    original = method.attribute(model, x, target) if attributions is None else attributions
    target, original = check_token_inputs(model, x, target, original)
    with torch.no_grad():
        n_classes = check_logits(model(x[:1])).shape[1]
    if n_classes < 2:
        raise ValueError(f"token_random_logit needs at least 2 classes, the model has {n_classes}")
    offset = torch.tensor([1 + s % (n_classes - 1) for s in image_seeds(x, 0 if seed is None else seed)],
                          device=x.device)
    other = (target + offset) % n_classes
    maps = _draw(method, 1, reseed_stochastic).attribute(model, x, other)
    return MetricResult(scores=as_scores(sentence_spearman(model, x, original, maps)),
                        extras={"other_class": other.cpu()})
