"""Top-k intersection, attribution localisation and ROC AUC: hand cases, controls, Quantus."""
import numpy as np
import pytest
import torch
from quantus_oracle import quantus
from score_helpers import box_masks, maps
from sklearn.metrics import roc_auc_score

import metrics
from metrics.validation import MetricInputError

torch.set_num_threads(1)

NAMES = ["top_k_intersection", "attribution_localisation", "auc"]
X = torch.zeros(1, 3, 16, 16)


def score(name: str, a: torch.Tensor, mask: torch.Tensor, **params) -> torch.Tensor:
    x = torch.zeros(a.shape[0], 3, *a.shape[-2:])
    return metrics.get(name).compute(x=x, attributions=a, mask=mask, **params).scores


def varied_masks(n: int, size: int = 16) -> torch.Tensor:
    """Boxes of different sizes and places (none empty, none full)."""
    mask = torch.zeros(n, 1, size, size, dtype=torch.bool)
    for i in range(n):
        mask[i, :, i % 9:i % 9 + 4 + i % 3, 2 * i % 11:2 * i % 11 + 5] = True
    return mask


def test_registered_with_direction_and_bounds() -> None:
    for name in NAMES:
        spec = metrics.get(name)
        assert spec.category == "localisation" and spec.direction == "higher" and spec.bounds == (0.0, 1.0)
        assert spec.inputs == ("mask",)


def test_top_k_is_the_share_of_the_k_best_pixels_inside_the_mask() -> None:
    mask = box_masks(1)  # rows 2..7, cols 3..8: 36 pixels
    a = torch.zeros(1, 1, 16, 16)
    a[0, 0, 2, 3:9] = torch.arange(6, 12.0)  # the 6 best pixels, inside
    a[0, 0, 12, 0:4] = torch.arange(2, 6.0)  # the next 4, outside
    got = metrics.top_k_intersection(x=X, attributions=a, mask=mask, k=10, reference_size=None)
    assert float(got.scores[0]) == pytest.approx(0.6) and int(got.extras["k"][0]) == 10
    assert float(got.extras["concept_influence"][0]) == pytest.approx(0.6 * 256 / 36)
    assert float(score("top_k_intersection", a, mask, k=6, reference_size=None)) == 1.0


def test_top_k_scales_with_the_image_from_its_reference_size() -> None:
    result = metrics.top_k_intersection(x=torch.zeros(1, 3, 64, 64), attributions=torch.rand(1, 1, 64, 64),
                                        mask=box_masks(1, 64))
    assert int(result.extras["k"][0]) == round(1000 * 64 * 64 / 224 ** 2) == 82
    with pytest.raises(MetricInputError, match=r"k = 300 pixels exceeds the 16x16 = 256 pixels"):
        score("top_k_intersection", maps(1), box_masks(1), k=300, reference_size=None)


def test_attribution_localisation_positive_and_absolute_relevance() -> None:
    mask = box_masks(1)
    a = torch.zeros(1, 1, 16, 16)
    a[0, 0, 3, 4] = 3.0  # inside
    a[0, 0, 4, 4] = -2.0  # inside, negative
    a[0, 0, 12, 12] = 1.0  # outside
    positive = metrics.attribution_localisation(x=X, attributions=a, mask=mask)
    assert float(positive.scores[0]) == pytest.approx(0.75)
    assert float(positive.extras["weighted"][0]) == pytest.approx(0.75 * 256 / 36)
    assert float(score("attribution_localisation", a, mask, relevance="absolute")) == pytest.approx(5 / 6)
    # the default is the relevance-mass ratio (Arras et al. define the same share)
    signed = torch.randn(5, 1, 16, 16, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(score("attribution_localisation", signed, varied_masks(5)),
                          metrics.relevance_mass(x=torch.zeros(5, 3, 16, 16), attributions=signed,
                                                 mask=varied_masks(5)).scores)
    uniform = metrics.attribution_localisation(x=X, attributions=torch.ones(1, 1, 16, 16), mask=mask)
    assert float(uniform.extras["weighted"][0]) == pytest.approx(1.0)  # the size correction: chance is 1
    assert torch.isnan(score("attribution_localisation", -torch.rand(1, 1, 16, 16), mask))  # no positive relevance


def test_auc_is_the_rank_statistic_with_ties_counted_half() -> None:
    mask = box_masks(1)
    assert float(score("auc", mask.float(), mask)) == 1.0
    assert float(score("auc", (~mask).float(), mask)) == 0.0
    assert float(score("auc", torch.full((1, 1, 16, 16), 0.3), mask)) == 0.5  # every pair tied
    # quantised maps (many ties) against scikit-learn
    a = torch.round(4 * torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(2))) / 4
    masks = varied_masks(6)
    expected = [roc_auc_score(masks[i].flatten().numpy(), a[i].flatten().numpy()) for i in range(6)]
    np.testing.assert_allclose(score("auc", a, masks).numpy(), expected, atol=1e-6)
    assert torch.isnan(score("auc", maps(1), torch.ones(1, 1, 16, 16, dtype=torch.bool)))  # no negatives


@pytest.mark.parametrize("name", NAMES)
def test_controls_order_oracle_then_random_then_inverted(name: str) -> None:
    n = 8
    masks = varied_masks(n)
    params = {"k": 12, "reference_size": None} if name == "top_k_intersection" else {}
    oracle = score(name, masks.float(), masks, **params)
    random = score(name, maps(n, seed=7), masks, **params)
    inverted = score(name, (~masks).float(), masks, **params)
    assert torch.equal(oracle, torch.ones(n)) and torch.equal(inverted, torch.zeros(n))
    assert (random <= oracle).all() and (random >= inverted).all()
    assert 0.05 < float(random.mean()) < 0.6  # chance: the mask share (top-k, localisation) or 0.5 (AUC)


@pytest.mark.parametrize("name", NAMES)
def test_an_empty_mask_is_no_score(name: str) -> None:
    masks = varied_masks(3)
    masks[1] = False
    got = metrics.get(name).compute(x=torch.zeros(3, 3, 16, 16), attributions=maps(3), mask=masks,
                                    **({"k": 10, "reference_size": None} if name == "top_k_intersection" else {}))
    assert torch.isnan(got.scores[1]) and torch.isfinite(got.scores[[0, 2]]).all()
    assert got.summary()["n_no_score"] == 1


@pytest.mark.parametrize("name", NAMES)
def test_image_scores_do_not_depend_on_the_batch(name: str) -> None:
    a, masks = torch.round(3 * maps(6)) / 3, varied_masks(6)  # ties, so the top-k order is the seed's
    full = score(name, a, masks)
    assert torch.equal(score(name, a[4:5], masks[4:5]), full[4:5])
    assert torch.equal(score(name, a[2:5], masks[2:5]), full[2:5])


@pytest.mark.parametrize("name, params, message", [
    ("top_k_intersection", {"k": 0}, r"k must be an integer in \[1, 2\*\*24\], got 0"),
    ("top_k_intersection", {"k": 2.5}, "k must be an integer"),
    ("top_k_intersection", {"reference_size": 0}, "reference_size must be None or an integer"),
    ("attribution_localisation", {"relevance": "negative"}, "relevance must be one of 'positive', 'absolute'"),
    ("auc", {"k": 3}, "unknown parameter"),
])
def test_bad_parameters_are_refused(name: str, params: dict, message: str) -> None:
    with pytest.raises((MetricInputError, TypeError), match=message):
        score(name, maps(2), varied_masks(2), **params)


# ----------------------------------------------------------------------------------------------
# Quantus 0.6


def _quantus(q, cls, a: torch.Tensor, masks: torch.Tensor, **kwargs) -> np.ndarray:
    n = a.shape[0]
    metric = getattr(q, cls)(disable_warnings=True, **kwargs)
    return np.asarray(metric(model=None, x_batch=np.zeros((n, 1, *a.shape[-2:]), np.float32),
                             y_batch=np.zeros(n, dtype=int), a_batch=a.numpy().copy(),
                             s_batch=masks.numpy().astype(float), device="cpu"), dtype=float)


@pytest.mark.oracle
@pytest.mark.parametrize("ours, theirs, params, their_params", [
    ("top_k_intersection", "TopKIntersection", {"k": 20, "reference_size": None}, {"k": 20}),
    ("attribution_localisation", "AttributionLocalisation", {"relevance": "positive"},
     {"abs": False, "positive_attributions": True}),
    ("attribution_localisation", "AttributionLocalisation", {"relevance": "absolute"}, {}),
    ("auc", "AUC", {}, {}),
])
def test_equals_quantus(monkeypatch, ours, theirs, params, their_params) -> None:
    q = quantus(monkeypatch)
    n = 8
    a = torch.randn(n, 1, 16, 16, generator=torch.Generator().manual_seed(9))  # signed, tie-free
    masks = varied_masks(n)
    got = score(ours, a, masks, **params).numpy()
    np.testing.assert_allclose(got, _quantus(q, theirs, a, masks, **their_params), atol=1e-6)
    assert np.unique(np.round(got, 6)).size > 1


@pytest.mark.oracle
def test_quantus_auc_equals_ours_on_tied_maps(monkeypatch) -> None:
    q = quantus(monkeypatch)
    a = torch.round(4 * torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(2))) / 4
    masks = varied_masks(6)
    np.testing.assert_allclose(score("auc", a, masks).numpy(), _quantus(q, "AUC", a, masks), atol=1e-6)


@pytest.mark.oracle
def test_quantus_top_k_of_a_tied_map_depends_on_where_the_mask_is(monkeypatch) -> None:
    """Quantus takes the first k tied pixels in memory order: a plateau "finds" a mask in the top rows
    and misses one in the bottom rows. Here ties are ordered by the seed, wherever the mask is."""
    q = quantus(monkeypatch)
    plateau = torch.full((1, 1, 16, 16), 0.5)
    plateau[0, 0, 15, 15] = 0.2  # Quantus refuses a map that is constant everywhere
    top, bottom = torch.zeros(1, 1, 16, 16, dtype=torch.bool), torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    top[..., 0, :] = True
    bottom[..., 15, :15] = True
    assert _quantus(q, "TopKIntersection", plateau, top, k=15, normalise=False)[0] == 1.0
    assert _quantus(q, "TopKIntersection", plateau, bottom, k=15, normalise=False)[0] == 0.0
    ours_top = [float(score("top_k_intersection", plateau, top, k=15, reference_size=None, seed=s)) for s in range(20)]
    ours_bottom = [float(score("top_k_intersection", plateau, bottom, k=15, reference_size=None, seed=s))
                   for s in range(20)]
    assert max(ours_top) < 0.5 and max(ours_bottom) < 0.5  # chance: 16 of 255 tied pixels
    assert abs(np.mean(ours_top) - np.mean(ours_bottom)) < 0.05


@pytest.mark.oracle
def test_quantus_scores_a_map_without_positive_relevance_zero(monkeypatch) -> None:
    q = quantus(monkeypatch)
    negative = -torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    negative[0, 0, 0, 0] = 0.0  # Quantus refuses a map that is negative everywhere
    theirs = _quantus(q, "AttributionLocalisation", negative, box_masks(1), abs=False, positive_attributions=True)
    assert theirs[0] == 0.0  # 0 / (0 + 1e-9)
    assert torch.isnan(score("attribution_localisation", negative, box_masks(1)))
