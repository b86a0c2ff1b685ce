"""adapters.maps.upsample: the separable bilinear products against the interpolation kernel."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from captum.attr import LayerAttribution

from adapters.maps import upsample


@pytest.mark.parametrize("shape, size", [((8, 8), (64, 64)), ((14, 14), (224, 224)), ((7, 7), (224, 224)),
                                         ((5, 9), (33, 70)), ((64, 64), (32, 32)), ((1, 1), (10, 10)),
                                         ((3, 4), (3, 8))])
def test_bilinear_equals_the_kernel_up_to_rounding(shape, size):
    maps = torch.randn(3, 1, *shape, generator=torch.Generator().manual_seed(0)) * 10
    ours = upsample(maps, size, "bilinear")
    kernel = F.interpolate(maps, size, mode="bilinear", align_corners=False)
    assert ours.shape == kernel.shape == (3, 1, *size)
    # a few units in the last place of the largest value: the same weights, summed in another order
    assert (ours - kernel).abs().max() <= 8 * torch.finfo(torch.float32).eps * maps.abs().max()


def test_bilinear_is_exact_on_a_linear_ramp_and_keeps_dtype():
    ramp = torch.arange(6, dtype=torch.float64).repeat(6, 1)[None, None]  # x, constant along y
    ours = upsample(ramp, (12, 12))
    assert ours.dtype == torch.float64
    assert torch.allclose(ours, F.interpolate(ramp, (12, 12), mode="bilinear", align_corners=False), atol=1e-12)


@pytest.mark.parametrize("mode", ["bicubic", "nearest", "area"])
def test_other_modes_are_captums(mode):
    maps = torch.randn(2, 1, 7, 7, generator=torch.Generator().manual_seed(1))
    assert torch.equal(upsample(maps, (28, 28), mode), LayerAttribution.interpolate(maps, (28, 28), interpolate_mode=mode))


def test_same_size_is_returned_unchanged():
    maps = torch.randn(2, 1, 9, 9)
    assert upsample(maps, (9, 9)) is maps
