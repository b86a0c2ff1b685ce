"""Faithfulness correlation: closed forms on a linear model, and equality with Quantus given the same
subsets."""
import numpy as np
import pytest
import torch
from quantus_oracle import quantus
from score_helpers import images, linear_model, maps, tiny_cnn

import metrics
from metrics.scores.faithfulness_correlation import random_subsets


def linear_case():
    w, x = torch.randn(3, 8, 8), images(2, size=8)
    contributions = (w * x).sum(1, keepdim=True)  # exact per-pixel contributions to logit 0
    return linear_model(w), x, contributions


def test_exact_contributions_correlate_perfectly_and_their_negation_anti_correlates():
    model, x, contributions = linear_case()
    kwargs = dict(model=model, x=x, target=0, n_runs=20, subset_fraction=0.25)
    assert torch.allclose(metrics.faithfulness_correlation(attributions=contributions, **kwargs).scores,
                          torch.ones(2), atol=1e-5)
    assert torch.allclose(metrics.faithfulness_correlation(attributions=-contributions, **kwargs).scores,
                          -torch.ones(2), atol=1e-5)


def test_drops_are_the_output_change_and_sums_the_subset_attributions():
    model, x, contributions = linear_case()
    result = metrics.faithfulness_correlation(model=model, x=x, target=0, attributions=contributions, n_runs=5,
                                              subset_fraction=0.25)
    assert torch.allclose(result.extras["output_drops"], result.extras["attribution_sums"], atol=1e-4)
    subsets = random_subsets(5, 64, 16, seed=0)
    assert torch.allclose(result.extras["attribution_sums"][:, 0], contributions.flatten(1)[:, subsets[0]].sum(1),
                          atol=1e-5)


def test_a_constant_map_has_no_score():
    model, x, _ = linear_case()
    result = metrics.faithfulness_correlation(model=model, x=x, target=0, attributions=torch.ones(2, 1, 8, 8),
                                              n_runs=10)
    assert torch.isnan(result.scores).all()
    assert result.summary()["n_no_score"] == 2


def test_subsets_are_a_fraction_of_the_image_drawn_from_the_seed():
    subsets = random_subsets(4, 100, 10, seed=3)
    assert subsets.shape == (4, 10)
    assert all(len(set(row.tolist())) == 10 for row in subsets)  # no repeats within a subset
    assert torch.equal(subsets, random_subsets(4, 100, 10, seed=3))
    assert not torch.equal(subsets, random_subsets(4, 100, 10, seed=4))


@pytest.mark.oracle
def test_equals_quantus_given_the_same_subsets(monkeypatch):
    q = quantus(monkeypatch)
    model, x, a = tiny_cnn(channels=1), images(3, channels=1), maps(3)  # grayscale: features are pixels
    y = torch.tensor([0, 1, 2])
    n_runs, size = 12, 64
    subsets = random_subsets(n_runs, 256, size, seed=0).numpy()
    calls = iter(range(n_runs * 3))

    def choice(n, k, replace=False):  # Quantus draws one subset per image per run: hand it ours
        assert (n, k, replace) == (256, size, False)
        return subsets[next(calls) // 3]

    monkeypatch.setattr(np.random, "choice", choice)
    ref = q.FaithfulnessCorrelation(nr_runs=n_runs, subset_size=size, perturb_baseline="black",
                                    return_aggregate=False, disable_warnings=True)
    theirs = np.asarray(ref(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(), device="cpu"))
    ours = metrics.faithfulness_correlation(model=model, x=x, target=y, attributions=a, n_runs=n_runs,
                                            subset_fraction=size / 256,
                                            baseline=x.amin((1, 2, 3), keepdim=True).expand_as(x))
    np.testing.assert_allclose(theirs, ours.scores.numpy(), atol=1e-4)
