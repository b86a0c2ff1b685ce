"""Completeness, non-sensitivity and input invariance: closed forms on tiny models, refusals, Quantus."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from quantus_oracle import quantus
from score_helpers import GradientMethod, images, linear_model, maps, tiny_cnn
from torch import Tensor, nn

import adapters
import metrics
from metrics.validation import MetricInputError

torch.set_num_threads(1)

NAMES = ["completeness", "non_sensitivity", "input_invariance"]


class GradientTimesInput:
    """Signed gradient x input summed over channels (not input invariant: it multiplies by x)."""

    params = {"reduction": "sum"}

    def attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        x = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(x).gather(1, target.view(-1, 1)).sum(), x)
        return (grad * x).sum(1, keepdim=True).detach()


class Declares:
    """A stand-in method that only declares its parameters (for completeness' checks)."""

    def __init__(self, **params) -> None:
        self.params = params

    def attribute(self, model, x, target):  # pragma: no cover - completeness never re-explains
        raise AssertionError("completeness must not re-explain")


def integer_linear(c: int = 3, size: int = 8, seed: int = 0) -> tuple[nn.Module, Tensor, Tensor]:
    """A linear model with small integer weights and integer inputs: every sum below is exact in float32."""
    g = torch.Generator().manual_seed(seed)
    weight = torch.randint(-3, 4, (c, size, size), generator=g).float()
    x = torch.randint(-4, 5, (2, c, size, size), generator=g).float()
    return linear_model(weight), x, weight


def test_registered_in_the_axiomatic_family() -> None:
    for name in NAMES:
        spec = metrics.get(name)
        assert spec.category == "axiomatic" and spec.direction == "lower" and spec.bounds is None
    assert metrics.get("completeness").inputs == ("method",) and metrics.get("input_invariance").inputs == ("method",)
    assert metrics.get("non_sensitivity").inputs == ()


# ----------------------------------------------------------------------------------------------
# Completeness


def test_gradient_times_input_of_a_linear_model_is_exactly_complete() -> None:
    model, x, weight = integer_linear()
    a = (weight * x).sum(1, keepdim=True)  # sum a = f(x) - f(0) exactly
    result = metrics.completeness(model=model, x=x, target=0, attributions=a, method=Declares(reduction="sum"))
    assert torch.equal(result.scores, torch.zeros(2))
    logit = (weight * x).flatten(1).sum(1)
    assert torch.equal(result.extras["output_change"], logit) and torch.equal(result.extras["attribution_sum"], logit)
    off = metrics.completeness(model=model, x=x, target=0, attributions=a * 1.1, method=Declares(), error="absolute")
    assert torch.allclose(off.scores, 0.1 * logit.abs(), rtol=1e-5)


def test_completeness_of_integrated_gradients_is_its_convergence_delta() -> None:
    model, x, target = tiny_cnn(), images(3), torch.tensor([0, 1, 2])
    method = adapters.get("integrated_gradients", n_steps=64)
    a = method.attribute(model, x, target)
    result = metrics.completeness(model=model, x=x, target=target, attributions=a, method=method)
    delta = method.diagnostics["convergence_delta"].abs()
    assert torch.allclose(result.extras["absolute_error"], delta, atol=1e-5)
    assert (result.scores < 0.05).all()  # a complete method, up to the integration error
    saliency_like = metrics.completeness(model=model, x=x, target=target, attributions=a.abs() * 3, method=Declares())
    assert (saliency_like.scores > result.scores).all()


def test_the_baseline_is_the_methods_own_unless_given() -> None:
    model, x, weight = integer_linear()
    a = (weight * (x - 0.5)).sum(1, keepdim=True)  # integrated gradients from the constant 0.5
    method = Declares(reduction="sum", baseline=0.5)
    own = metrics.completeness(model=model, x=x, target=0, attributions=a, method=method)
    assert torch.allclose(own.scores, torch.zeros(2), atol=1e-6) and "0.5" in own.extras["baseline"]
    zeros = metrics.completeness(model=model, x=x, target=0, attributions=a, method=method, baseline="zeros")
    assert (zeros.scores > 1e-3).all()
    tensor = metrics.completeness(model=model, x=x, target=0, attributions=a, method=method,
                                  baseline=torch.full((3, 8, 8), 0.5))
    assert torch.allclose(tensor.scores, own.scores)


@pytest.mark.parametrize("reduction", ["max_abs", "sum_abs", "mean"])
def test_a_map_that_lost_the_signed_channel_sum_is_no_score(reduction: str) -> None:
    model, x = tiny_cnn(), images(2)
    result = metrics.completeness(model=model, x=x, target=0, attributions=maps(2), method=Declares(reduction=reduction))
    assert torch.isnan(result.scores).all() and result.summary()["n_no_score"] == 2
    assert f"{reduction!r}" in result.extras["not_applicable"] and "reduction='sum'" in result.extras["not_applicable"]
    saliency = adapters.get("saliency")
    result = metrics.completeness(model=model, x=x, target=0, attributions=saliency.attribute(model, x, 0),
                                  method=saliency)
    assert torch.isnan(result.scores).all()


def test_no_output_change_is_no_relative_score() -> None:
    model, x, _ = integer_linear()
    a = torch.zeros(2, 1, 8, 8)
    same = metrics.completeness(model=model, x=x, target=0, attributions=a, method=Declares(), baseline=x)
    assert torch.isnan(same.scores).all()
    assert torch.equal(metrics.completeness(model=model, x=x, target=0, attributions=a, method=Declares(), baseline=x,
                                            error="absolute").scores, torch.zeros(2))


@pytest.mark.oracle
def test_quantus_completeness_is_float_equality_after_batch_normalisation_from_the_image_minimum(monkeypatch) -> None:
    q = quantus(monkeypatch)
    model, x, weight = integer_linear(c=1)
    black = x.amin((1, 2, 3), keepdim=True)  # Quantus' "black": each image's minimum value
    a = (weight * (x - black)).sum(1, keepdim=True)  # exactly complete from that baseline
    kwargs = dict(model=model, x_batch=x.numpy(), y_batch=np.zeros(2, dtype=int), device="cpu")
    assert list(q.Completeness(disable_warnings=True, normalise=False)(a_batch=a.numpy(), **kwargs)) == [True, True]
    assert list(q.Completeness(disable_warnings=True)(a_batch=a.numpy(), **kwargs)) == [False, False]  # normalise=True
    nudged = a.clone()
    nudged[:, 0, 0, 0] += 1e-3  # relative error ~1e-5
    assert list(q.Completeness(disable_warnings=True, normalise=False)(a_batch=nudged.numpy(), **kwargs)) == [False, False]
    ours = metrics.completeness(model=model, x=x, target=0, attributions=a, method=Declares(), baseline=black.expand_as(x))
    assert torch.equal(ours.scores, torch.zeros(2))
    nudged_ours = metrics.completeness(model=model, x=x, target=0, attributions=nudged, method=Declares(),
                                       baseline=black.expand_as(x))
    assert (nudged_ours.scores < 1e-4).all()  # a continuous error, not a failed float equality
    assert (metrics.completeness(model=model, x=x, target=0, attributions=a, method=Declares()).scores > 0.01).all()


@pytest.mark.oracle
def test_quantus_completeness_moves_only_the_first_channel_of_an_rgb_image_to_the_baseline(monkeypatch) -> None:
    """Quantus replaces as many input values as the map has (H*W of a (N, 1, H, W) map): on RGB input
    its "baseline" image is x with only its first channel set to black."""
    q = quantus(monkeypatch)
    model, x, weight = integer_linear(c=3)
    black = x.amin((1, 2, 3), keepdim=True)
    complete = (weight * (x - black)).sum(1, keepdim=True)
    first_channel_only = (weight[:1] * (x[:, :1] - black)).sum(1, keepdim=True)
    kwargs = dict(model=model, x_batch=x.numpy(), y_batch=np.zeros(2, dtype=int), device="cpu")
    theirs = q.Completeness(disable_warnings=True, normalise=False)
    assert list(theirs(a_batch=complete.numpy(), **kwargs)) == [False, False]
    assert list(theirs(a_batch=first_channel_only.numpy(), **kwargs)) == [True, True]
    ours = metrics.completeness(model=model, x=x, target=0, attributions=complete, method=Declares(),
                                baseline=black.expand_as(x))
    assert torch.equal(ours.scores, torch.zeros(2))


# ----------------------------------------------------------------------------------------------
# Non-sensitivity


def sparse_linear(size: int = 8) -> tuple[nn.Module, Tensor, Tensor]:
    """A linear model that ignores the pixels of its left half, and images that are nowhere zero."""
    # logits of order 1: float32 rounding (~1e-7) stays far below eps_output (1e-5) and every seen pixel moves f more
    weight = (torch.rand(3, size, size, generator=torch.Generator().manual_seed(3)) + 0.5) * 0.01
    weight[:, :, : size // 2] = 0.0
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(4)) + 0.5
    return linear_model(weight), x, weight


def test_non_sensitivity_counts_the_disagreements_of_zero_attribution_and_no_effect() -> None:
    model, x, weight = sparse_linear()
    ignored = (weight.abs().sum(0) == 0)  # (8, 8): the model's insensitive pixels
    kwargs = dict(model=model, x=x, target=0, score="logit")
    perfect = weight.abs().sum(0).expand(2, 1, 8, 8)
    assert torch.equal(metrics.non_sensitivity(attributions=perfect, **kwargs).scores, torch.zeros(2))
    a = maps(2, 8)
    a[:, :, :2, :] = 0.0  # zero attribution on the top two rows
    zero = torch.zeros(8, 8, dtype=torch.bool)
    zero[:2, :] = True
    expected = float((zero ^ ignored).sum())  # 16 + 32 - 2 * 8 = 32
    result = metrics.non_sensitivity(attributions=a, **kwargs)
    assert torch.equal(result.scores, torch.full((2,), expected))
    assert torch.equal(result.extras["n_zero"], torch.full((2,), 16.0))
    assert torch.equal(result.extras["n_insensitive"], torch.full((2,), 32.0))
    assert torch.equal(result.extras["fraction"], torch.full((2,), expected / 64))
    uniform = metrics.non_sensitivity(attributions=torch.ones(2, 1, 8, 8), **kwargs).scores
    assert torch.equal(uniform, torch.full((2,), 32.0))  # the ignored half has attribution


def test_patches_are_the_features_and_the_last_ones_may_be_smaller() -> None:
    model, x, weight = sparse_linear()
    result = metrics.non_sensitivity(model=model, x=x, target=0, attributions=maps(2, 8), patch=3, score="logit")
    assert result.extras["n_features"] == 9  # 3 x 3 patches of sizes 3, 3, 2
    # columns 0-3 are ignored: patch column 0 (cols 0-2) is insensitive, the others see cols 3-7
    assert torch.equal(result.extras["n_insensitive"], torch.full((2,), 3.0))
    assert torch.equal(result.scores, torch.full((2,), 3.0))  # every patch has attribution


def test_an_all_zero_map_has_zero_attribution_everywhere() -> None:
    model, x, _ = sparse_linear()
    result = metrics.non_sensitivity(model=model, x=x, target=0, attributions=torch.zeros(2, 1, 8, 8), score="logit")
    assert torch.equal(result.scores, torch.full((2,), 32.0))  # the sensitive half has none


@pytest.mark.oracle
def test_non_sensitivity_equals_quantus_on_one_channel_pixels(monkeypatch) -> None:
    q = quantus(monkeypatch)
    model, x, target = tiny_cnn(channels=1), images(3, channels=1, size=12), torch.tensor([0, 1, 2])
    a = maps(3, 12) ** 8
    a = a / a.flatten(1).amax(1).view(-1, 1, 1, 1)  # every maximum is the batch's, so Quantus' normalisation is ours
    a[a < 0.05] = 0.0
    # Quantus perturbs to "black" (the image minimum): a model blind to a pixel equals "no effect"
    x[:, :, 5:, :] = x.amin((1, 2, 3), keepdim=True)[..., :1, :1]
    theirs = q.NonSensitivity(disable_warnings=True)(model=model, x_batch=x.numpy(), y_batch=target.numpy(),
                                                    a_batch=a.numpy(), device="cpu")
    ours = metrics.non_sensitivity(model=model, x=x, target=target, attributions=a,
                                   baseline=x.amin((1, 2, 3), keepdim=True).expand_as(x))
    np.testing.assert_array_equal(ours.scores.numpy(), np.asarray(theirs, dtype=float))
    assert (ours.extras["n_insensitive"] > 0).all() and (ours.extras["n_zero"] > 0).all()


@pytest.mark.oracle
def test_quantus_counts_each_channel_of_a_pixel_as_a_feature(monkeypatch) -> None:
    q = quantus(monkeypatch)
    blind = linear_model(torch.zeros(3, 8, 8))  # insensitive to everything
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(5)) + 0.5
    a = maps(2, 8) + 0.5  # attribution everywhere: every feature disagrees
    theirs = q.NonSensitivity(disable_warnings=True)(model=blind, x_batch=x.numpy(), y_batch=np.zeros(2, dtype=int),
                                                    a_batch=a.numpy(), device="cpu")
    assert list(theirs) == [3 * 64, 3 * 64]
    assert torch.equal(metrics.non_sensitivity(model=blind, x=x, target=0, attributions=a).scores, torch.full((2,), 64.0))


# ----------------------------------------------------------------------------------------------
# Input invariance


def invariance(model: nn.Module, method, x: Tensor, target: Tensor, **params):
    return metrics.input_invariance(model=model, x=x, target=target, attributions=method.attribute(model, x, target),
                                    method=method, **params)


@pytest.mark.parametrize("build, compensation", [
    (lambda: tiny_cnn(), "per_position"),  # zero-padded first convolution
    (lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 14 * 14, 3)).eval(), "bias"),
    (lambda: nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 14 * 14, 3)).eval(),
     "bias"),
    (lambda: nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 8), nn.ReLU(), nn.Linear(8, 3)).eval(), "bias"),
])
def test_gradients_are_input_invariant_and_gradient_times_input_is_not(build, compensation: str) -> None:
    torch.manual_seed(0)
    model, x, target = build(), images(3), torch.tensor([0, 1, 2])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gradient = invariance(model, GradientMethod(), x, target)
    assert gradient.extras["compensation"] == compensation
    assert (gradient.scores < 1e-4).all() and (gradient.extras["max_abs_difference"] < 1e-4).all()
    times_input = invariance(model, GradientTimesInput(), x, target)
    assert (times_input.scores > 0.1).all()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_integrated_gradients_from_zero_is_not_input_invariant() -> None:
    model, x, target = tiny_cnn(), images(3), torch.tensor([0, 1, 2])
    ig = invariance(model, adapters.get("integrated_gradients", n_steps=8), x, target)
    saliency = invariance(model, adapters.get("saliency"), x, target)
    assert (ig.scores > 0.1).all() and (saliency.scores < 1e-4).all()


class Normalising(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = tiny_cnn()

    def forward(self, x: Tensor) -> Tensor:
        return self.inner((x - 0.5) / 0.2)


class ReadsTheInputAgain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = tiny_cnn()

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x) + x.mean((1, 2, 3)).unsqueeze(1)


class CallsTheFirstLayerAgain(nn.Module):
    """The first convolution is applied again to its own (rectified) output, where no shift arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.conv(self.conv(x).relu()))


@pytest.mark.parametrize("model, message", [
    (nn.Sequential(nn.BatchNorm2d(3), tiny_cnn()).eval(), r"'0', is a BatchNorm2d; a constant input shift"),
    (Normalising().eval(), r"does not receive the model's input unchanged"),
    (ReadsTheInputAgain().eval(), r"the shift is not absorbed by the first layer 'inner.0'"),
    (CallsTheFirstLayerAgain().eval(), r"the shift is not absorbed by the first layer 'conv'"),
])
def test_models_whose_first_layer_cannot_absorb_the_shift_are_refused(model: nn.Module, message: str) -> None:
    x, target = images(2), torch.tensor([0, 1])
    with pytest.raises(MetricInputError, match=message):
        invariance(model, GradientMethod(), x, target)


class FailsOnTheShiftedInput(GradientMethod):
    def attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        raise RuntimeError("the method failed")


@pytest.mark.parametrize("build", [tiny_cnn, lambda: nn.Sequential(  # per-position compensation, then a bias
    nn.Conv2d(3, 4, 3, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 14 * 14, 3)).eval()])
def test_the_model_is_compensated_in_place_and_restored_even_when_the_method_fails(build) -> None:
    model, x, target = build(), images(2), torch.tensor([0, 1])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    biases = [m.bias for m in model.modules() if isinstance(m, nn.Conv2d)]
    with pytest.raises(RuntimeError, match="the method failed"):
        metrics.input_invariance(model=model, x=x, target=target, attributions=maps(2, 16),
                                 method=FailsOnTheShiftedInput())
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert [m.bias for m in model.modules() if isinstance(m, nn.Conv2d)] == biases
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_input_invariance_does_not_depend_on_the_chunking() -> None:
    model, x, target = tiny_cnn(), images(5), torch.arange(5) % 3
    method = GradientTimesInput()
    a = method.attribute(model, x, target)
    whole = metrics.input_invariance(model=model, x=x, target=target, attributions=a, method=method, shift=0.5)
    rows = metrics.input_invariance(model=model, x=x, target=target, attributions=a, method=method, shift=0.5,
                                    device_budget_bytes=1)  # one row per forward call
    assert torch.allclose(rows.scores, whole.scores, atol=1e-6) and rows.extras["first_layer"] == "0"


def corner_blind_conv() -> nn.Module:
    """A first convolution without padding that never reads value [0, 0, 0] of an image (its tap is 0),
    the one value Quantus leaves unshifted; a bias absorbs the shift exactly."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 14 * 14, 3)).eval()
    with torch.no_grad():
        model[0].weight[:, 0, 0, 0] = 0.0
    return model


def quantus_invariance(q, model: nn.Module, x: Tensor, target: Tensor, name: str, seen: list | None = None) -> list:
    def explain(model, inputs, targets, **kwargs):
        if seen is not None:
            seen.append(np.array(inputs))
        return q.explain(model, inputs, targets, **kwargs)

    a = q.explain(model, x.numpy(), target.numpy(), method=name)
    return list(q.InputInvariance(disable_warnings=True)(model=model, x_batch=x.numpy(), y_batch=target.numpy(),
                                                        a_batch=a, explain_func=explain,
                                                        explain_func_kwargs={"method": name}, device="cpu"))


@pytest.mark.oracle
def test_quantus_leaves_the_first_value_of_every_image_unshifted(monkeypatch) -> None:
    """``perturb_batch`` passes ``indices[i][1:]`` to the shift, dropping index 0 of every image."""
    q = quantus(monkeypatch)
    x, target, seen = images(3), torch.tensor([0, 1, 2]), []
    quantus_invariance(q, corner_blind_conv(), x, target, "Saliency", seen)
    shifted = torch.from_numpy(seen[-1])
    assert torch.equal(shifted[:, 0, 0, 0], x[:, 0, 0, 0])
    moved = (shifted - x).flatten(1)[:, 1:]
    assert torch.allclose(moved, torch.full_like(moved, -1.0), atol=1e-6)


@pytest.mark.oracle
def test_input_invariance_agrees_with_quantus_where_a_bias_absorbs_the_shift(monkeypatch) -> None:
    """Without zero padding, on a model blind to the value Quantus forgets to shift, its compensation is
    exact too, and its verdict all(isclose(a, a', atol=1e-4)) is ours thresholded the same way. Its
    tolerance is absolute, though: a map of small values "passes" however much it changes, which the
    relative score does not let through."""
    q = quantus(monkeypatch)
    model, x, target = corner_blind_conv(), images(3), torch.tensor([0, 1, 2])
    verdicts = {}
    for name, method in [("Saliency", GradientMethod()), ("InputXGradient", GradientTimesInput())]:
        theirs = quantus_invariance(q, model, x, target, name)
        ours = invariance(model, method, x, target)
        assert ours.extras["compensation"] == "bias"
        assert (ours.extras["max_abs_difference"] <= 1e-4).tolist() == [bool(t) for t in theirs]
        verdicts[name] = (theirs, ours.scores)
    assert verdicts["Saliency"][0] == [True] * 3 and (verdicts["Saliency"][1] < 1e-6).all()
    assert verdicts["InputXGradient"][0] == [False] * 3 and (verdicts["InputXGradient"][1] > 0.1).all()


@pytest.mark.oracle
def test_quantus_breaks_the_invariance_of_gradients_at_a_zero_padded_border(monkeypatch) -> None:
    """Quantus subtracts the minimum over positions of W*m + b: with zero padding the border differs,
    the shifted model is another function, and even the gradient is "not invariant"."""
    q = quantus(monkeypatch)
    model, x, target = tiny_cnn(), images(3), torch.tensor([0, 1, 2])
    with torch.no_grad():
        model[0].weight[:, 0, 0, 0] = 0.0  # blind to the value Quantus leaves unshifted: only the border is at fault
    assert quantus_invariance(q, model, x, target, "Saliency") == [False] * 3
    assert (invariance(model, GradientMethod(), x, target).scores < 1e-6).all()


# ----------------------------------------------------------------------------------------------
# Shared contracts


def case(name: str, n: int = 5) -> dict:
    model, x = tiny_cnn(), images(n)
    target = torch.arange(n) % 3
    kwargs = {"model": model, "x": x, "target": target, "attributions": GradientMethod().attribute(model, x, target)}
    if name == "non_sensitivity":
        kwargs["patch"] = 4
    if "method" in metrics.get(name).inputs:
        kwargs["method"] = GradientMethod()
    return kwargs


@pytest.mark.parametrize("name", NAMES)
def test_image_scores_do_not_depend_on_the_batch(name: str) -> None:
    kwargs = case(name, 6)
    full = metrics.get(name).compute(**kwargs).scores

    def part(rows: slice) -> Tensor:
        return metrics.get(name).compute(**{k: v[rows] if isinstance(v, Tensor) else v for k, v in kwargs.items()}).scores

    assert torch.allclose(part(slice(4, 5)), full[4:5], atol=1e-6, equal_nan=True)
    assert torch.allclose(part(slice(2, 5)), full[2:5], atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("name, params, message", [
    ("completeness", {"baseline": "black"}, "baseline must be one of 'method', 'zeros', 'blur', 'mean' or a tensor"),
    ("completeness", {"error": "squared"}, "error must be one of 'relative', 'absolute'"),
    ("completeness", {"score": "prob"}, "score must be one of 'probability', 'logit'"),
    ("non_sensitivity", {"patch": 0}, r"patch must be an integer in \[1, 256\], got 0"),
    ("non_sensitivity", {"eps_attribution": 1.0}, r"eps_attribution must be a finite float in \[0, 1\)"),
    ("non_sensitivity", {"eps_output": -1.0}, "eps_output must be a finite float >= 0"),
    ("input_invariance", {"shift": float("nan")}, "shift must be a finite float"),
    ("input_invariance", {"shift": "1"}, "shift must be a finite float"),
])
def test_bad_parameters_are_refused_before_the_model_runs(name: str, params: dict, message: str) -> None:
    with pytest.raises(MetricInputError, match=f"^metric '{name}': {message}"):
        metrics.get(name).compute(**{**case(name, 2), **params})
    with pytest.raises(MetricInputError, match=message):
        metrics.get(name).check_params(params)


@pytest.mark.parametrize("name", ["completeness", "input_invariance"])
def test_a_method_is_needed(name: str) -> None:
    kwargs = case(name, 2)
    with pytest.raises(ValueError, match=r"needs \['method'\]"):
        metrics.get(name).compute(**{**kwargs, "method": None})
    with pytest.raises(MetricInputError, match="method must be an adapters Method"):
        metrics.get(name).compute(**{**kwargs, "method": "saliency"})
