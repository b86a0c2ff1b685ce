"""The registered sanity checks on a tiny model: cost, shapes, summaries, failures, bad input."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import scipy.stats
import torch
from torch import Tensor, nn

import metrics
from adapters.base import Cost, Method
from metrics.randomisation import BlockError
from metrics.scores import sanity
from metrics.similarity import MEASURES
from sanity_helpers import BLOCKS, Tiny

SANITY = ["data_randomisation", "empirical_mprt", "model_randomisation_cascading", "model_randomisation_independent",
          "random_logit"]


def tiny(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return Tiny().eval()


def images(n: int = 3) -> Tensor:
    return torch.randn(n, 3, 48, 48, generator=torch.Generator().manual_seed(1))


class Gradient(Method):
    """|d logit / d x| summed over channels; counts its calls; can fail when a module was re-drawn."""

    def __init__(self, fail_if_changed: str | None = None, reference: nn.Module | None = None) -> None:
        super().__init__()
        self.calls = 0
        self.fail_if_changed = fail_if_changed
        self.watched = None if reference is None else dict(reference.named_parameters())[fail_if_changed].detach().clone()

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor, **_: object) -> Tensor:
        self.calls += 1
        if self.watched is not None and not torch.equal(dict(model.named_parameters())[self.fail_if_changed], self.watched):
            raise RuntimeError("cannot explain this model")
        x = x.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(x).gather(1, target[:, None]).sum(), x)
        return grad.abs().sum(dim=1, keepdim=True)

    def cost(self, **_: object) -> Cost:
        return Cost(forward=1, backward=1)


class ModelIndependent(Method):
    """An edge-detector-like control: a fixed function of the image only."""

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor, **_: object) -> Tensor:
        vertical = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().sum(1, keepdim=True)
        return torch.nn.functional.pad(vertical, (0, 0, 0, 1))

    def cost(self, **_: object) -> Cost:
        return Cost(forward=0)


class Constant(Method):
    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor, **_: object) -> Tensor:
        return torch.zeros(x.shape[0], 1, *x.shape[2:])

    def cost(self, **_: object) -> Cost:
        return Cost(forward=0)


def _state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_registered_with_category_direction_and_matching_defaults() -> None:
    assert set(SANITY) <= set(metrics.names("sanity"))
    assert metrics.get("empirical_mprt").direction == "higher"
    for name in SANITY:
        spec = metrics.get(name)
        assert spec.category == "sanity"
        if name != "empirical_mprt":
            assert spec.direction == "lower"
        assert "method" in spec.inputs
        # the registered protocol parameters are the defaults the function really uses
        signature = inspect.signature(spec.fn).parameters
        for param, default in spec.params.items():
            assert signature[param].default == default, (name, param)


@pytest.mark.parametrize("name", ["model_randomisation_cascading", "model_randomisation_independent"])
def test_one_explanation_pass_per_block_and_shapes(name: str) -> None:
    model, x, target = tiny(), images(), torch.tensor([0, 1, 2])
    method = Gradient()
    original = method.attribute(model, x, target)
    method.calls = 0
    before = _state(model)
    result = metrics.get(name).compute(model=model, x=x, target=target, attributions=original, method=method, blocks=BLOCKS)
    assert method.calls == len(BLOCKS)  # the original maps are reused, not recomputed
    method.calls = 0
    assert result.curves.shape == (3, len(BLOCKS)) and result.scores.shape == (3,)
    assert result.curve_x.tolist() == [1.0, 2.0, 3.0]
    assert result.extras["block_names"] == ["fc", "body", "stem"]
    assert result.extras["errors"] == {}
    for measure in MEASURES:
        assert result.extras[f"curves_{measure}"].shape == (3, len(BLOCKS))
    assert torch.equal(result.curves, result.extras["curves_spearman_abs"])
    assert torch.isfinite(result.curves).all() and (result.curves < 1).any()
    assert torch.allclose(result.scores, result.curves.mean(dim=1))
    if name == "model_randomisation_cascading":
        assert torch.equal(result.extras["final"], result.curves[:, -1])
        last = metrics.get(name).compute(model=model, x=x, target=target, attributions=original, method=method,
                                         blocks=BLOCKS, summary="last")
        assert torch.equal(last.scores, result.curves[:, -1])
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    method.calls = 0
    metrics.get(name).compute(model=model, x=x, target=target, attributions=None, method=method, blocks=BLOCKS)
    assert method.calls == len(BLOCKS) + 1


def test_bottom_up_order_and_primary_measure() -> None:
    model, x, target = tiny(), images(), torch.tensor([0, 1, 2])
    result = sanity.model_randomisation_cascading(model=model, x=x, target=target, method=Gradient(), blocks=BLOCKS,
                                                  order="bottom_up", measure="ssim", keep_maps=True)
    assert result.extras["block_names"] == ["stem", "body", "fc"]
    assert torch.equal(result.curves, result.extras["curves_ssim"])
    assert result.extras["maps"].shape == (3, 3, 48, 48)


def test_model_independent_control_has_similarity_exactly_one() -> None:
    model, x, target = tiny(), images(), torch.tensor([0, 1, 2])
    result = sanity.model_randomisation_cascading(model=model, x=x, target=target, method=ModelIndependent(), blocks=BLOCKS)
    for measure in MEASURES:
        assert torch.allclose(result.extras[f"curves_{measure}"], torch.ones(3, 3), atol=1e-6), measure
    emprt = sanity.empirical_mprt(model=model, x=x, target=target, method=ModelIndependent(), blocks=BLOCKS)
    assert torch.allclose(emprt.scores, torch.zeros(3), atol=1e-6)


def test_failing_block_is_nan_with_its_message_and_the_rest_is_kept() -> None:
    model, x, target = tiny(), images(), torch.tensor([0, 1, 2])
    before = _state(model)
    method = Gradient(fail_if_changed="body.0.weight", reference=model)
    result = sanity.model_randomisation_independent(model=model, x=x, target=target, method=method, blocks=BLOCKS)
    failed = result.extras["block_names"].index("body")
    assert list(result.extras["errors"]) == ["body"]
    assert "cannot explain this model" in result.extras["errors"]["body"]
    assert torch.isnan(result.curves[:, failed]).all()
    kept = [i for i in range(len(BLOCKS)) if i != failed]
    assert torch.isfinite(result.curves[:, kept]).all()
    assert torch.isfinite(result.scores).all()  # the mean skips the failed block
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    cascade = sanity.model_randomisation_cascading(model=model, x=x, target=target, method=method, blocks=BLOCKS)
    assert sorted(cascade.extras["errors"]) == ["body", "stem"]  # body stays randomised down the cascade
    assert torch.isnan(cascade.scores).all() and torch.isfinite(cascade.curves[:, 0]).all()


def test_constant_maps_give_nan_not_a_crash() -> None:
    model, x, target = tiny(), images(), torch.tensor([0, 1, 2])
    for name in ("model_randomisation_cascading", "model_randomisation_independent"):
        result = metrics.get(name).compute(model=model, x=x, target=target, attributions=None, method=Constant(), blocks=BLOCKS)
        assert torch.isnan(result.scores).all() and result.extras["errors"] == {}
    assert torch.isnan(sanity.empirical_mprt(model=model, x=x, target=target, method=Constant(), blocks=BLOCKS).scores).all()


def test_data_randomisation() -> None:
    model, x, target = tiny(0), images(), torch.tensor([0, 1, 2])
    method = Gradient()
    same = sanity.data_randomisation(model=model, x=x, target=target, method=method, random_label_model=model)
    assert torch.allclose(same.scores, torch.ones(3), atol=1e-6)
    method.calls = 0
    other = sanity.data_randomisation(model=model, x=x, target=target, attributions=method.attribute(model, x, target),
                                      method=method, random_label_model=tiny(1))
    assert method.calls == 2  # one for the given maps above, one for the random-label model
    assert (other.scores < 0.99).all()
    assert set(MEASURES) <= set(other.extras)


def test_random_logit_draws_another_class_reproducibly() -> None:
    model, x, target = tiny(), images(5), torch.tensor([0, 1, 2, 0, 1])
    method = Gradient()
    first = sanity.random_logit(model=model, x=x, target=target, method=method, seed=4)
    other = first.extras["other_class"]
    assert ((other != target) & (other >= 0) & (other < 3)).all()
    again = sanity.random_logit(model=model, x=x, target=target, method=method, seed=4)
    assert torch.equal(again.extras["other_class"], other) and torch.equal(again.scores, first.scores)
    assert torch.equal(first.scores, first.extras["ssim"])
    # The drawn class belongs to the image, not to its position in the batch.
    reordered = torch.tensor([3, 1, 4, 0, 2])
    shuffled = sanity.random_logit(model=model, x=x[reordered], target=target[reordered], method=method, seed=4)
    assert torch.equal(shuffled.extras["other_class"], other[reordered])
    single = sanity.random_logit(model=model, x=x[2:3], target=target[2:3], method=method, seed=4)
    assert torch.equal(single.extras["other_class"], other[2:3])


def test_histogram_entropy_matches_numpy_and_scipy() -> None:
    maps = torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(2)) ** 3
    ours = sanity.histogram_entropy(maps, n_bins=100)
    for i in range(4):
        expected = scipy.stats.entropy(np.histogram(maps[i].numpy().astype(np.float64), bins=100)[0])
        assert ours[i].item() == pytest.approx(expected, abs=1e-9)
    assert sanity.histogram_entropy(torch.ones(1, 1, 8, 8)).item() == 0.0


def test_emprt_is_one_explanation_pass_and_restores() -> None:
    model, x, target = tiny(), images(), torch.tensor([0, 1, 2])
    before = _state(model)
    method = Gradient()
    original = method.attribute(model, x, target)
    method.calls = 0
    result = sanity.empirical_mprt(model=model, x=x, target=target, attributions=original, method=method, blocks=BLOCKS)
    assert method.calls == 1
    rise = (result.extras["entropy_randomised"] - result.extras["entropy_original"]) / result.extras["entropy_original"]
    assert torch.allclose(result.scores, rise)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_bad_input_is_a_clear_error() -> None:
    model, x, target = tiny(), images(), torch.tensor([0, 1, 2])
    spec = metrics.get("model_randomisation_cascading")
    with pytest.raises(ValueError, match="needs"):
        spec.compute(model=model, x=x, target=target, attributions=None, method=Gradient(), blocks=None)
    method = Gradient()
    with pytest.raises(BlockError, match="no randomisation blocks"):
        sanity.model_randomisation_cascading(model=model, x=x, target=target, method=method, blocks=[])
    with pytest.raises(BlockError, match="does not have"):
        sanity.model_randomisation_cascading(model=model, x=x, target=target, method=method, blocks=[("head", ["classifier"])])
    with pytest.raises(BlockError, match="does not have"):
        sanity.empirical_mprt(model=model, x=x, target=target, method=method, blocks=[("head", ["classifier"])])
    assert method.calls == 0  # bad blocks are caught before any explanation is spent
    with pytest.raises(ValueError, match="measure"):
        sanity.model_randomisation_cascading(model=model, x=x, target=target, method=method, blocks=BLOCKS, measure="l2")
    with pytest.raises(ValueError, match="summary"):
        sanity.model_randomisation_cascading(model=model, x=x, target=target, method=method, blocks=BLOCKS, summary="auc")
    with pytest.raises(ValueError, match="batchnorm"):
        sanity.model_randomisation_independent(model=model, x=x, target=target, method=method, blocks=BLOCKS,
                                               batchnorm="freeze")
    with pytest.raises(TypeError, match="unknown parameter"):
        spec.compute(model=model, x=x, target=target, attributions=None, method=method, blocks=BLOCKS, n_bins=3)
    with pytest.raises(ValueError, match="attributions"):
        sanity.model_randomisation_cascading(model=model, x=x, target=target, attributions=torch.zeros(3, 1, 8, 8),
                                             method=method, blocks=BLOCKS)


class Noise(Method):
    """Noise from ``seed`` only: the same map for any model unless the check draws a fresh seed."""

    stochastic = True

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed=seed)

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor, **_: object) -> Tensor:
        return torch.rand(x.shape[0], 1, *x.shape[2:], generator=torch.Generator().manual_seed(self.params["seed"]))

    def cost(self, **_: object) -> Cost:
        return Cost(forward=0)


@pytest.mark.parametrize("reseed", [True, False])
def test_stochastic_methods_get_a_fresh_seed_per_pass(reseed: bool) -> None:
    model, x, target = tiny(), images(), torch.tensor([0, 1, 2])
    kwargs = dict(model=model, x=x, target=target, method=Noise(seed=5), reseed_stochastic=reseed)
    cascade = sanity.model_randomisation_cascading(blocks=BLOCKS, **kwargs)
    data = sanity.data_randomisation(random_label_model=tiny(1), **kwargs)
    logit = sanity.random_logit(**kwargs)
    for values in (cascade.curves, data.scores, logit.extras["spearman_abs"]):
        if reseed:  # independent noise: the Binder et al. floor, similarity near 0
            assert values.abs().max() < 0.1
        else:  # the same noise every time: exactly model-independent
            assert torch.allclose(values, torch.ones_like(values))


def test_per_image_results_do_not_depend_on_the_batch() -> None:
    model, x, target = tiny(), images(), torch.tensor([0, 1, 2])
    method = Gradient()
    full = sanity.model_randomisation_cascading(model=model, x=x, target=target, method=method, blocks=BLOCKS)
    part = sanity.model_randomisation_cascading(model=model, x=x[1:], target=target[1:], method=method, blocks=BLOCKS)
    for measure in MEASURES:
        assert torch.allclose(full.extras[f"curves_{measure}"][1:], part.extras[f"curves_{measure}"], atol=1e-5), measure
