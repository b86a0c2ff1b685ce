"""sMPRT: the smoothing itself, its reduction to MPRT, determinism, batch invariance, cost, Quantus."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch
from quantus_oracle import quantus
from sanity_helpers import BLOCKS, Tiny
from score_helpers import GradientMethod
from torch import Tensor, nn

import metrics
from adapters.seeding import image_seeds
from metrics import randomisation
from metrics.randomisation import BlockError
from metrics.scores import sanity
from metrics.scores.smooth_mprt import noise_stds, noisy_copies, smooth_mprt
from metrics.similarity import MEASURES
from metrics.validation import MetricInputError

torch.set_num_threads(1)


def tiny(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return Tiny().eval()


def images(n: int = 3) -> Tensor:
    return torch.randn(n, 3, 48, 48, generator=torch.Generator().manual_seed(1))


TARGET = torch.tensor([0, 1, 2, 0, 1])


class Counting(GradientMethod):
    """The gradient stand-in, counting the rows it explains."""

    def __init__(self) -> None:
        self.rows = 0

    def attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        self.rows += x.shape[0]
        return super().attribute(model, x, target)


class InputMap:
    """A model-independent map: the channel sum of the input (so the smoothed map is a mean of inputs)."""

    def attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        return x.sum(1, keepdim=True)


def test_registered_as_a_sanity_check_with_bottom_up_order() -> None:
    spec = metrics.get("smooth_mprt")
    assert spec.category == "sanity" and spec.direction == "lower" and spec.bounds == (-1.0, 1.0)
    assert spec.inputs == ("method", "blocks")
    assert spec.params["order"] == "bottom_up" and spec.params["n_samples"] == 50
    assert spec.params["noise_magnitude"] == 0.1


def test_the_smoothed_map_is_the_mean_over_the_documented_noisy_copies() -> None:
    model, x = tiny(), images()
    result = smooth_mprt(model=model, x=x, target=TARGET[:3], method=InputMap(), blocks=BLOCKS, n_samples=5,
                         noise_magnitude=0.2, seed=3, keep_maps=True)
    stds, seeds = noise_stds(x, 0.2), image_seeds(x, 3)
    for i in range(3):
        copies = noisy_copies(x[i], 5, float(stds[i]), seeds[i])
        assert torch.equal(copies[-1], x[i])  # the last copy is noise-free
        assert float((copies[:-1] - x[i]).std()) == pytest.approx(float(stds[i]), rel=0.05)
        expected = copies.sum(1).double().mean(0).float()
        assert torch.allclose(result.extras["original_maps"][i], expected, atol=1e-5)
        assert torch.allclose(result.extras["maps"][i], expected.expand(3, 48, 48), atol=1e-5)
    assert float(stds[0]) == pytest.approx(0.2 * float(x[0].max() - x[0].min()))
    # the same noisy copies for every model: a model-independent map is exactly as similar as it can be
    assert torch.allclose(result.curves, torch.ones(3, 3), atol=1e-6)


@pytest.mark.parametrize("settings", [{"n_samples": 1}, {"n_samples": 4, "noise_magnitude": 0.0}])
def test_without_noise_it_is_the_cascading_check(settings: dict) -> None:
    model, x = tiny(), images()
    smooth = smooth_mprt(model=model, x=x, target=TARGET[:3], method=GradientMethod(), blocks=BLOCKS, seed=2, **settings)
    plain = sanity.model_randomisation_cascading(model=model, x=x, target=TARGET[:3], method=GradientMethod(),
                                                 blocks=BLOCKS, order="bottom_up", seed=2)
    for measure in MEASURES:
        assert torch.allclose(smooth.extras[f"curves_{measure}"], plain.extras[f"curves_{measure}"], atol=1e-5), measure
    assert smooth.extras["block_names"] == ["stem", "body", "fc"]


def test_smoothing_changes_the_maps_and_the_scores_stay_in_range() -> None:
    model, x = tiny(), images()
    plain = smooth_mprt(model=model, x=x, target=TARGET[:3], method=GradientMethod(), blocks=BLOCKS, n_samples=1)
    smooth = smooth_mprt(model=model, x=x, target=TARGET[:3], method=GradientMethod(), blocks=BLOCKS, n_samples=6)
    assert not torch.allclose(plain.curves, smooth.curves, atol=1e-3)
    assert ((smooth.curves >= -1) & (smooth.curves <= 1)).all() and torch.isfinite(smooth.scores).all()
    assert torch.equal(smooth.scores, smooth.curves.mean(1)) and torch.equal(smooth.extras["final"], smooth.curves[:, -1])
    last = smooth_mprt(model=model, x=x, target=TARGET[:3], method=GradientMethod(), blocks=BLOCKS, n_samples=6,
                       summary="last")
    assert torch.equal(last.scores, smooth.curves[:, -1])


def test_same_seed_same_numbers_other_seed_other_noise() -> None:
    model, x = tiny(), images()
    kwargs = dict(model=model, x=x, target=TARGET[:3], method=GradientMethod(), blocks=BLOCKS, n_samples=4)
    first, again, other = smooth_mprt(seed=5, **kwargs), smooth_mprt(seed=5, **kwargs), smooth_mprt(seed=6, **kwargs)
    assert torch.equal(first.curves, again.curves)
    assert not torch.equal(first.curves, other.curves)


def test_image_scores_do_not_depend_on_the_batch_or_the_chunking() -> None:
    model, x = tiny(), images(5)
    kwargs = dict(model=model, method=GradientMethod(), blocks=BLOCKS, n_samples=3, seed=1)
    full = smooth_mprt(x=x, target=TARGET, **kwargs)
    one = smooth_mprt(x=x[3:4], target=TARGET[3:4], **kwargs)
    three = smooth_mprt(x=x[1:4], target=TARGET[1:4], **kwargs)
    chunked = smooth_mprt(x=x, target=TARGET, device_budget_bytes=1, **kwargs)  # one noisy row per explanation
    for part, rows in ((one, slice(3, 4)), (three, slice(1, 4)), (chunked, slice(0, 5))):
        for measure in MEASURES:
            assert torch.allclose(part.extras[f"curves_{measure}"], full.extras[f"curves_{measure}"][rows], atol=1e-5)


def test_cost_and_the_reuse_of_the_given_maps_and_the_model_restored() -> None:
    model, x = tiny(), images()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    method = Counting()
    given = GradientMethod().attribute(model, x, TARGET[:3])
    smooth_mprt(model=model, x=x, target=TARGET[:3], attributions=given, method=method, blocks=BLOCKS, n_samples=4)
    assert method.rows == 3 * (4 - 1) + 3 * 4 * len(BLOCKS)  # the trained model's noise-free copy is the given map
    method.rows = 0
    without = smooth_mprt(model=model, x=x, target=TARGET[:3], method=method, blocks=BLOCKS, n_samples=4)
    with_given = smooth_mprt(model=model, x=x, target=TARGET[:3], attributions=given, method=GradientMethod(),
                             blocks=BLOCKS, n_samples=4)
    assert method.rows == 3 * 4 * (1 + len(BLOCKS))
    assert torch.allclose(without.curves, with_given.curves, atol=1e-6)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


class Noise:
    """Noise from ``seed`` only, as the sanity tests' stochastic control."""

    stochastic = True

    def __init__(self, seed: int = 0) -> None:
        self.params = {"seed": seed}

    def attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        return torch.rand(x.shape[0], 1, *x.shape[2:], generator=torch.Generator().manual_seed(self.params["seed"]))


@pytest.mark.parametrize("reseed", [True, False])
def test_a_stochastic_method_gets_a_fresh_seed_per_model(reseed: bool) -> None:
    model, x = tiny(), images()
    result = smooth_mprt(model=model, x=x, target=TARGET[:3], method=Noise(seed=5), blocks=BLOCKS, n_samples=2,
                         reseed_stochastic=reseed)
    if reseed:
        assert result.curves.abs().max() < 0.15
    else:
        assert torch.allclose(result.curves, torch.ones_like(result.curves))


def test_a_failing_block_is_nan_and_the_rest_is_kept() -> None:
    model, x = tiny(), images()
    watched = model.body[0].weight.detach().clone()

    class FailsOnceBodyIsRandom(GradientMethod):
        def attribute(self, model, x, target):
            if not torch.equal(model.body[0].weight, watched):
                raise RuntimeError("cannot explain this model")
            return super().attribute(model, x, target)

    result = smooth_mprt(model=model, x=x, target=TARGET[:3], method=FailsOnceBodyIsRandom(), blocks=BLOCKS, n_samples=2)
    assert sorted(result.extras["errors"]) == ["body", "fc"]  # bottom-up: body stays random for fc
    assert torch.isfinite(result.curves[:, 0]).all() and torch.isnan(result.curves[:, 1:]).all()


@pytest.mark.parametrize("params, message", [
    ({"n_samples": 0}, r"n_samples must be an integer in \[1, 1024\], got 0"),
    ({"n_samples": 10**6}, r"n_samples must be an integer in \[1, 1024\]"),
    ({"noise_magnitude": -0.1}, r"noise_magnitude must be a finite float in \[0, 10\]"),
    ({"order": "random"}, "order must be one of 'top_down', 'bottom_up'"),
    ({"summary": "auc"}, "summary must be one of 'mean', 'last'"),
    ({"measure": "l2"}, "measure must be one of 'spearman_abs'"),
])
def test_bad_parameters_are_refused_before_any_explanation(params: dict, message: str) -> None:
    method = Counting()
    with pytest.raises(MetricInputError, match=f"^metric 'smooth_mprt': {message}"):
        metrics.get("smooth_mprt").compute(model=tiny(), x=images(), target=TARGET[:3], method=method, blocks=BLOCKS,
                                           **params)
    assert method.rows == 0


def test_bad_blocks_maps_and_models_are_refused_before_any_explanation() -> None:
    method, model, x = Counting(), tiny(), images()
    with pytest.raises(BlockError, match="does not have"):
        smooth_mprt(model=model, x=x, target=TARGET[:3], method=method, blocks=[("head", ["classifier"])])
    with pytest.raises(ValueError, match=r"needs \['blocks'\]"):
        metrics.get("smooth_mprt").compute(model=model, x=x, target=TARGET[:3], method=method, blocks=None)
    with pytest.raises(MetricInputError, match="attributions must have shape"):
        smooth_mprt(model=model, x=x, target=TARGET[:3], attributions=torch.rand(3, 1, 8, 8), method=method, blocks=BLOCKS)
    bad = torch.rand(3, 1, 48, 48)
    bad[2, 0, 0, 0] = float("nan")
    with pytest.raises(MetricInputError, match=r"NaN or infinite values \(images \[2\]\)"):
        smooth_mprt(model=model, x=x, target=TARGET[:3], attributions=bad, method=method, blocks=BLOCKS)
    with pytest.raises(MetricInputError, match="training mode"):
        smooth_mprt(model=tiny().train(), x=x, target=TARGET[:3], method=method, blocks=BLOCKS)
    assert method.rows == 0


# ----------------------------------------------------------------------------------------------
# Quantus 0.6


# Every module Quantus re-initialises (all with reset_parameters, in registration order), one block each,
# listed from the logits down as the model specs do.
PER_MODULE = [("fc", ["fc"]), ("body.1", ["body.1"]), ("body.0", ["body.0"]), ("stem.1", ["stem.1"]),
              ("stem.0", ["stem.0"])]


@pytest.mark.oracle
def test_equals_quantus_up_to_the_similarity_measure(monkeypatch) -> None:
    """With no noise (Quantus' noise comes from NumPy's global generator) and Quantus' seeding of every
    re-initialisation (torch.manual_seed(seed + 1)), our smoothed maps at every layer, compared by plain
    Spearman of |a|, are Quantus' numbers. Our scores use the sanity checks' spearman_abs instead, which
    clips at the 99th percentile (Adebayo et al.) and differs."""
    q = quantus(monkeypatch)
    model, x, target = tiny(), images(4)[:, :, :24, :24], torch.tensor([0, 1, 2, 0])
    theirs = q.SmoothMPRT(nr_samples=2, noise_magnitude=0.0, layer_order="bottom_up", seed=42, disable_warnings=True)(
        model=model, x_batch=x.numpy(), y_batch=target.numpy(), a_batch=None, explain_func=q.explain,
        explain_func_kwargs={"method": "Saliency"}, device="cpu")
    assert list(theirs) == ["original", "stem.0", "stem.1", "body.0", "body.1", "fc"]
    monkeypatch.setattr(randomisation, "block_seed", lambda seed, name: 42 + 1)
    ours = smooth_mprt(model=model, x=x, target=target, method=GradientMethod(), blocks=PER_MODULE, n_samples=2,
                       noise_magnitude=0.0, keep_maps=True, hog_cell=8)
    assert ours.extras["block_names"] == list(theirs)[1:]
    original = ours.extras["original_maps"]
    for k, layer in enumerate(ours.extras["block_names"]):
        plain = [scipy.stats.spearmanr(original[i].abs().flatten(), ours.extras["maps"][i, k].abs().flatten())[0]
                 for i in range(4)]
        np.testing.assert_allclose(plain, theirs[layer], atol=1e-6)
    clipped_vs_plain = np.abs(ours.curves.numpy() - np.array([theirs[layer] for layer in ours.extras["block_names"]]).T)
    assert clipped_vs_plain.max() > 1e-4  # 1.8e-4 here: the top 1 % (6 of 576 pixels) tied by the clip
    np.testing.assert_allclose(theirs["original"], 1.0)  # no noise: the two smoothed originals agree
