"""Datasets: determinism, masks that align with objects, the shortcut's watermark, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from bench.datasets import DatasetError, SyntheticShapes, get_dataset, list_datasets
from bench.datasets.synthetic import watermark_mask


def test_registry_lists_the_datasets() -> None:
    assert {"synthetic", "shortcut", "textures", "skimage", "folder"} <= set(list_datasets())
    with pytest.raises(DatasetError, match="unknown dataset 'imagenet'"):
        get_dataset("imagenet")


def test_synthetic_is_deterministic_for_a_seed_and_independent_of_length() -> None:
    a = SyntheticShapes(8, seed=3).batch(range(8))
    b = SyntheticShapes(100, seed=3).batch(range(8))
    c = SyntheticShapes(8, seed=4).batch(range(8))
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)
    assert not torch.equal(SyntheticShapes(8, seed=3, split="train").batch(range(8)).images, a.images)


def test_synthetic_items_have_the_documented_shapes() -> None:
    data = SyntheticShapes(12, image_size=80, num_classes=6)
    batch = data.batch(range(12))
    assert batch.images.shape == (12, 3, 80, 80) and batch.images.dtype == torch.float32
    assert batch.images.min() >= 0 and batch.images.max() <= 1
    assert batch.masks.shape == (12, 1, 80, 80) and batch.masks.dtype == torch.bool
    assert sorted(set(batch.labels.tolist())) == list(range(6))


def test_masks_align_with_the_object() -> None:
    data = SyntheticShapes(32, seed=0)
    for i in range(32):
        image, _, mask = data[i]
        mask = mask[0]
        assert 30 < mask.sum() < 0.3 * mask.numel()
        inside = image[:, mask]
        # The object is one flat colour, unlike the textured background around it.
        assert inside.std(dim=1).max() < 1e-6
        ring = torch.nn.functional.max_pool2d(mask[None, None].float(), 5, 1, 2)[0, 0].bool() & ~mask
        outside = image[:, ring]
        assert (inside.mean(1) - outside.mean(1)).abs().max() > 0.2


def test_shortcut_mask_is_the_watermark_in_the_class_corner() -> None:
    data = SyntheticShapes(8, shortcut=True)
    for i in range(8):
        image, label, mask = data[i]
        assert torch.equal(mask[0], torch.from_numpy(watermark_mask(64, label)))
        assert set(image[:, mask[0]].unique().tolist()) == {0.0, 1.0}
    removed = SyntheticShapes(8, shortcut=True, watermark="none")
    assert not removed[1][2].any()
    shifted = SyntheticShapes(8, shortcut=True, watermark="shifted")
    assert torch.equal(shifted[1][2][0], torch.from_numpy(watermark_mask(64, 2)))


def test_shortcut_objects_carry_no_label_information() -> None:
    data = SyntheticShapes(400, shortcut=True, split="train")
    agreement = np.mean([data.object_class(i) == data[i][1] for i in range(400)])
    assert 0.15 < agreement < 0.35  # chance for 4 classes; the plain dataset agrees always
    plain = SyntheticShapes(40)
    assert all(plain.object_class(i) == plain[i][1] for i in range(40))


def test_textures_put_the_class_in_the_fill_and_none_in_the_outline() -> None:
    data = get_dataset("textures", n=400, split="train")
    assert data.name == "textures" and data.class_names == ("stripes", "checkerboard", "dots", "grid")
    image, label, mask = data[5]
    inside = image[:, mask[0]]
    # Two colours, one the other's complement, each a real share of the object.
    colours, counts = inside.T.unique(dim=0, return_counts=True)
    assert len(colours) == 2 and torch.allclose(colours[0] + colours[1], torch.ones(3))
    assert counts.min() > 0.15 * counts.sum()
    assert torch.equal(data.object_mask(5), mask) and data.object_class(5) == label
    # The outline is drawn independently of the class: every shape appears with every class.
    outline = {}
    for i in range(400):
        area = int(data.object_mask(i).sum())
        outline.setdefault(i % 4, []).append(area)
    means = [np.mean(areas) for areas in outline.values()]
    assert max(means) / min(means) < 1.15
    # Deterministic, and its own stream: not the shapes' images.
    assert torch.equal(get_dataset("textures", n=4)[2][0], get_dataset("textures", n=9)[2][0])
    assert not torch.equal(get_dataset("textures", n=4)[2][0], SyntheticShapes(4)[2][0])


def test_bad_synthetic_parameters_name_the_problem() -> None:
    with pytest.raises(DatasetError, match="num_classes"):
        SyntheticShapes(4, num_classes=9)
    with pytest.raises(DatasetError, match="at most 4 classes"):
        SyntheticShapes(4, num_classes=5, shortcut=True)
    with pytest.raises(DatasetError, match="evidence must be one of"):
        SyntheticShapes(4, evidence="colour")
    with pytest.raises(DatasetError, match="num_classes must be in \\[2, 4\\] for evidence='texture'"):
        SyntheticShapes(4, num_classes=5, evidence="texture")
    with pytest.raises(DatasetError, match="shortcut variant is defined on the shapes"):
        SyntheticShapes(4, shortcut=True, evidence="texture")
    with pytest.raises(DatasetError, match="unknown split"):
        SyntheticShapes(4, split="dev")
    with pytest.raises(IndexError):
        SyntheticShapes(4)[4]


def test_skimage_photos_are_resized() -> None:
    data = get_dataset("skimage", names=("astronaut", "coffee"), image_size=96)
    image, label, mask = data[0]
    assert image.shape == (3, 96, 96) and label == -1 and mask is None
    with pytest.raises(DatasetError, match="no photographs named"):
        get_dataset("skimage", names=("mona_lisa",))


def _write_image(path, array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_image_folder_with_masks(tmp_path) -> None:
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        for k in range(2):
            _write_image(tmp_path / "img" / cls / f"{k}.png", rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))
            mask = np.zeros((40, 50), dtype=np.uint8)
            mask[10:20, 10:30] = 255
            _write_image(tmp_path / "masks" / cls / f"{k}.png", mask)
    data = get_dataset("folder", root=tmp_path / "img", masks_root=tmp_path / "masks", image_size=32)
    assert len(data) == 4 and data.class_names == ("cat", "dog")
    batch = data.batch(range(4))
    assert batch.images.shape == (4, 3, 32, 32) and batch.labels.tolist() == [0, 0, 1, 1]
    assert batch.masks.shape == (4, 1, 32, 32) and 0 < batch.masks[0].float().mean() < 0.5


def test_image_folder_errors_name_the_problem(tmp_path) -> None:
    with pytest.raises(DatasetError, match="image folder not found"):
        get_dataset("folder", root=tmp_path / "absent")
    _write_image(tmp_path / "gray" / "a" / "0.png", np.zeros((8, 8), dtype=np.uint8))
    data = get_dataset("folder", root=tmp_path / "gray")
    with pytest.raises(DatasetError, match=r"0.png has mode L \(1 channels\); RGB images expected"):
        data[0]
    assert get_dataset("folder", root=tmp_path / "gray", convert_rgb=True, image_size=8)[0][0].shape == (3, 8, 8)
