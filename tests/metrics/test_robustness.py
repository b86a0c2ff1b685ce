"""Average sensitivity, local Lipschitz estimate, continuity and the relative input, output and
representation stabilities (issue 18): equality with Quantus 0.6 given the same perturbations,
Quantus's deviations next to ours, the controls on the one-patch model, batch invariance,
determinism and clear errors.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from patch_cases import CONTROL_METHODS, Draws, PatchModel, PoisonedClean, patch_images, quantus_explainer
from quantus_oracle import quantus
from score_helpers import GradientMethod, images, linear_model, tiny_cnn
from torch import nn

import metrics
from metrics.scores.captum_scores import uniform_noise
from metrics.scores.robustness import gaussian_noise, penultimate_module, translated
from metrics.validation import MetricInputError

torch.set_num_threads(1)

NAMES = ["avg_sensitivity", "local_lipschitz", "continuity", "relative_input_stability", "relative_output_stability",
         "relative_representation_stability"]
STABILITY = {"relative_input_stability": "RelativeInputStability", "relative_output_stability": "RelativeOutputStability",
             "relative_representation_stability": "RelativeRepresentationStability"}
SAMPLES = 4


@pytest.fixture(scope="module")
def case():
    model, x, method = tiny_cnn(), images(3, size=8), GradientMethod()
    target = torch.tensor([0, 1, 2])
    return model, x, target, method, method.attribute(model, x, target)


def shared_draws(noise: torch.Tensor, n_images: int) -> Draws:
    """Quantus draws one (B, C*H*W) noise array per sample: hand it sample j of ours for every image."""
    flat = noise.numpy().reshape(noise.shape[0], -1)
    return Draws([np.broadcast_to(flat[j], (n_images, flat.shape[1])) for j in range(noise.shape[0])])


def quantus_call(reference, model, x, target, attributions, method):
    return np.asarray(reference(model=model, x_batch=x.numpy(), y_batch=target.numpy(), a_batch=attributions.numpy(),
                                device="cpu", explain_func=quantus_explainer(method)))


# ----------------------------------------------------------------------------------------------
# Quantus: equal given the same perturbations, and its deviations
# ----------------------------------------------------------------------------------------------

@pytest.mark.oracle
def test_avg_sensitivity_equals_quantus_given_the_same_noise(monkeypatch, case):
    q = quantus(monkeypatch)
    model, x, target, method, a = case
    draws = shared_draws(uniform_noise(SAMPLES, (3, 8, 8), 0.1, seed=0), 3)
    monkeypatch.setattr(np.random, "uniform", draws)
    theirs = quantus_call(q.AvgSensitivity(nr_samples=SAMPLES, lower_bound=0.1, disable_warnings=True),
                          model, x, target, a, method)
    assert draws.calls == SAMPLES
    ours = metrics.avg_sensitivity(model=model, x=x, target=target, attributions=a, method=method, n_samples=SAMPLES,
                                   radius=0.1)
    np.testing.assert_allclose(theirs, ours.scores.numpy(), rtol=1e-4)


def test_avg_sensitivity_shares_the_samples_of_max_sensitivity(case):
    model, x, target, method, a = case
    kwargs = dict(model=model, x=x, target=target, attributions=a, method=method, n_samples=5, radius=0.1, seed=7)
    average, maximum = metrics.avg_sensitivity(**kwargs), metrics.sensitivity(**kwargs)
    assert torch.allclose(average.extras["sensitivities"].amax(1), maximum.scores, rtol=1e-4)
    assert (average.scores <= maximum.scores + 1e-6).all()
    absolute = metrics.avg_sensitivity(**kwargs, relative=False)  # Yeh et al.: the change itself
    assert torch.allclose(absolute.scores, average.scores * a.flatten(1).norm(dim=1), rtol=1e-4)


@pytest.mark.oracle
def test_local_lipschitz_equals_quantus_given_the_same_noise(monkeypatch, case):
    q = quantus(monkeypatch)
    model, x, target, method, a = case
    noise = gaussian_noise(SAMPLES, (3, 8, 8), 0.1, seed=0)
    for normalise, rows in ((False, slice(None)), (True, slice(0, 1))):  # one image: batch-wide = per image
        draws = shared_draws(noise, len(x[rows]))
        monkeypatch.setattr(np.random, "normal", draws)
        theirs = quantus_call(q.LocalLipschitzEstimate(nr_samples=SAMPLES, perturb_std=0.1, normalise=normalise,
                                                       disable_warnings=True), model, x[rows], target[rows], a[rows], method)
        ours = metrics.local_lipschitz(model=model, x=x[rows], target=target[rows], attributions=a[rows], method=method,
                                       n_samples=SAMPLES, noise_std=0.1, normalise=normalise)
        np.testing.assert_allclose(theirs, ours.scores.numpy(), rtol=1e-4)


@pytest.mark.oracle
def test_quantus_local_lipschitz_normalises_by_the_batch(monkeypatch):
    q = quantus(monkeypatch)
    model, x = linear_model(torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(0))), images(2, size=8)
    x[1] *= 10.0

    class InputTimesGradient:  # a map that scales with its input: image 1's map is 10x image 0's
        def attribute(self, model, x, target):
            return (x * model[1].weight[0].view(1, 3, 8, 8)).sum(1, keepdim=True).detach()

    method, target = InputTimesGradient(), torch.zeros(2, dtype=torch.long)
    a = method.attribute(model, x, target)
    noise = gaussian_noise(SAMPLES, (3, 8, 8), 0.1, seed=0)

    def theirs(rows):
        monkeypatch.setattr(np.random, "normal", shared_draws(noise, len(x[rows])))
        reference = q.LocalLipschitzEstimate(nr_samples=SAMPLES, perturb_std=0.1, disable_warnings=True)
        return quantus_call(reference, model, x[rows], target[rows], a[rows], method)[0]

    alone, together = theirs(slice(0, 1)), theirs(slice(None))
    assert together < 0.5 * alone  # image 0's map divided by image 1's larger maximum
    ours = [metrics.local_lipschitz(model=model, x=x[rows], target=target[rows], attributions=a[rows], method=method,
                                    n_samples=SAMPLES).scores[0] for rows in (slice(0, 1), slice(None))]
    assert torch.allclose(ours[0], ours[1], rtol=1e-5)
    assert float(ours[0]) == pytest.approx(alone, rel=1e-4)


@pytest.mark.oracle
def test_continuity_equals_quantus_on_the_shifts_both_take(monkeypatch, case):
    q = quantus(monkeypatch)
    model, x, target, method, a = case
    x, target, a = x[:1], target[:1], a[:1]  # one image: Quantus's batch-wide normalisation is per image
    # W = 8, nr_steps = 7: Quantus shifts by -8 + 2k, k = 1..7 = -6, -4, -2, 0, 2, 4, 6 (0: ratio 0 here).
    theirs = quantus_call(q.Continuity(nr_steps=7, disable_warnings=True), model, x, target, a, method)
    ours = metrics.continuity(model=model, x=x, target=target, attributions=a, method=method, max_shift=6,
                              substrate=x.amin((1, 2, 3), keepdim=True).expand_as(x))
    shifts = ours.extras["shifts"].tolist()
    taken = [shifts.index(s) for s in (-6, -4, -2, 2, 4, 6)]
    np.testing.assert_allclose(theirs, ours.extras["ratios"][:, taken].amax(1).numpy(), rtol=1e-4)
    assert float(ours.scores[0]) >= float(theirs[0])  # ours also takes the odd shifts


@pytest.mark.oracle
def test_quantus_continuity_divides_a_zero_shift_by_1e_9(monkeypatch, case):
    q = quantus(monkeypatch)
    model, x, target, _, _ = case
    x, target = x[:1], target[:1]
    draws = iter(range(100))

    class Jittery:  # a stochastic method: two calls on the same input differ slightly
        def attribute(self, model, x, target):
            noise = torch.rand(x.shape[0], 1, *x.shape[2:], generator=torch.Generator().manual_seed(next(draws)))
            return GradientMethod().attribute(model, x, target) + 1e-3 * noise

    method = Jittery()
    a = method.attribute(model, x, target)
    theirs = quantus_call(q.Continuity(nr_steps=7, disable_warnings=True), model, x, target, a, method)
    assert theirs[0] > 1e4  # the zero shift: a change of the map of ~1e-3 divided by 1e-9
    ours = metrics.continuity(model=model, x=x, target=target, attributions=a, method=method, max_shift=6)
    assert float(ours.scores[0]) < 10.0


@pytest.mark.oracle
@pytest.mark.parametrize("name", sorted(STABILITY))
def test_relative_stabilities_equal_quantus_given_the_same_noise(monkeypatch, case, name):
    q = quantus(monkeypatch)
    model, x, target, method, a = case
    draws = shared_draws(uniform_noise(SAMPLES, (3, 8, 8), 0.1, seed=0), 3)
    monkeypatch.setattr(np.random, "uniform", draws)
    # Quantus's default representation is every module's output; "6" is the Flatten the head reads (our default).
    layers = {"layer_names": ["6"]} if name == "relative_representation_stability" else {}
    reference = getattr(q, STABILITY[name])(nr_samples=SAMPLES, disable_warnings=True, **layers)
    theirs = quantus_call(reference, model, x, target, a, method)
    ours = metrics.get(name).compute(model=model, x=x, target=target, attributions=a, method=method, n_samples=SAMPLES,
                                     radius=0.1)
    assert (ours.extras["n_kept"] == SAMPLES).all()  # no neighbour changed the prediction
    np.testing.assert_allclose(theirs, ours.scores.numpy(), rtol=1e-4)


@pytest.mark.oracle
def test_quantus_relative_stability_is_nan_when_one_neighbour_changes_the_prediction(monkeypatch):
    q = quantus(monkeypatch)
    model, x, method = tiny_cnn(), images(12, size=8), GradientMethod()
    with torch.no_grad():
        target = model(x).argmax(1)
    a = method.attribute(model, x, target)
    noise = uniform_noise(8, (3, 8, 8), 1.5, seed=0)
    ours = metrics.relative_input_stability(model=model, x=x, target=target, attributions=a, method=method, n_samples=8,
                                            radius=1.5)
    some = ((ours.extras["n_kept"] > 0) & (ours.extras["n_kept"] < 8)).nonzero().flatten()
    assert some.numel() > 0  # images where some, not all, neighbours keep the prediction
    rows = some[:1]
    monkeypatch.setattr(np.random, "uniform", shared_draws(noise, 1))
    theirs = quantus_call(q.RelativeInputStability(nr_samples=8, disable_warnings=True), model, x[rows], target[rows],
                          a[rows], method)
    assert np.isnan(theirs[0])
    kept = ours.extras["ratios"][rows[0]]
    assert float(ours.scores[rows[0]]) == pytest.approx(float(kept[~kept.isnan()].max()))


def test_relative_representation_stability_reads_the_classifier_input_by_default(case):
    model, x, target, method, a = case
    name, module = penultimate_module(model, x)
    assert name == "7" and module is model[7]  # the head; its input is the flattened features
    default = metrics.relative_representation_stability(model=model, x=x, target=target, attributions=a, method=method)
    named = metrics.relative_representation_stability(model=model, x=x, target=target, attributions=a, method=method,
                                                      layer="6")
    assert default.extras["layer"] == "7" and torch.allclose(default.scores, named.scores)
    conv = metrics.relative_representation_stability(model=model, x=x, target=target, attributions=a, method=method,
                                                     layer="3")
    assert not torch.allclose(default.scores, conv.scores)
    hooks = sum(len(m._forward_hooks) for m in model.modules())
    assert hooks == 0  # nothing left behind


def test_relative_stabilities_follow_their_formulas(case):
    model, x, target, method, a = case
    noise = uniform_noise(SAMPLES, (3, 8, 8), 0.1, seed=2)
    results = {name: metrics.get(name).compute(model=model, x=x, target=target, attributions=a, method=method,
                                               n_samples=SAMPLES, radius=0.1, seed=2) for name in STABILITY}
    eps = 1e-6
    with torch.no_grad():
        logits = model(x)
        features = model[:7](x)
    for i in range(3):
        for j in range(SAMPLES):
            xp = x[i:i + 1] + noise[j]
            ap = method.attribute(model, xp, target[i:i + 1])
            e = a[i:i + 1].double()
            numerator = ((e - ap) / torch.where(e == 0, eps, e)).norm()
            with torch.no_grad():
                d_input = ((x[i:i + 1] - xp) / x[i:i + 1]).norm()
                d_output = (logits[i] - model(xp)[0]).norm()
                d_repr = ((features[i] - model[:7](xp)[0]) / torch.where(features[i] == 0, eps, features[i])).norm()
            for name, denominator in (("relative_input_stability", d_input), ("relative_output_stability", d_output),
                                      ("relative_representation_stability", d_repr)):
                expected = numerator / max(float(denominator), eps)
                assert float(results[name].extras["ratios"][i, j]) == pytest.approx(float(expected), rel=1e-3)


def test_translation_moves_the_image_and_fills_what_it_leaves():
    x = torch.arange(5.0).view(1, 1, 1, 5).repeat(2, 1, 1, 1)
    fill = torch.full_like(x, -1.0)
    out = translated(x, fill, torch.tensor([2, -1]))
    assert out[0, 0, 0].tolist() == [-1, -1, 0, 1, 2]
    assert out[1, 0, 0].tolist() == [1, 2, 3, 4, -1]


# ----------------------------------------------------------------------------------------------
# Controls on the one-patch model: methods that return the oracle, random and inverted maps
# ----------------------------------------------------------------------------------------------

# Robustness measures how much a map moves with its input, not whether it points at the evidence. The
# inverted map (max - oracle) is a fixed function of the oracle: it moves as much (local Lipschitz
# 0.273 for both), a little less relative to its larger norm (avg sensitivity 0.0061 vs 0.0076), and
# where a score divides element-wise by the map (the relative stabilities) its zero at the patch's
# strongest pixel makes it the least stable (input 5183 vs 0.041 for the oracle and 87 for random;
# output 1.1e6 vs 8.4 and 9.1e3; representation 1.3e7 vs 102 and 1.1e5). Continuity: 4.37 vs 0.77
# and 3.13 (its maximum moves with the translation). Only oracle < random is what a robustness score must give.
INVERTED = "robustness does not judge where a map points: max - oracle moves with the input as the oracle does"
NOT_GUARANTEED = {(name, pair): INVERTED for name in NAMES for pair in (("oracle", "inverted"), ("random", "inverted"))}


@pytest.fixture(scope="module")
def control_scores() -> dict[tuple[str, str], float]:
    """Mean score of each control method (lower is better for every score here); measured: avg
    sensitivity 0.0076 / 0.710 (oracle / random), local Lipschitz 0.273 / 4.89, continuity 0.774 /
    3.13, relative input 0.041 / 87, output 8.4 / 9.1e3, representation 102 / 1.1e5."""
    model, x = PatchModel(), patch_images(6)
    target = torch.zeros(6, dtype=torch.long)
    return {(name, control): metrics.get(name).compute(model=model, x=x, target=target, method=method,
                                                       attributions=method.attribute(model, x, target)).summary()["mean"]
            for name in NAMES for control, method in CONTROL_METHODS.items()}


# The pairs in NOT_GUARANTEED (with their reasons and measured numbers) are left out, not asserted weakly.
@pytest.mark.parametrize("name, better, worse", [
    pytest.param(name, better, worse, id=f"{name}-{better}>{worse}") for name in NAMES
    for better, worse in [("oracle", "random"), ("oracle", "inverted"), ("random", "inverted")]
    if (name, (better, worse)) not in NOT_GUARANTEED])
def test_controls_on_the_one_patch_model(control_scores, name, better, worse):
    assert control_scores[(name, better)] < 0.5 * control_scores[(name, worse)]


def test_a_map_that_ignores_the_input_scores_zero():
    model = linear_model(torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(0)))
    x, method = images(2, size=8), GradientMethod()  # the gradient of a linear model does not depend on x
    a = method.attribute(model, x, torch.zeros(2, dtype=torch.long))
    for name in NAMES:
        kwargs = {"layer": "1"} if name == "relative_representation_stability" else {}
        result = metrics.get(name).compute(model=model, x=x, target=0, attributions=a, method=method, **kwargs)
        assert (result.scores.nan_to_num(0.0) < 1e-6).all(), name


# ----------------------------------------------------------------------------------------------
# Batch invariance, determinism, bad input
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def batch_case():
    model, x, method = tiny_cnn(), images(5), GradientMethod()
    target = torch.tensor([0, 1, 2, 0, 1])
    return model, x, target, method, method.attribute(model, x, target)


@pytest.mark.parametrize("name", NAMES)
def test_one_three_or_all_images_give_the_same_scores(batch_case, name):
    model, x, target, method, a = batch_case
    spec = metrics.get(name)

    def scores(rows, **extra):
        return spec.compute(model=model, x=x[rows], target=target[rows], attributions=a[rows], method=method,
                            n_samples=3, **extra).scores if name != "continuity" else \
            spec.compute(model=model, x=x[rows], target=target[rows], attributions=a[rows], method=method,
                         max_shift=2, **extra).scores

    full = scores(slice(None))
    for other in (torch.cat([scores(slice(i, i + 1)) for i in range(5)]),
                  torch.cat([scores(slice(0, 3)), scores(slice(3, 5))]), scores(slice(None), device_budget_bytes=1)):
        assert torch.equal(torch.isnan(full), torch.isnan(other))
        assert torch.allclose(full.nan_to_num(), other.nan_to_num(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "continuity"])  # continuity's shifts are not random
def test_perturbations_follow_the_seed(batch_case, name):
    model, x, target, method, a = batch_case
    kwargs = dict(model=model, x=x, target=target, attributions=a, method=method, n_samples=3)
    first, again, other = (metrics.get(name).compute(**kwargs, seed=s).scores for s in (5, 5, 6))
    assert torch.equal(first.nan_to_num(), again.nan_to_num())
    assert not torch.allclose(first, other)


BAD = [("avg_sensitivity", {"radius": 0.0}, "radius must be a finite float > 0"),
       ("avg_sensitivity", {"relative": 1}, "relative must be a bool"),
       ("local_lipschitz", {"noise_std": -0.1}, "noise_std must be a finite float > 0"),
       ("local_lipschitz", {"n_samples": 10**6}, r"n_samples must be an integer in \[1, 1024\]"),
       ("continuity", {"max_shift": 0}, r"max_shift must be an integer in \[1, 1024\]"),
       ("continuity", {"max_shift": 16}, r"max_shift \(16\) must be smaller than the image width \(16\)"),
       ("relative_input_stability", {"eps_min": 0.0}, "eps_min must be a finite float > 0"),
       ("relative_output_stability", {"n_samples": 0}, r"n_samples must be an integer in \[1, 1024\]"),
       ("relative_representation_stability", {"layer": ""}, "layer must be None or a module name"),
       ("relative_representation_stability", {"layer": 3}, "layer must be None or a module name"),
       ("relative_representation_stability", {"layer": "fc9"}, "the model has no layer 'fc9'")]


@pytest.mark.parametrize("name, bad, message", BAD, ids=[f"{n}-{next(iter(b))}" for n, b, _ in BAD])
def test_bad_parameters_are_refused_with_a_clear_message(batch_case, name, bad, message):
    model, x, target, method, a = batch_case
    with pytest.raises(MetricInputError, match=message):
        metrics.get(name).compute(model=model, x=x, target=target, attributions=a, method=method, **bad)
    if "must be" in message and "smaller" not in message:  # not the bounds that need x or the model
        with pytest.raises(MetricInputError, match=message):
            metrics.get(name).check_params(bad)


@pytest.mark.parametrize("name", NAMES)
def test_non_finite_clean_logits_name_the_model_before_any_explanation(batch_case, name):
    model, x, target, method, a = batch_case
    poisoned = PoisonedClean(model, x, [1, 3])

    class Tripwire:
        def attribute(self, model, x, target):
            raise AssertionError("the method ran before the bad model was named")

    with pytest.raises(MetricInputError, match=r"\(logits\) is not finite .*images \[1, 3\]"):
        metrics.get(name).compute(model=poisoned, x=x, target=target, attributions=a, method=Tripwire())
    assert poisoned.perturbed_rows == 0


@pytest.mark.parametrize("name", NAMES)
def test_a_score_needs_a_method_and_matching_maps(batch_case, name):
    model, x, target, method, a = batch_case
    spec = metrics.get(name)
    with pytest.raises(ValueError, match="needs \\['method'\\]"):
        spec.compute(model=model, x=x, target=target, attributions=a, method=None)
    with pytest.raises(MetricInputError, match="method must be an adapters Method"):
        spec.compute(model=model, x=x, target=target, attributions=a, method=object())
    with pytest.raises(MetricInputError, match="attributions must have shape"):
        spec.compute(model=model, x=x, target=target, attributions=a[:2], method=method)


def test_a_representation_that_is_not_a_tensor_is_refused():
    class Pair(nn.Module):
        def forward(self, x):
            return x, x

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.pair, self.head = Pair(), nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
            self.eval()

        def forward(self, x):
            return self.head(self.pair(x)[0])

    model, x, method = Model(), images(2, size=8), GradientMethod()
    a = method.attribute(model, x, torch.zeros(2, dtype=torch.long))
    with pytest.raises(MetricInputError, match="layer 'pair' gives tuple, not a tensor"):
        metrics.relative_representation_stability(model=model, x=x, target=0, attributions=a, method=method, layer="pair")
    assert sum(len(m._forward_hooks) for m in model.modules()) == 0
    result = metrics.relative_representation_stability(model=model, x=x, target=0, attributions=a, method=method)
    assert result.extras["layer"] == "head.1"


def test_registry_entries():
    for name in NAMES:
        spec = metrics.get(name)
        assert spec.category == "robustness" and spec.direction == "lower" and spec.inputs == ("method",)
        assert spec.description and spec.bounds is None
