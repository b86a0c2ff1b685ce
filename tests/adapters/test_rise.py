"""RISE: the masks of the authors' ``generate_masks`` (scikit-image's bilinear resize, random shift),
the paper's normalised estimator, seeding, batching, cost and bad parameters."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import adapters
from adapters import AttributionError, Cost
from adapters.methods.rise import RiseMasks, interpolation_matrix
from adapters.seeding import image_seeds
from conftest import tiny_cnn


def _x(n: int, size: int = 32, seed: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("height, width, grid", [(32, 32, 7), (64, 48, 8), (224, 224, 7), (30, 45, 4), (16, 16, 1)])
def test_masks_equal_scikit_image_resize_then_crop(height, width, grid):
    """The authors' ``generate_masks``: resize(grid, (s + 1) * cell, order=1, mode='reflect',
    anti_aliasing=False)[y:y + H, x:x + W] with cell = ceil(size / s)."""
    resize = pytest.importorskip("skimage.transform").resize
    masks = RiseMasks(height, width, grid, torch.device("cpu"))
    assert masks.cell == (math.ceil(height / grid), math.ceil(width / grid))
    grids, shift_y, shift_x = masks.draw(torch.Generator().manual_seed(0), 6, 0.5)
    shift_y[0], shift_x[0] = masks.cell[0] - 1, masks.cell[1] - 1  # the largest shift fits too
    ours = masks.build(grids, shift_y, shift_x)
    up = ((grid + 1) * masks.cell[0], (grid + 1) * masks.cell[1])
    for i in range(len(grids)):
        reference = resize(grids[i].double().numpy(), up, order=1, mode="reflect", anti_aliasing=False)
        y, x = int(shift_y[i]), int(shift_x[i])
        expected = torch.from_numpy(reference[y:y + height, x:x + width]).float()
        torch.testing.assert_close(ours[i], expected, rtol=0, atol=1e-6)
    assert ours.min() >= 0 and ours.max() <= 1


def test_interpolation_rows_are_convex_weights():
    matrix = interpolation_matrix(7, 40)
    torch.testing.assert_close(matrix.sum(dim=1), torch.ones(40, dtype=torch.float64))
    assert (matrix >= 0).all()


def test_map_is_the_normalised_weighted_sum_of_the_masks():
    """S = sum_i softmax(f(x * M_i))_c M_i / (N p), recomputed from the same per-image masks."""
    model, x, target = tiny_cnn(), _x(2), torch.tensor([3, 1])
    method = adapters.get("rise", n_masks=50, grid_size=5, keep_probability=0.3, seed=7, batch_size=13)
    ours = method.attribute(model, x, target)
    masks = RiseMasks(32, 32, 5, torch.device("cpu"))
    for i, seed in enumerate(image_seeds(x, 7)):
        m = masks.build(*masks.draw(torch.Generator().manual_seed(seed), 50, 0.3))  # (50, 32, 32)
        with torch.no_grad():
            p = model(x[i:i + 1] * m[:, None]).softmax(dim=1)[:, target[i]]
        expected = (p[:, None, None] * m).sum(dim=0) / (50 * 0.3)
        torch.testing.assert_close(ours[i, 0], expected, rtol=1e-5, atol=1e-6)


class Constant(nn.Module):
    """Logits that ignore the image: every class has probability 1 / 4."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(x), 4) + 0 * self.conv(x).mean()


def test_normalisation_makes_a_constant_model_map_its_probability():
    """E[M(u)] = p, so with the 1 / (N p) factor a model that ignores the image gets f_c everywhere
    (the factor RISEBatch drops: without it the map would be p times smaller)."""
    maps = adapters.get("rise", n_masks=2000, keep_probability=0.3).attribute(Constant().eval(), _x(1), 0)
    assert maps.mean() == pytest.approx(0.25, rel=0.02)
    assert maps.std() < 0.03


class Quadrant(nn.Module):
    """The target logit is the mean brightness of the top-left quadrant (centred for a half-kept one)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1, bias=False)
        nn.init.constant_(self.conv.weight, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = self.conv(x)[:, :, :16, :16].mean(dim=(1, 2, 3)) - 1.5
        return torch.stack([score, -score], dim=1)


@pytest.mark.parametrize("score", ["probability", "logit"])
def test_the_map_points_at_the_region_the_model_reads(score):
    x = torch.ones(1, 3, 32, 32)  # a fully kept quadrant scores 3 - 1.5, a fully masked one -1.5
    maps = adapters.get("rise", n_masks=500, score=score).attribute(Quadrant().eval(), x, 0)[0, 0]
    assert maps[:12, :12].mean() > maps[20:, 20:].mean() + 0.1 * maps.abs().max()


def test_probability_and_logit_scores_differ():
    model, x = tiny_cnn(), _x(1)
    probability = adapters.get("rise", n_masks=32).attribute(model, x, 2)
    logit = adapters.get("rise", n_masks=32, score="logit").attribute(model, x, 2)
    assert not torch.allclose(probability, logit)


def test_seeded_deterministic_and_independent_of_batch_and_chunking(maps_close):
    model, x = tiny_cnn(), _x(8, seed=4)
    target = torch.arange(8) % 5
    method = adapters.get("rise", n_masks=24, seed=11)
    whole = method.attribute(model, x, target)
    assert torch.equal(method.attribute(model, x, target), whole)
    for size in (1, 3):
        maps_close(torch.cat([method.attribute(model, x[i:i + size], target[i:i + size])
                              for i in range(0, 8, size)]), whole)
    for batch_size in (1, 7, 1000):
        maps_close(adapters.get("rise", n_masks=24, seed=11, batch_size=batch_size).attribute(model, x, target), whole)
    other = adapters.get("rise", n_masks=24, seed=12).attribute(model, x, target)
    assert not torch.allclose(other, whole)
    assert not torch.allclose(whole[0], whole[1]), "each image draws its own masks"


def test_cost_is_n_masks_forwards_and_that_is_what_runs():
    model, x = tiny_cnn(), _x(3)
    method = adapters.get("rise", n_masks=20, batch_size=8)
    assert method.cost() == Cost(forward=20, backward=0)
    method.attribute(model, x[:1], 0)  # the probe's forward happens once per model and shape
    seen: list[int] = []
    handle = model.register_forward_hook(lambda m, i, o: seen.append(o.shape[0]))
    method.attribute(model, x, 0)
    handle.remove()
    assert sum(seen) == 3 * 20 and max(seen) == 8
    assert method.diagnostics["batch_size"] == 8 and method.diagnostics["cell"] == (5, 5)


@pytest.mark.parametrize("params, named", [
    ({"n_masks": 0}, "n_masks"), ({"n_masks": 10**6}, "n_masks"), ({"grid_size": 0}, "grid_size"),
    ({"keep_probability": 0.0}, "keep_probability"), ({"keep_probability": 1.5}, "keep_probability"),
    ({"score": "softmax"}, "score"), ({"seed": 2**64}, "seed"), ({"batch_size": 0}, "batch_size"),
    ({"memory_mb": 0.0}, "memory_mb"),
])
def test_bad_parameters_are_named(params, named):
    with pytest.raises(AttributionError, match=named):
        adapters.get("rise", **params)


def test_a_grid_finer_than_the_image_is_refused():
    with pytest.raises(AttributionError, match=r"grid_size=40 is finer than the 32x32 image"):
        adapters.get("rise", n_masks=2, grid_size=40).attribute(tiny_cnn(), _x(1), 0)
