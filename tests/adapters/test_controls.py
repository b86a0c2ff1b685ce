"""The control maps: what they compute and that they ignore the model."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

import adapters


def test_edge_is_sobel_magnitude_and_model_independent(make_model, images):
    maps = adapters.get("edge").attribute(make_model(0), images[:2], 0)
    again = adapters.get("edge").attribute(make_model(1), images[:2], 3)
    assert torch.equal(maps, again)
    for i in range(2):
        channels = images[i].double().numpy()
        squared = sum(ndimage.sobel(c, axis=a, mode="nearest") ** 2 for c in channels for a in (0, 1))
        np.testing.assert_allclose(maps[i, 0].numpy(), np.sqrt(squared), rtol=1e-5, atol=1e-5)


def test_center_is_a_centred_gaussian(model, images):
    x = images[:2, :, :31, :28]  # odd height, even width: the centre falls on a pixel, then between two
    maps = adapters.get("center", sigma=0.25).attribute(model, x, 0)
    assert torch.equal(maps[0], maps[1])
    rows, cols = np.mgrid[0:31, 0:28]
    sd = 0.25 * 28
    expected = np.exp(-((rows - 15) ** 2 + (cols - 13.5) ** 2) / (2 * sd**2))
    np.testing.assert_allclose(maps[0, 0].numpy(), expected, rtol=1e-5)


def test_oracle_flat_returns_the_mask(model, images):
    mask = torch.zeros(2, 32, 32, dtype=torch.bool)
    mask[0, 4:10, 5:20] = True
    maps = adapters.get("oracle", interior="flat").attribute(model, images[:2], 0, mask=mask)
    assert torch.equal(maps[:, 0], mask.float())
    four_d = adapters.get("oracle", interior="flat").attribute(model, images[:2], 0, mask=mask[:, None].float())
    assert torch.equal(four_d, maps), "a 0/1 float mask (N, 1, H, W) is the same mask"


def test_oracle_orders_the_mask_from_its_centre_out(model, images):
    mask = torch.zeros(3, 32, 32, dtype=torch.bool)
    mask[0, 4:11, 5:20] = True  # 7 rows: depths 1, 2, 3, 4, 3, 2, 1
    mask[1, 0:5, 0:5] = True  # in the corner: the image border is the outline too
    maps = adapters.get("oracle").attribute(model, images[:3], 0, mask=mask)
    assert torch.equal(maps[:, 0] > 0, mask), "the support is the mask: localisation is that of the mask"
    assert torch.equal(maps[0, 0, 4:11, 12], torch.tensor([1, 2, 3, 4, 3, 2, 1]) / 4)
    rows, cols = torch.meshgrid(torch.arange(5), torch.arange(5), indexing="ij")
    depth = torch.minimum(torch.minimum(rows + 1, cols + 1), torch.minimum(5 - rows, 5 - cols)).float()
    assert torch.equal(maps[1, 0, :5, :5], depth / 3)
    assert not maps[2].any(), "an empty mask gives an empty map"
    flat = adapters.get("oracle", interior="flat").attribute(model, images[:3], 0, mask=mask)
    assert torch.equal(flat > 0, maps > 0)


def test_oracle_rejects_an_unknown_interior():
    with pytest.raises(adapters.AttributionError, match="interior must be one of"):
        adapters.get("oracle", interior="gaussian")


def test_random_is_uniform_noise_per_image(model, images):
    maps = adapters.get("random", seed=5).attribute(model, images, 0)
    assert 0 <= float(maps.min()) and float(maps.max()) < 1
    assert abs(float(maps.mean()) - 0.5) < 0.02
    assert abs(np.corrcoef(maps[0].flatten(), maps[1].flatten())[0, 1]) < 0.1


def test_controls_cost_nothing():
    for name in ("random", "edge", "center", "oracle"):
        cost = adapters.get(name).cost(height=224, width=224)
        assert (cost.forward, cost.backward) == (0, 0)
