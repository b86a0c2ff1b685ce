"""Sparseness, complexity and effective complexity: their formulas by hand, the extremes, Quantus."""
import math

import numpy as np
import pytest
import torch
from quantus_oracle import quantus
from score_helpers import maps

import metrics
from metrics.validation import MetricInputError

torch.set_num_threads(1)

NAMES = ["sparseness", "complexity", "effective_complexity"]


def score(name: str, a: torch.Tensor, **params) -> torch.Tensor:
    x = torch.zeros(a.shape[0], 3, *a.shape[-2:])
    return metrics.get(name).compute(x=x, attributions=a, **params).scores


def test_registered_in_the_complexity_family() -> None:
    assert set(NAMES) <= set(metrics.names("complexity"))
    assert {n: metrics.get(n).direction for n in NAMES} == {"sparseness": "higher", "complexity": "lower",
                                                           "effective_complexity": "lower"}
    assert metrics.get("sparseness").bounds == (0.0, 1.0)
    assert metrics.get("complexity").bounds is None and metrics.get("effective_complexity").bounds is None


def test_formulas_by_hand_on_a_two_by_two_map() -> None:
    a = torch.tensor([[[[1.0, -2.0], [3.0, -4.0]]]])  # |a| sorted: 1, 2, 3, 4; sum 10
    # Gini: sum (2i - P - 1) a_(i) / (P sum a) = (-3*1 - 1*2 + 1*3 + 3*4) / (4 * 10)
    assert float(score("sparseness", a)) == pytest.approx(10 / 40)
    p = np.array([0.1, 0.2, 0.3, 0.4])
    assert float(score("complexity", a)) == pytest.approx(float(-(p * np.log(p)).sum()), abs=1e-6)
    assert float(score("effective_complexity", a, eps=0.5)) == 2  # |a| > 0.5 * 4: 3 and 4
    assert float(score("effective_complexity", a, eps=2.5, relative=False)) == 2  # |a| > 2.5
    result = metrics.effective_complexity(x=torch.zeros(1, 1, 2, 2), attributions=a, eps=0.5)
    assert float(result.extras["fraction"][0]) == 0.5


def test_a_multichannel_map_is_summed_over_channels_before_the_absolute_value() -> None:
    signed = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    for name in NAMES:
        assert torch.equal(score(name, signed), score(name, signed.sum(1, keepdim=True)))


@pytest.mark.parametrize("size", [4, 16])
def test_one_hot_and_uniform_maps_are_the_extremes(size: int) -> None:
    pixels = size * size
    one_hot = torch.zeros(1, 1, size, size)
    one_hot[0, 0, 1, 2] = 5.0
    uniform = torch.full((1, 1, size, size), 0.3)
    assert float(score("sparseness", one_hot)) == pytest.approx((pixels - 1) / pixels)
    assert float(score("sparseness", uniform)) == pytest.approx(0.0, abs=1e-12)
    assert float(score("complexity", one_hot)) == 0.0
    assert float(score("complexity", uniform)) == pytest.approx(math.log(pixels))
    assert float(score("effective_complexity", one_hot)) == 1
    assert float(score("effective_complexity", uniform)) == pixels
    # Any other map lies between the extremes.
    a = maps(6, size)
    assert ((score("sparseness", a) > 0) & (score("sparseness", a) < (pixels - 1) / pixels)).all()
    assert ((score("complexity", a) > 0) & (score("complexity", a) < math.log(pixels))).all()


def test_scores_do_not_depend_on_the_scale_of_the_map() -> None:
    a = maps(3)
    for name in NAMES:
        assert torch.allclose(score(name, a), score(name, 1e-6 * a), rtol=1e-5), name
        assert torch.allclose(score(name, a), score(name, -1e3 * a), rtol=1e-5), name


def test_an_all_zero_map_has_no_gini_and_no_entropy_and_counts_nothing() -> None:
    a = maps(3)
    a[1] = 0.0
    for name in ("sparseness", "complexity"):
        s = score(name, a)
        assert torch.isnan(s[1]) and torch.isfinite(s[[0, 2]]).all()
    assert score("effective_complexity", a)[1] == 0


@pytest.mark.parametrize("name", NAMES)
def test_image_scores_do_not_depend_on_the_batch(name: str) -> None:
    a = maps(6)
    a[4] *= 1e-4  # a faint map among strong ones
    full = score(name, a)
    assert torch.equal(score(name, a[4:5]), full[4:5])
    assert torch.equal(score(name, a[2:5]), full[2:5])


@pytest.mark.parametrize("name, params, message", [
    ("effective_complexity", {"eps": 1.0}, r"eps must be below 1 with relative=True .*, got 1.0"),
    ("effective_complexity", {"eps": -1e-5}, r"eps must be a finite float >= 0, got -1e-05"),
    ("effective_complexity", {"eps": float("inf"), "relative": False}, r"eps must be a finite float >= 0"),
    ("effective_complexity", {"relative": 1}, "relative must be a bool"),
    ("sparseness", {"eps": 0.1}, "unknown parameter"),
])
def test_bad_parameters_are_refused(name: str, params: dict, message: str) -> None:
    with pytest.raises((MetricInputError, TypeError), match=message):
        score(name, maps(2), **params)


def test_bad_maps_are_refused() -> None:
    a = maps(2)
    a[1, 0, 3, 3] = float("nan")
    for name in NAMES:
        with pytest.raises(MetricInputError, match=r"NaN or infinite values \(images \[1\]\)"):
            score(name, a)
        with pytest.raises(MetricInputError, match="attributions must have shape"):
            metrics.get(name).compute(x=torch.zeros(2, 3, 16, 16), attributions=torch.rand(2, 1, 8, 8))
        with pytest.raises(MetricInputError, match="x must be a 4-D tensor"):
            metrics.get(name).compute(x=torch.zeros(16, 16), attributions=torch.rand(2, 1, 16, 16))


# ----------------------------------------------------------------------------------------------
# Quantus 0.6


def _quantus(q, cls, a: np.ndarray, **kwargs) -> np.ndarray:
    n = a.shape[0]
    metric = getattr(q, cls)(disable_warnings=True, **kwargs)
    return np.asarray(metric(model=None, x_batch=np.zeros((n, 1, *a.shape[-2:]), np.float32),
                             y_batch=np.zeros(n, dtype=int), a_batch=a.copy(), device="cpu"), dtype=float)


@pytest.mark.oracle
def test_complexity_equals_quantus(monkeypatch) -> None:
    q = quantus(monkeypatch)
    a = (torch.randn(6, 1, 16, 16, generator=torch.Generator().manual_seed(0)) ** 3)
    np.testing.assert_allclose(score("complexity", a).numpy(), _quantus(q, "Complexity", a.numpy()), rtol=1e-5)


@pytest.mark.oracle
def test_sparseness_equals_quantus_on_maps_of_similar_scale(monkeypatch) -> None:
    q = quantus(monkeypatch)
    a = maps(6)
    np.testing.assert_allclose(score("sparseness", a).numpy(), _quantus(q, "Sparseness", a.numpy()), atol=1e-6)


@pytest.mark.oracle
def test_effective_complexity_equals_quantus_where_the_batch_maximum_is_each_maximum(monkeypatch) -> None:
    q = quantus(monkeypatch)
    a = maps(6) ** 6  # many values below 1e-5 of the maximum
    a = a / a.flatten(1).amax(1).view(-1, 1, 1, 1)  # every image's maximum is the batch's: 1
    ours = score("effective_complexity", a).numpy()
    np.testing.assert_array_equal(ours, _quantus(q, "EffectiveComplexity", a.numpy()))
    assert 0 < ours.min() < 256
    # Without normalisation, Quantus' count is the paper's absolute threshold.
    raw = 3e-3 * a
    np.testing.assert_array_equal(score("effective_complexity", raw, eps=1e-5, relative=False).numpy(),
                                  _quantus(q, "EffectiveComplexity", raw.numpy(), normalise=False))


@pytest.mark.oracle
def test_quantus_sparseness_of_a_one_hot_map_is_low_by_the_added_1e_7(monkeypatch) -> None:
    q = quantus(monkeypatch)
    size = 224
    pixels = size * size
    one_hot = torch.zeros(1, 1, size, size)
    one_hot[0, 0, 100, 100] = 1.0
    theirs = float(_quantus(q, "Sparseness", one_hot.numpy())[0])
    ours = float(score("sparseness", one_hot)[0])
    assert ours == pytest.approx((pixels - 1) / pixels, rel=1e-7)  # 0.99998
    assert theirs == pytest.approx((pixels - 1) / (pixels * (1 + 1e-7 * pixels)), rel=1e-5)  # 0.99500
    assert ours - theirs > 4.9e-3


@pytest.mark.oracle
def test_quantus_scores_a_faint_map_by_its_batch_mates(monkeypatch) -> None:
    """Quantus divides the whole batch by one maximum: a faint map scores differently alone and next
    to strong ones (sparseness through its +1e-7, effective complexity through its fixed eps)."""
    q = quantus(monkeypatch)
    faint = maps(1, seed=5) * 1e-5
    batch = torch.cat([faint, maps(2, seed=6)])
    alone_gini, mates_gini = _quantus(q, "Sparseness", faint.numpy())[0], _quantus(q, "Sparseness", batch.numpy())[0]
    assert abs(alone_gini - mates_gini) > 5e-3  # 0.3461 alone vs 0.3392 with batch-mates
    alone_count = _quantus(q, "EffectiveComplexity", faint.numpy())[0]
    mates_count = _quantus(q, "EffectiveComplexity", batch.numpy())[0]
    assert alone_count == 256 and mates_count == 0  # every value of the faint map is below 1e-5 of the batch's
    for name in ("sparseness", "effective_complexity"):
        assert torch.equal(score(name, faint)[0], score(name, batch)[0])
    assert float(score("sparseness", faint)[0]) == pytest.approx(alone_gini, abs=1e-5)
