"""Adebayo et al. (2018) on a trained ImageNet network: EfficientNet-Lite0 with its packaged weights.

The paper's central finding: under cascading randomisation from the logits down, the plain gradient
changes at once, while Guided Backprop barely changes until the lower layers go -- its map is
mostly an image edge detector. On lite0 (chelsea and coffee, the default batch-norm reset) the
measured curves, one value per randomised block fc, head, stage7 .. stage1, stem:

    saliency         SSIM 0.22 / 0.27 after fc, 0.06 at the stem;    Spearman(|a|) 0.32 / 0.48 -> 0.12 / 0.13
    guided_backprop  SSIM 1.00 / 0.99 after fc, 0.12 / 0.15 at the stem; Spearman 1.00 / 1.00 -> 0.28 / 0.28

Guided Backprop stays above 0.85 (SSIM 0.81) until stage6 is randomised too, then decays: on a
trained 16-block network its map is not *only* an edge detector (the lower stages still shape it),
and on coffee its Spearman similarity dips below the gradient's at stage3 (0.35 against 0.39).
Mean along the cascade: SSIM 0.58 against 0.17, Spearman 0.66 against 0.29 (5 photos). Grad-CAM
(in the run's strip figure) is at Spearman about 0 from the first block on. The assertions below
are the qualitative verdict with wide margins, per image.
"""
from __future__ import annotations

from typing import Any

import pytest
import torch

import adapters
from bench.datasets import SkimagePhotos
from bench.figures.cascade_strip import cascade_strips, run_cascades
from bench.models import WeightsError, get_spec
from bench.models import efficientnet_lite as lite

pytestmark = pytest.mark.slow
PHOTOS = ("chelsea", "coffee")


@pytest.fixture(scope="module")
def cascades() -> dict[str, Any]:
    try:
        lite.packaged_weights(lite.VARIANTS["efficientnet_lite0"])
    except WeightsError as error:
        pytest.skip(f"pretrained extra absent: {error}")
    torch.set_num_threads(2)
    spec = get_spec("efficientnet_lite0")
    model = spec.build(weights="imagenet")
    images = SkimagePhotos(PHOTOS, image_size=spec.input_size[0]).batch(range(len(PHOTOS))).images
    x = spec.preprocess(images)
    with torch.no_grad():
        target = model(x).argmax(1)
    methods = {name: adapters.get(name) for name in ("saliency", "guided_backprop")}
    results, errors = run_cascades(model, x, target, methods, spec.randomisation_blocks(model))
    assert not errors, errors
    return {"results": results, "images": images, "target": target, "spec": spec}


@pytest.mark.parametrize("measure", ["ssim", "spearman_abs"])
def test_guided_backprop_stays_far_more_similar_than_the_gradient(cascades: dict[str, Any], measure: str) -> None:
    gbp = cascades["results"]["guided_backprop"].extras[f"curves_{measure}"]
    grad = cascades["results"]["saliency"].extras[f"curves_{measure}"]
    assert gbp.shape == grad.shape == (len(PHOTOS), 10)
    # Randomising the classifier and the head leaves Guided Backprop's map almost unchanged ...
    assert (gbp[:, :2] > 0.9).all(), gbp
    # ... while the gradient has changed already after the classifier alone.
    assert (grad[:, 0] < 0.6).all(), grad
    # Guided Backprop stays clearly above the gradient down to stage5, and on average along the whole
    # cascade; below that both decay (on coffee, Spearman at stage3: 0.35 against the gradient's 0.39).
    assert (gbp[:, :5] > grad[:, :5] + 0.3).all(), (gbp, grad)
    assert ((gbp - grad).mean(1) > 0.2).all(), (gbp.mean(1), grad.mean(1))


def test_the_strip_figure_draws_maps_and_curves(cascades: dict[str, Any], tmp_path) -> None:
    spec = cascades["spec"]
    title = f"efficientnet_lite0: '{spec.class_name(int(cascades['target'][0]))}'"
    path = tmp_path / "strip.png"
    figure = cascade_strips(cascades["results"], cascades["images"][0], title=title, path=path)
    assert path.stat().st_size > 10_000
    assert "Egyptian cat" in figure._suptitle.get_text()
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert titles[:4] == ["input", "original", "-> fc", "-> head"] and "-> stem" in titles
