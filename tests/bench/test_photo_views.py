"""Seeded extra views (crops and flips) of scikit-image's photographs."""
from __future__ import annotations

import pytest
import torch

from bench.datasets import DatasetError, SkimagePhotos, get_dataset

NAMES = ("chelsea", "coffee", "rocket")


def test_views_come_after_every_centre_crop() -> None:
    plain = SkimagePhotos(NAMES, image_size=64)
    data = SkimagePhotos(NAMES, image_size=64, views=3)
    assert len(plain) == 3 and len(data) == 12
    assert [data.view_of(i) for i in (0, 2, 3, 5, 11)] == [("chelsea", 0), ("rocket", 0), ("chelsea", 1),
                                                           ("rocket", 1), ("rocket", 3)]
    for i in range(3):
        assert torch.equal(data[i][0], plain[i][0])  # views=0 items are unchanged
    image, label, mask = data[4]
    assert image.shape == (3, 64, 64) and label == -1 and mask is None
    assert 0 <= float(image.min()) and float(image.max()) <= 1


def test_views_are_seeded_crops_and_flips_of_their_photo() -> None:
    data = SkimagePhotos(NAMES, image_size=64, views=4, seed=7)
    again = SkimagePhotos(("rocket", "coffee", "chelsea"), image_size=32, views=4, seed=7)
    other = SkimagePhotos(NAMES, image_size=64, views=4, seed=8)
    for view in range(1, 5):
        box = data.crop_box("coffee", view)
        # a view depends on (seed, photo, view) only: not on the other photos nor the size
        assert box == again.crop_box("coffee", view)
        top, left, side, flipped = box
        height, width = data._photo("coffee").shape[1:]
        assert 0.6 * min(height, width) - 1 <= side <= min(height, width)
        assert 0 <= top <= height - side and 0 <= left <= width - side
        assert flipped == (view % 2 == 1)
    assert [data.crop_box("coffee", v) for v in range(1, 5)] != [other.crop_box("coffee", v) for v in range(1, 5)]
    assert not torch.equal(data[1][0], data[1 + 3][0])  # view 1 differs from the centre crop


def test_flipped_view_is_the_mirror_of_its_crop() -> None:
    data = SkimagePhotos(("chelsea",), image_size=48, views=1, seed=0)
    top, left, side, flipped = data.crop_box("chelsea", 1)
    assert flipped
    crop = data._photo("chelsea")[:, top:top + side, left:left + side][None]
    unflipped = torch.nn.functional.interpolate(crop, size=(48, 48), mode="bilinear", antialias=True,
                                                align_corners=False)[0].clamp(0, 1)
    torch.testing.assert_close(data[1][0], unflipped.flip(-1))


def test_config_records_views_and_seed() -> None:
    config = get_dataset("skimage", names=list(NAMES), image_size=64, views=2, seed=3).config()
    assert config == {"name": "skimage", "photos": list(NAMES), "image_size": 64, "views": 2, "seed": 3,
                      "min_scale": 0.6}


def test_default_photos_load_offline() -> None:
    data = SkimagePhotos(image_size=32)
    assert "motorcycle_left" in data.names and "cat" not in data.names  # cat is chelsea again
    assert data.batch(range(len(data))).images.shape == (len(data), 3, 32, 32)


@pytest.mark.parametrize("params, match", [({"views": -1}, "views"), ({"views": True}, "views"),
                                           ({"seed": -2}, "seed"), ({"min_scale": 0.0}, "min_scale"),
                                           ({"names": "chelsea"}, "list of photograph names")])
def test_bad_parameters_are_refused(params: dict, match: str) -> None:
    with pytest.raises(DatasetError, match=match):
        SkimagePhotos(**{"names": NAMES, **params})
