"""The similarity measures of the sanity checks against scipy and scikit-image on fixtures."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.stats
import torch
from skimage.feature import hog as sk_hog
from skimage.metrics import structural_similarity

from metrics import similarity


def _pair(n: int = 3, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Correlated maps with structure (a blob) and noise; one image rounded to create ties."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    blob = torch.exp(-((yy - size / 3) ** 2 + (xx - size / 2) ** 2) / (2 * (size / 6) ** 2))
    a = blob + 0.3 * torch.randn(n, 1, size, size, generator=g)
    b = a + 0.4 * torch.randn(n, 1, size, size, generator=g)
    a[1] = (a[1] * 4).round() / 4
    return a, b


def _np_abs_unit(a: np.ndarray) -> np.ndarray:
    """The paper's abs_grayscale_norm, written independently in numpy."""
    u = np.abs(a)
    low, high = u.min(), np.percentile(u, 99)
    return np.clip((u - low) / (high - low), 0, 1)


def _np_signed_unit(a: np.ndarray) -> np.ndarray:
    return np.clip(a / np.percentile(np.abs(a), 99), -1, 1)


def test_spearman_matches_scipy_with_ties() -> None:
    a, b = _pair()
    ours = similarity.spearman(a, b)
    for i in range(a.shape[0]):
        expected = scipy.stats.spearmanr(a[i].ravel().numpy(), b[i].ravel().numpy())[0]
        assert ours[i].item() == pytest.approx(expected, abs=1e-10)


def test_average_ranks_match_scipy_rankdata() -> None:
    values = torch.tensor([[3.0, 1.0, 3.0, 2.0, 3.0, 1.0]])
    assert similarity.average_ranks(values)[0].tolist() == scipy.stats.rankdata(values[0].numpy()).tolist()


def test_row_quantile_and_ranks_equal_torch_bit_for_bit() -> None:
    """The NumPy row sort behind the quantile and the ranks gives torch's numbers exactly: ties, zeros,
    NaNs (a row holding one has a NaN quantile, as torch.quantile) and constant rows."""
    g = torch.Generator().manual_seed(3)
    values = torch.rand(6, 257, generator=g, dtype=torch.float64)
    values[1] = (values[1] * 4).floor()
    values[2, :200] = 0.0
    values[3, 5] = float("nan")
    values[4] = 1.5
    for q in (0.99, 0.5, 0.0, 1.0):
        assert torch.equal(similarity.row_quantile(values, q).nan_to_num(-1.0),
                           torch.quantile(values, q, dim=1).nan_to_num(-1.0))
    finite = values.nan_to_num(2.0)
    ordered, order = finite.sort(dim=1)
    ours = similarity.average_ranks(finite)
    assert torch.equal(ours.gather(1, order).diff(dim=1) >= 0, torch.ones_like(ordered[:, 1:], dtype=torch.bool))
    for i in range(values.shape[0]):
        assert ours[i].tolist() == scipy.stats.rankdata(finite[i].numpy()).tolist()


def test_spearman_measures_use_the_percentile_normalisation() -> None:
    a, b = _pair()
    ours = similarity.similarities(a, b)
    for i in range(a.shape[0]):
        x, y = a[i, 0].numpy().astype(np.float64), b[i, 0].numpy().astype(np.float64)
        abs_expected = scipy.stats.spearmanr(_np_abs_unit(x).ravel(), _np_abs_unit(y).ravel())[0]
        signed_expected = scipy.stats.spearmanr(_np_signed_unit(x).ravel(), _np_signed_unit(y).ravel())[0]
        assert ours["spearman_abs"][i].item() == pytest.approx(abs_expected, abs=1e-9)
        assert ours["spearman_signed"][i].item() == pytest.approx(signed_expected, abs=1e-9)
    # the clip at the 99th percentile ties the top pixels, so abs Spearman is not that of raw |a|
    raw = similarity.spearman(a.abs(), b.abs())
    assert not torch.allclose(ours["spearman_abs"], raw, atol=1e-6)


def test_ssim_matches_skimage_gaussian_weights() -> None:
    a, b = _pair()
    ua, _ = similarity.abs_unit(a)
    ub, _ = similarity.abs_unit(b)
    ours = similarity.ssim(ua, ub)
    for i in range(a.shape[0]):
        expected = structural_similarity(ua[i].numpy(), ub[i].numpy(), gaussian_weights=True, data_range=1.0)
        assert ours[i].item() == pytest.approx(expected, abs=1e-10)
    assert similarity.similarities(a, b)["ssim"].tolist() == pytest.approx(ours.tolist(), abs=1e-12)


@pytest.mark.parametrize("cell", [16, 8])
def test_hog_matches_skimage(cell: int) -> None:
    a, b = _pair()
    ua, _ = similarity.abs_unit(a)
    ub, _ = similarity.abs_unit(b)
    ours = similarity.hog(ua, cell)
    expected = np.stack([sk_hog(ua[i].numpy(), pixels_per_cell=(cell, cell)) for i in range(a.shape[0])])
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-6)
    hog_b = np.stack([sk_hog(ub[i].numpy(), pixels_per_cell=(cell, cell)) for i in range(a.shape[0])])
    measured = similarity.similarities(a, b, hog_cell=cell)["hog"]
    for i in range(a.shape[0]):
        assert measured[i].item() == pytest.approx(scipy.stats.spearmanr(expected[i], hog_b[i])[0], abs=1e-4)


def test_identical_maps_are_similarity_one() -> None:
    a, _ = _pair()
    for measure, values in similarity.similarities(a, a.clone()).items():
        assert torch.allclose(values, torch.ones_like(values)), measure


def test_constant_maps_are_nan_without_warnings() -> None:
    a, b = _pair(n=2)
    a[0] = 0.0
    b[1] = 3.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = similarity.similarities(a, b)
    for measure, values in found.items():
        assert torch.isnan(values).all(), measure


def test_sparse_map_is_not_constant() -> None:
    """Fewer than 1 % non-zero pixels: the 99th percentile is 0, the scale falls back to the max."""
    a = torch.zeros(1, 1, 64, 64)
    a[0, 0, 10, 10:20] = 1.0
    b = a.clone()
    b[0, 0, 40, 40] = 0.5
    found = similarity.similarities(a, b)
    assert all(torch.isfinite(v).all() for v in found.values())
    assert 0.0 < found["spearman_abs"].item() < 1.0


def test_per_image_results_do_not_depend_on_the_batch() -> None:
    a, b = _pair(n=3)
    batch = similarity.similarities(a, b)
    alone = similarity.similarities(a[2:], b[2:])
    for measure in similarity.MEASURES:
        assert batch[measure][2].item() == pytest.approx(alone[measure][0].item(), abs=1e-12)


def test_bad_input_is_a_clear_error() -> None:
    a, b = _pair()
    with pytest.raises(ValueError, match="differ"):
        similarity.similarities(a, b[:, :, :32])
    with pytest.raises(ValueError, match="unknown similarity measure"):
        similarity.similarities(a, b, measures=("pearson",))
    with pytest.raises(ValueError, match="hog cell"):
        similarity.similarities(a, b, hog_cell=32)
