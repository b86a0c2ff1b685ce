"""Pointing game, relevance mass and relevance rank: hand-computed cases, empty masks, Quantus."""
import numpy as np
import pytest
import torch
from quantus_oracle import quantus
from score_helpers import box_masks, maps

import metrics

X = torch.zeros(1, 3, 16, 16)


def peak_at(row: int, col: int) -> torch.Tensor:
    a = torch.zeros(1, 1, 16, 16)
    a[0, 0, row, col] = 1.0
    return a


def test_pointing_game_hits_inside_misses_outside_and_honours_the_tolerance():
    mask = box_masks(1)  # rows 2..7, cols 3..8

    def hit(row, col, tolerance):
        return float(metrics.pointing_game(x=X, attributions=peak_at(row, col), mask=mask, tolerance_px=tolerance,
                                           reference_size=None).scores[0])

    assert hit(4, 4, 0) == 1.0
    assert hit(12, 12, 0) == 0.0
    assert hit(10, 5, 3) == 1.0 and hit(10, 5, 2.9) == 0.0  # nearest mask pixel (7, 5) is 3 px away
    assert hit(9, 10, 3) == 1.0 and hit(9, 10, 2.5) == 0.0  # (7, 8) at sqrt(8) = 2.83 px


def test_pointing_game_tolerance_scales_with_the_image_as_torchray_at_224():
    result = metrics.pointing_game(x=torch.zeros(1, 3, 64, 64), attributions=torch.rand(1, 1, 64, 64),
                                   mask=torch.ones(1, 1, 64, 64, dtype=torch.bool))
    assert float(result.extras["tolerance"][0]) == pytest.approx(15 * 64 / 224)


def test_a_constant_map_points_at_one_seeded_pixel_not_everywhere():
    mask = box_masks(1)
    constant = torch.ones(1, 1, 16, 16)
    points = {tuple(metrics.pointing_game(x=X, attributions=constant, mask=mask, seed=s,
                                          tolerance_px=0).extras["points"][0].tolist()) for s in range(20)}
    assert len(points) > 1  # the seed picks the pixel
    hits = [float(metrics.pointing_game(x=X, attributions=constant, mask=mask, seed=s, tolerance_px=0).scores[0])
            for s in range(40)]
    # The box covers 36 of 256 pixels: a random pick hits about 14 % of the time, never always.
    assert 0 < sum(hits) < 20


def test_smoothing_moves_the_point_to_the_mass():
    a = torch.zeros(1, 1, 16, 16)
    a[0, 0, 12, 12] = 1.0  # a lone spike
    a[0, 0, 2:7, 3:8] = 0.9  # a blob inside the mask
    mask = box_masks(1)
    assert float(metrics.pointing_game(x=X, attributions=a, mask=mask, tolerance_px=0).scores[0]) == 0.0
    assert float(metrics.pointing_game(x=X, attributions=a, mask=mask, tolerance_px=0, smooth_sigma=2.0).scores[0]) == 1.0


def test_relevance_mass_is_the_share_of_positive_attribution_inside():
    a = torch.zeros(1, 1, 16, 16)
    a[0, 0, 3, 4] = 3.0  # inside
    a[0, 0, 12, 12] = 1.0  # outside
    a[0, 0, 13, 13] = -5.0  # negative: not relevance mass
    assert float(metrics.relevance_mass(x=X, attributions=a, mask=box_masks(1)).scores[0]) == pytest.approx(0.75)
    no_positive = metrics.relevance_mass(x=X, attributions=-torch.ones(1, 1, 16, 16), mask=box_masks(1))
    assert torch.isnan(no_positive.scores).all()


def test_relevance_rank_is_the_share_of_the_top_mask_size_pixels_inside():
    mask = box_masks(1)  # 36 pixels
    a = mask.float() * 2  # all 36 top pixels inside
    assert float(metrics.relevance_rank(x=X, attributions=a, mask=mask).scores[0]) == 1.0
    a = torch.zeros(1, 1, 16, 16)
    a[0, 0, 2:5, 3:9] = 2.0  # 18 inside
    a[0, 0, 10:13, 3:9] = 1.0  # 18 outside, the rest 0
    assert float(metrics.relevance_rank(x=X, attributions=a, mask=mask).scores[0]) == pytest.approx(0.5)


@pytest.mark.parametrize("name", ["pointing_game", "relevance_mass", "relevance_rank"])
def test_an_empty_mask_is_no_score_and_aggregation_skips_and_reports_it(name):
    mask = box_masks(3)
    mask[1] = False
    result = metrics.get(name).compute(x=torch.zeros(3, 3, 16, 16), attributions=maps(3), mask=mask)
    assert torch.isnan(result.scores[1]) and not torch.isnan(result.scores[[0, 2]]).any()
    summary = result.summary()
    assert summary["n_no_score"] == 1 and summary["n_scored"] == 2
    assert summary["mean"] == pytest.approx(float(result.scores[[0, 2]].mean()))


@pytest.mark.oracle
@pytest.mark.parametrize("ours, theirs", [("pointing_game", "PointingGame"), ("relevance_mass", "RelevanceMassAccuracy"),
                                          ("relevance_rank", "RelevanceRankAccuracy")])
def test_equals_quantus_on_tie_free_maps(monkeypatch, ours, theirs):
    q = quantus(monkeypatch)
    n = 8
    a = maps(n)
    mask = torch.zeros(n, 1, 16, 16, dtype=torch.bool)
    for i in range(n):  # boxes of different sizes and places
        mask[i, :, i:i + 4 + i % 3, 2 * i % 11:2 * i % 11 + 5] = True
    ref = getattr(q, theirs)(disable_warnings=True)
    x = torch.zeros(n, 1, 16, 16)
    expected = np.asarray(ref(model=None, x_batch=x.numpy(), y_batch=np.zeros(n, dtype=int), a_batch=a.numpy(),
                              s_batch=mask.numpy().astype(float), device="cpu"), dtype=float)
    kwargs = {"tolerance_px": 0} if ours == "pointing_game" else {}
    got = metrics.get(ours).compute(x=x, attributions=a, mask=mask, **kwargs).scores.numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert 0 < got.mean() < 1  # the cases are not all alike


@pytest.mark.oracle
def test_quantus_counts_an_empty_mask_as_a_pointing_game_hit(monkeypatch):
    q = quantus(monkeypatch)
    a, empty = maps(1), torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    theirs = q.PointingGame(disable_warnings=True)(model=None, x_batch=np.zeros((1, 1, 16, 16)), y_batch=np.zeros(1, dtype=int),
                                                   a_batch=a.numpy(), s_batch=empty.numpy().astype(float), device="cpu")
    assert bool(theirs[0]) is True  # NaN written into a boolean array is stored as True
    assert torch.isnan(metrics.pointing_game(x=torch.zeros(1, 1, 16, 16), attributions=a, mask=empty).scores[0])


@pytest.mark.oracle
def test_quantus_counts_a_tied_maximum_as_a_hit_if_any_tied_pixel_is_inside(monkeypatch):
    q = quantus(monkeypatch)
    plateau = torch.zeros(1, 1, 16, 16)
    plateau[0, 0, 10:16, :] = 1.0  # 96 pixels tie for the maximum outside the mask...
    plateau[0, 0, 4, 4] = 1.0  # ...and one inside
    mask = box_masks(1)
    theirs = q.PointingGame(disable_warnings=True)(model=None, x_batch=np.zeros((1, 1, 16, 16)), y_batch=np.zeros(1, dtype=int),
                                                   a_batch=plateau.numpy(), s_batch=mask.numpy().astype(float), device="cpu")
    assert bool(theirs[0]) is True
    hits = [float(metrics.pointing_game(x=torch.zeros(1, 1, 16, 16), attributions=plateau, mask=mask, seed=s,
                                        tolerance_px=0).scores[0]) for s in range(20)]
    assert sum(hits) < 5  # one tied pixel in 97: the map does not point at the object
