"""Extremal perturbation's size-aware geometry: step, sigma and max blur scale with the input
(TorchRay's values at 224 px), TorchRay's pixel geometry stays available, and on the shortcut zoo
model the scaled masks find the 6x6 watermark that TorchRay's 224-px geometry cannot isolate at 64 px."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

import adapters
from adapters import AttributionError
from adapters.extremal import ExtremalSettings, extremal_masks
from adapters.extremal.mask_generator import MaskGeometry


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=4, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 3)).eval()


@pytest.mark.parametrize("height, width, step, sigma", [
    (224, 224, 7, 21.0), (224, 299, 7, 21.0), (299, 224, 7, 21.0), (64, 64, 2, 6.0), (112, 112, 4, 10.5),
    (32, 48, 1, 3.0), (448, 448, 14, 42.0), (8, 8, 1, 0.75),
])
def test_scaled_geometry_follows_the_shorter_side(height, width, step, sigma):
    pixels = ExtremalSettings().for_size(height, width)
    scale = min(height, width) / 224
    assert (pixels.step, pixels.sigma) == (step, pytest.approx(sigma, rel=1e-12))
    assert pixels.max_blur == pytest.approx(20 * scale, rel=1e-12)
    assert pixels.geometry == "torchray" and pixels.for_size(height, width) == pixels  # pixels now: idempotent


def test_torchray_geometry_is_pixels_at_every_size():
    torchray = ExtremalSettings(geometry="torchray")
    for size in ((64, 64), (224, 224), (500, 300)):
        assert torchray.for_size(*size) is torchray
    assert (torchray.step, torchray.sigma, torchray.max_blur) == (7, 21.0, 20.0)


def test_explicit_values_are_sizes_at_224_under_the_scaled_geometry():
    pixels = ExtremalSettings(step=14, sigma=28.0, max_blur=10.0).for_size(112, 112)
    assert (pixels.step, pixels.sigma, pixels.max_blur) == (7, 14.0, 5.0)


def test_at_224_the_default_run_is_torchrays_bit_for_bit():
    model = _model()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    settings = ExtremalSettings(iterations=2, backend="eager")
    scaled = extremal_masks(model, x, 1, [0.1], settings, chunk_rows=1)
    torchray = extremal_masks(model, x, 1, [0.1], replace(settings, geometry="torchray"), chunk_rows=1)
    assert torch.equal(scaled.masks, torchray.masks) and torch.equal(scaled.params, torchray.params)
    assert scaled.settings == torchray.settings


def test_the_run_uses_and_reports_the_pixel_geometry():
    model, x = _model(), torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    quick = adapters.get_class("extremal").quick_params()
    scaled = adapters.get("extremal", **quick)
    result = scaled.explain(model, x, 0)
    assert result.params.shape[-2:] == MaskGeometry(64, 64, 2, 6.0).shape_in == (32, 32)
    scaled.attribute(model, x, 0)
    assert scaled.diagnostics["settings"]["step"] == 2 and scaled.diagnostics["settings"]["sigma"] == 6.0
    torchray = adapters.get("extremal", geometry="torchray", **quick)
    assert torchray.explain(model, x, 0).params.shape[-2:] == (math.ceil(64 / 7),) * 2
    assert torchray.params["geometry"] == "torchray" and scaled.params["geometry"] == "scaled"


def test_an_unknown_geometry_is_named():
    with pytest.raises(AttributionError, match=r"geometry must be one of \['scaled', 'torchray'\]"):
        adapters.get("extremal", geometry="pixels")
    with pytest.raises(AttributionError, match="geometry"):
        ExtremalSettings(geometry=None)


def test_scaled_geometry_finds_the_shortcut_watermark():
    """small_cnn-shortcut reads a 6x6 checkerboard in the corner of its class (pointing game 1.0 for
    saliency). At 64 px TorchRay's 224-px geometry (step 7, sigma 21, blur 20) cannot make a mask
    that small: every map is the same blob (pointing game 0). The scaled one (step 2, sigma 6,
    blur 5.7) keeps the watermark.

    ``flip=False``: TorchRay's jitter mirrors the perturbed input on even iterations, which moves
    the watermark to another class's corner; with it on, the masks find nothing on this model at
    either geometry (the zoo is trained without mirror augmentation). One image per class, area
    0.05, the fast schedule (80 iterations) to keep the test short."""
    zoo = pytest.importorskip("bench.zoo")
    metrics = pytest.importorskip("metrics")
    entry = zoo.load("small_cnn-shortcut")
    model = entry.model.eval()
    x, labels, masks = entry.batch(n=4)
    assert sorted(labels.tolist()) == [0, 1, 2, 3]
    pointing, mass = {}, {}
    for geometry in ("scaled", "torchray"):
        method = adapters.get("extremal", geometry=geometry, areas=[0.05], flip=False, fast=True, fast_iterations=80,
                              backend="eager")
        maps = method.attribute(model, x, labels)
        pointing[geometry] = metrics.get("pointing_game")(x=x, attributions=maps, mask=masks).scores
        mass[geometry] = metrics.get("relevance_mass")(x=x, attributions=maps, mask=masks).scores
    assert pointing["scaled"].mean() >= 0.75, pointing
    assert pointing["torchray"].mean() <= 0.25, pointing
    assert (mass["scaled"] > 1.3 * mass["torchray"]).all(), mass
