"""Infidelity and sensitivity through captum.metrics: closed forms, the definition by hand, and the
batch dependence of Quantus's batch-wide normalisation."""
import numpy as np
import pytest
import torch
from quantus_oracle import quantus
from score_helpers import GradientMethod, images, linear_model, maps, tiny_cnn

import metrics
from metrics.scores.captum_scores import uniform_noise


def test_the_exact_gradient_of_a_linear_model_has_zero_infidelity_and_a_random_map_does_not():
    w, x = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(0)), images(3, size=8)
    model = linear_model(w)
    gradient = w.sum(0, keepdim=True).expand(3, 1, 8, 8)  # per-pixel: the noise is shared by the channels
    exact = metrics.infidelity(model=model, x=x, target=0, attributions=gradient)
    random = metrics.infidelity(model=model, x=x, target=0, attributions=maps(3, 8))
    assert (exact.scores < 1e-4).all()  # zero up to float32 rounding of the sums
    assert (random.scores > 1e-2).all()


def test_infidelity_is_invariant_to_the_scale_of_the_map():
    model, x, a = tiny_cnn(), images(2), maps(2)
    base = metrics.infidelity(model=model, x=x, target=0, attributions=a).scores
    assert torch.allclose(metrics.infidelity(model=model, x=x, target=0, attributions=100 * a).scores, base,
                          rtol=1e-4, atol=1e-9)


def test_a_map_that_ignores_the_input_has_zero_sensitivity():
    model = linear_model(torch.randn(3, 8, 8))  # its gradient does not depend on x
    x = images(2, size=8)
    method = GradientMethod()
    result = metrics.sensitivity(model=model, x=x, target=0, attributions=method.attribute(model, x, torch.zeros(2, dtype=torch.long)),
                                 method=method)
    assert (result.scores < 1e-6).all()


def test_sensitivity_is_the_max_relative_change_over_the_seeded_perturbations():
    model, x, method = tiny_cnn(), images(2), GradientMethod()
    target = torch.tensor([0, 2])
    a = method.attribute(model, x, target)
    result = metrics.sensitivity(model=model, x=x, target=target, attributions=a, method=method, n_samples=4,
                                 radius=0.1, seed=5)
    noise = uniform_noise(4, (3, 16, 16), 0.1, seed=5)
    by_hand = torch.stack([
        torch.stack([(method.attribute(model, x[i:i + 1] + noise[j], target[i:i + 1]) - a[i]).norm() / a[i].norm()
                     for j in range(4)]).max() for i in range(2)])
    assert torch.allclose(result.scores, by_hand, rtol=1e-4)
    assert (result.scores > 0).all()


def test_sensitivity_needs_a_method():
    model, x = tiny_cnn(), images(1)
    with pytest.raises(ValueError, match="method"):
        metrics.sensitivity(model=model, x=x, target=0, attributions=maps(1), method=None)
    with pytest.raises(ValueError, match="method"):
        metrics.get("sensitivity").fn(model=model, x=x, target=0, attributions=maps(1), method=object())


@pytest.mark.oracle
def test_quantus_batch_wide_normalisation_makes_a_score_depend_on_the_other_images(monkeypatch):
    q = quantus(monkeypatch)
    model, x, a = tiny_cnn(channels=1), images(2, channels=1, size=8), maps(2, 8)
    a[1] *= 10  # another image with a larger map
    y = np.zeros(2, dtype=int)

    def quantus_infidelity(xs, maps_):
        ref = q.Infidelity(perturb_patch_sizes=[4], n_perturb_samples=1, normalise=True, disable_warnings=True)
        return np.asarray(ref(model=model, x_batch=xs.numpy(), y_batch=y[:len(xs)], a_batch=maps_.numpy(), device="cpu"))

    alone, together = quantus_infidelity(x[:1], a[:1])[0], quantus_infidelity(x, a)[0]
    assert abs(alone - together) > 1e-3 * max(abs(alone), 1e-12)  # image 0's score moved
    ours_alone = metrics.infidelity(model=model, x=x[:1], target=0, attributions=a[:1]).scores[0]
    ours_together = metrics.infidelity(model=model, x=x, target=0, attributions=a).scores[0]
    assert torch.allclose(ours_alone, ours_together, rtol=1e-5)
