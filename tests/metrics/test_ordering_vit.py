"""On the zoo's ViT (vit_slim-synthetic, held-out shapes) the localisation scores order the maps:
oracle > attention rollout, transformer attribution, Grad-CAM on the last block's first norm >
random. Pairs that do not hold are listed in ``NOT_GUARANTEED`` with the measured numbers and the
reason, rather than asserted weakly: none today.

Measured on the 48 images (held-out accuracy 0.996): oracle / rollout / transformer attribution /
Grad-CAM / random: pointing game 1.0 / 0.938 / 0.958 / 0.625 / 0.146, relevance mass 1.0 / 0.195 /
0.397 / 0.230 / 0.068, relevance rank 1.0 / 0.535 / 0.575 / 0.294 / 0.068 (raw attention 0.917,
0.334, 0.584; saliency 0.938, 0.403, 0.548). Grad-CAM on the 8x8 token grid of the last block's
first norm is the coarsest of them, and its peak misses a third of the objects.
"""
from __future__ import annotations

from typing import Any

import pytest
import torch

import adapters
import metrics

pytestmark = pytest.mark.slow

N_IMAGES = 48
LOCALISATION = ["pointing_game", "relevance_mass", "relevance_rank"]
INFORMED = ["attention_rollout", "transformer_attribution", "gradcam"]
NOT_GUARANTEED: dict[tuple[str, str, str], str] = {}


@pytest.fixture(scope="module")
def vit_scores(zoo_vit: Any) -> dict[tuple[str, str], float]:
    assert zoo_vit.accuracy >= 0.95, "the orderings mean nothing on a model that has not learnt the shapes"
    model = zoo_vit.model
    x, y, masks = zoo_vit.batch(n=N_IMAGES, start=0)
    maps = {name: adapters.get(name).attribute(model, x, y) for name in INFORMED}
    maps["oracle"] = adapters.get("oracle").attribute(model, x, y, mask=masks)
    maps["random"] = adapters.get("random", seed=0).attribute(model, x, y)
    scores = {}
    for score in LOCALISATION:
        for name, attributions in maps.items():
            result = metrics.get(score).compute(model=model, x=x, target=y, attributions=attributions, mask=masks)
            scores[(score, name)] = result.summary()["mean"]
    return scores


PAIRS = [pytest.param(score, better, worse, id=f"{score}-{better}>{worse}") for score in LOCALISATION
         for better, worse in [("oracle", m) for m in INFORMED] + [(m, "random") for m in INFORMED]
         if (score, better, worse) not in NOT_GUARANTEED]


@pytest.mark.parametrize("score, better, worse", PAIRS)
def test_localisation_orders_oracle_attention_maps_random(vit_scores, score, better, worse):
    assert vit_scores[(score, better)] > vit_scores[(score, worse)], (
        f"{score}: {better} {vit_scores[(score, better)]:.3f} should beat {worse} {vit_scores[(score, worse)]:.3f}")
