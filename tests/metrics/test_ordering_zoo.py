"""The scores must order the controls on the embedded zoo (trained small CNNs, held-out images).

Averaged over held-out images, for each score (higher = better after the direction is applied), we
check the orderings that a sound score must give, on two zoo models:

- ``small_cnn-textures``: the class is the texture inside the object and the object's outline is
  random, so removing the object removes all the evidence and the object mask must beat the maps
  that have to find the object. Localisation, deletion, insertion, ROAD MoRF and LeRF: oracle mask > Grad-CAM,
  saliency > random map > inverted oracle, except the pairs in ``TEXTURE_NOT_GUARANTEED``.
- ``small_cnn-synthetic`` (the class is the shape): localisation gives the full order; removal
  scores give informed > random > inverted but cannot separate the mask from Grad-CAM or saliency
  (``SHAPE_NOT_GUARANTEED``): removing exactly the object leaves a hole in the object's outline,
  which still shows the shape (the leakage through the removal pattern of Rong et al. 2022), while
  Grad-CAM's blob erases the outline.

The oracle is the mask ordered from its centre out (the control's default, ``interior="depth"``).
With the flat mask the removal scores would take the object's pixels in their seeded tie-break
order, scattered over it, and a scattered third of a texture reads less well than Grad-CAM's
contiguous centre patch: on the 192 texture images here the flat mask loses to Grad-CAM on
insertion (0.954 vs 0.956) and only ties it on ROAD-LeRF (0.946 vs 0.943), where the ordered mask
wins (0.960, 0.969).

The pairs that do not hold on the textures, with the reasons measured there (192 images):

- deletion, oracle > saliency: the gradient's top pixels, scattered over the texture's edges, take
  the model off its data as fast as deleting the object (mean AUC 0.283 for saliency, 0.280 for the
  flat mask, 0.287 for the ordered one): the out-of-distribution effect that ROAD's imputation
  removes, and under ROAD-MoRF the mask beats saliency clearly (0.368 vs 0.420).
- pointing game, oracle > Grad-CAM: both are at the ceiling (1.0); Grad-CAM's peak falls inside
  every one of these large objects. Random > inverted: both hit by chance (0.125 and 0.104 here,
  0.11 and 0.11 on images 96-191 alone).

The weakest pair asserted is deletion, oracle > Grad-CAM: 0.287 vs 0.305, a paired difference of
0.017 with standard error 0.010 (positive on images 0-95 and 96-191 separately), hence 192 images.

On the shortcut model (the class is encoded by a corner watermark, and the model uses only that),
which methods "find the watermark" is decided without the mask, by faithfulness: deleting the map's
top 64 pixels (the watermark has 36) brings the prediction down to chance. The localisation scores
against the watermark mask must rank every such method above every method that does not.
"""
from __future__ import annotations

from typing import Any

import pytest
import torch

import adapters
import metrics
from metrics.ranking import rank_pixels

pytestmark = pytest.mark.slow

N_IMAGES = 24
N_TEXTURE_IMAGES = 192
REMOVAL = ["deletion", "insertion", "road_morf", "road_lerf"]
LOCALISATION = ["pointing_game", "relevance_mass", "relevance_rank"]
# Cheap but faithful protocols: fewer steps and fractions than the defaults, same definitions; the
# ROAD solver stops at a residual of 1e-4 (imputation error ~1e-3, a tenth of ROAD's own noise).
ROAD = {"fractions": [0.2, 0.5, 0.8], "solver_tol": 1e-4}
SETTINGS: dict[str, dict[str, Any]] = {"deletion": {"n_steps": 16}, "insertion": {"n_steps": 16},
                                       "road_morf": ROAD, "road_lerf": ROAD}
# The textured object covers 5-15 % of the image: ROAD's fractions are taken where the object's
# pixels are being removed (MoRF) or the last of them kept (LeRF). Beyond them every informed map
# has removed (kept) the whole object and every score sits at chance (at the clean probability).
TEXTURE_SETTINGS: dict[str, dict[str, Any]] = {
    **SETTINGS, "road_morf": {**ROAD, "fractions": [0.05, 0.1, 0.2]}, "road_lerf": {**ROAD, "fractions": [0.8, 0.9, 0.95]}}
SHAPE_LEAKAGE = ("not guaranteed on shapes: a hole in the object's outline still shows the shape (Rong et al. 2022); "
                 "Grad-CAM's blob erases it")
OUT_OF_DISTRIBUTION = "random scattered grey pixels destroy the image faster than an edge-first order"
GRADIENT_DELETION = "scattered gradient pixels take the model off its data as fast as deleting the object"
CEILING = "a tie at the ceiling: Grad-CAM's peak falls inside every one of the large textured objects"
CHANCE = "both point at random (about 0.1): the random map's peak is anywhere, the inverted mask's on the background"


def control_maps(zm: Any, x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor) -> dict[str, torch.Tensor]:
    model = zm.model
    oracle = adapters.get("oracle").attribute(model, x, y, mask=masks)
    return {
        "oracle": oracle,
        "gradcam": adapters.get("gradcam", layer=zm.gradcam_layer).attribute(model, x, y),
        "saliency": adapters.get("saliency").attribute(model, x, y),
        "random": adapters.get("random", seed=0).attribute(model, x, y),
        "inverted": 1.0 - (oracle > 0).float(),  # the background, flat: no evidence first
    }


def goodness(name: str, result: metrics.MetricResult) -> float:
    """Mean score over the images that have one, signed so that higher is better."""
    mean = result.summary()["mean"]
    return mean if metrics.get(name).direction == "higher" else -mean


class Scores:
    """Each (score, map) mean computed once, on first use, with the score's ``settings``."""

    def __init__(self, zm: Any, x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor,
                 settings: dict[str, dict[str, Any]]) -> None:
        self.zm, self.x, self.y, self.masks, self.settings = zm, x, y, masks, settings
        self.maps = control_maps(zm, x, y, masks)
        self.cache: dict[tuple[str, str], float] = {}

    def __call__(self, score: str, method: str) -> float:
        if (score, method) not in self.cache:
            spec = metrics.get(score)
            kwargs: dict[str, Any] = dict(model=self.zm.model, x=self.x, target=self.y,
                                          attributions=self.maps[method], **self.settings.get(score, {}))
            if "mask" in spec.inputs:
                kwargs["mask"] = self.masks
            self.cache[(score, method)] = goodness(score, spec.compute(**kwargs))
        return self.cache[(score, method)]


@pytest.fixture(scope="module")
def synthetic_scores(zoo_small_cnn: Any) -> Scores:
    assert zoo_small_cnn.accuracy > 0.8  # the orderings mean nothing on an untrained model
    x, y, masks = zoo_small_cnn.batch(n=N_IMAGES, start=0)
    return Scores(zoo_small_cnn, x, y, masks, SETTINGS)


@pytest.fixture(scope="module")
def texture_scores(zoo_textures: Any) -> Scores:
    assert zoo_textures.accuracy > 0.8
    x, y, masks = zoo_textures.batch(n=N_TEXTURE_IMAGES, start=0)
    return Scores(zoo_textures, x, y, masks, TEXTURE_SETTINGS)


def pairs(scores: list[str], order: list[tuple[str, str]], not_guaranteed: dict[tuple[str, str, str], str]):
    """Every ordering that must hold; those that do not hold reliably on this zoo (see the module
    docstring, and the reasons in ``not_guaranteed``) are left out rather than asserted weakly."""
    for score in scores:
        for better, worse in order:
            if (score, better, worse) not in not_guaranteed:
                yield pytest.param(score, better, worse, id=f"{score}-{better}>{worse}")


LOCALISATION_ORDER = [("oracle", "gradcam"), ("oracle", "saliency"), ("gradcam", "random"), ("saliency", "random"),
                      ("random", "inverted")]
REMOVAL_ORDER = LOCALISATION_ORDER + [("oracle", "random"), ("oracle", "inverted"), ("gradcam", "inverted"),
                                      ("saliency", "inverted")]
SHAPE_NOT_GUARANTEED = {
    **{(score, "oracle", "gradcam"): SHAPE_LEAKAGE for score in REMOVAL},
    **{(score, "oracle", "saliency"): SHAPE_LEAKAGE for score in REMOVAL},
    ("deletion", "saliency", "random"): OUT_OF_DISTRIBUTION,
    ("deletion", "gradcam", "random"): OUT_OF_DISTRIBUTION,  # within 0.01 either way, by training run
}
TEXTURE_NOT_GUARANTEED = {
    ("deletion", "oracle", "saliency"): GRADIENT_DELETION,
    ("pointing_game", "oracle", "gradcam"): CEILING,
    ("pointing_game", "random", "inverted"): CHANCE,
}


def assert_better(scores: Scores, score: str, better: str, worse: str) -> None:
    assert scores(score, better) > scores(score, worse), (
        f"{scores.zm.name} {score}: {better} {scores(score, better):.3f} should beat {worse} "
        f"{scores(score, worse):.3f} (higher is better after the direction)")


@pytest.mark.parametrize("score, better, worse",
                         list(pairs(LOCALISATION, LOCALISATION_ORDER, {}))
                         + list(pairs(REMOVAL, REMOVAL_ORDER, SHAPE_NOT_GUARANTEED)))
def test_scores_order_the_controls_on_shapes(synthetic_scores: Scores, score: str, better: str, worse: str) -> None:
    assert_better(synthetic_scores, score, better, worse)


@pytest.mark.parametrize("score, better, worse",
                         list(pairs(LOCALISATION, LOCALISATION_ORDER, TEXTURE_NOT_GUARANTEED))
                         + list(pairs(REMOVAL, REMOVAL_ORDER, TEXTURE_NOT_GUARANTEED)))
def test_scores_order_the_controls_on_textures(texture_scores: Scores, score: str, better: str, worse: str) -> None:
    assert_better(texture_scores, score, better, worse)


@pytest.mark.parametrize("model", ["shapes", "textures"])
def test_the_oracle_localises_perfectly_and_the_inverted_oracle_never(request: pytest.FixtureRequest, model: str) -> None:
    scores = request.getfixturevalue("synthetic_scores" if model == "shapes" else "texture_scores")
    for score in ("relevance_mass", "relevance_rank"):
        assert scores(score, "oracle") == pytest.approx(1.0)
        assert scores(score, "inverted") == pytest.approx(0.0)
    assert scores("pointing_game", "oracle") == pytest.approx(1.0)


@torch.no_grad()
def probability_after_deleting_top(model: torch.nn.Module, x: torch.Tensor, maps: torch.Tensor, k: int) -> float:
    """Mean probability of the clean prediction once the top ``k`` pixels of each map are set to 0
    (the deletion substrate), with the scores' own ranking and tie-breaking."""
    predicted = model(x).argmax(1)
    top = rank_pixels(maps)[:, :k]
    deleted = torch.zeros(x.shape[0], x.shape[2] * x.shape[3], dtype=torch.bool).scatter_(1, top, True)
    perturbed = torch.where(deleted.view(x.shape[0], 1, *x.shape[2:]), torch.zeros_like(x), x)
    return float(model(perturbed).softmax(1).gather(1, predicted.view(-1, 1)).mean())


@pytest.fixture(scope="module")
def shortcut_results(zoo_shortcut: Any) -> dict[str, Any]:
    zm = zoo_shortcut
    x, y, watermark = zm.batch(n=N_IMAGES, start=0)  # the shortcut entry's masks are the watermark
    data = zm.dataset("test")
    objects = torch.stack([data.object_mask(i) for i in range(N_IMAGES)]).bool()
    model = zm.model
    maps = {
        "gradcam": adapters.get("gradcam", layer=zm.gradcam_layer).attribute(model, x, y),
        "saliency": adapters.get("saliency").attribute(model, x, y),
        "object_oracle": adapters.get("oracle").attribute(model, x, y, mask=objects),
        "center": adapters.get("center").attribute(model, x, y),
        "random": adapters.get("random", seed=0).attribute(model, x, y),
    }
    after_top = {name: probability_after_deleting_top(model, x, a, 64) for name, a in maps.items()}
    localisation = {score: {name: metrics.get(score).compute(x=x, attributions=a, mask=watermark).summary()["mean"]
                            for name, a in maps.items()} for score in LOCALISATION}
    return {"finds": {name: p < 0.5 for name, p in after_top.items()}, "after_top": after_top,
            "localisation": localisation}


def test_on_the_shortcut_model_the_gradient_finds_the_watermark_and_the_object_does_not(shortcut_results) -> None:
    finds = shortcut_results["finds"]
    assert finds["saliency"], shortcut_results["after_top"]
    assert not finds["object_oracle"] and not finds["center"], shortcut_results["after_top"]


@pytest.mark.parametrize("score", LOCALISATION)
def test_on_the_shortcut_model_localisation_ranks_the_methods_that_find_the_watermark_first(shortcut_results,
                                                                                           score) -> None:
    values, finds = shortcut_results["localisation"][score], shortcut_results["finds"]
    finders = [name for name in values if finds[name]]
    others = [name for name in values if not finds[name]]
    assert min(values[n] for n in finders) > max(values[n] for n in others), (
        f"{score}: {values}; find the watermark: {finders}")
