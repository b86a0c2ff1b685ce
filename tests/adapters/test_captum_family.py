"""The Captum-backed family: each adapter equals a direct Captum call (same seeds, baselines and
feature masks on both sides), batches and seeds behave, and models Captum would get wrong are
refused with an AttributionError naming the module."""
from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from captum.attr import (LRP, Deconvolution, DeepLift, DeepLiftShap, FeatureAblation, GradientShap, GuidedGradCam,
                         InputXGradient, KernelShap, NoiseTunnel, Saliency, ShapleyValueSampling)
from captum.attr._utils.custom_modules import Addition_Module
from captum.attr._utils.lrp_rules import Alpha1_Beta0_Rule, EpsilonRule, GammaRule
from torch import Tensor, nn

import adapters
from adapters import AttributionError, NotApplicable
from adapters.seeding import image_seeds

from conftest import tiny_cnn, tiny_vit

FAMILY = ("input_x_gradient", "deeplift", "deeplift_shap", "gradient_shap", "guided_gradcam", "deconvolution",
          "feature_ablation", "shapley_sampling", "kernel_shap", "lrp", "smoothgrad_sq", "vargrad")
SEGMENTS = {"segmentation_kwargs": {"n_segments": 12}}


@pytest.fixture(autouse=True)
def _quiet_captum():
    # Captum announces its temporary hooks and requires_grad changes on every direct call.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def grad_input(x: Tensor) -> Tensor:
    return x.detach().clone().requires_grad_()


def test_the_family_is_registered():
    assert set(FAMILY) <= set(adapters.names())


# ---------------------------------------------------------------- equality with Captum (TinyCNN)

def test_input_x_gradient(model, images, targets, maps_close):
    expected = InputXGradient(model).attribute(grad_input(images), target=targets).sum(1, keepdim=True)
    maps_close(adapters.get("input_x_gradient", batch_size=3).attribute(model, images, targets), expected)


@pytest.mark.parametrize("baseline", [0.0, 0.5])
def test_deeplift_and_its_delta(model, images, targets, maps_close, baseline):
    method = adapters.get("deeplift", baseline=baseline, convergence_delta=True, batch_size=3)
    maps = method.attribute(model, images, targets)
    expected, delta = DeepLift(model).attribute(grad_input(images), baselines=baseline, target=targets,
                                                return_convergence_delta=True)
    maps_close(maps, expected.sum(1, keepdim=True))
    torch.testing.assert_close(method.diagnostics["convergence_delta"], delta.float(), rtol=1e-3, atol=1e-6)
    assert method.diagnostics["rescaled_modules"] == 4  # three ReLUs and the max-pool


def test_deeplift_with_in_place_relus_equals_the_plain_model(images, targets, maps_close):
    plain = tiny_cnn()
    in_place = copy.deepcopy(plain)
    for module in in_place.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = True
    maps_close(adapters.get("deeplift").attribute(in_place, images, targets),
               adapters.get("deeplift").attribute(plain, images, targets))


def test_deeplift_shap_pairs_across_images_equal_per_image_captum(model, images, targets, maps_close):
    method = adapters.get("deeplift_shap", n_baselines=4, seed=3, internal_batch_size=3)  # passes span images
    maps = method.attribute(model, images[:3], targets[:3])
    for i, baselines in enumerate(method.baselines_of(images[:3])):
        expected = DeepLiftShap(model).attribute(grad_input(images[i:i + 1]), baselines=baselines,
                                                 target=targets[i:i + 1])
        maps_close(maps[i:i + 1], expected.sum(1, keepdim=True))


@pytest.mark.parametrize("distribution", ["gaussian", "uniform", "blur", "zero"])
def test_gradient_shap_equals_captum_seeded_per_image(model, images, targets, maps_close, distribution):
    method = adapters.get("gradient_shap", n_samples=6, n_baselines=4, baselines=distribution, noise_level=0.1,
                          seed=5, batch_size=5)
    maps = method.attribute(model, images[:3], targets[:3])
    baselines, stdevs = method.baselines_of(images[:3]), method.noise_stdevs(images[:3])
    for i, seed in enumerate(image_seeds(images[:3], 5)):
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        expected = GradientShap(model).attribute(images[i:i + 1], baselines=baselines[i], n_samples=6, stdevs=stdevs[i],
                                                 target=targets[i:i + 1])
        maps_close(maps[i:i + 1], expected.sum(1, keepdim=True))


def test_baseline_distributions_are_what_they_say(images):
    x = images[:2]
    gaussian = adapters.get("gradient_shap", n_baselines=64, baseline_std=2.0).baselines_of(x)[0]
    assert abs(float(gaussian.std()) - 2.0) < 0.05 and abs(float(gaussian.mean())) < 0.05
    uniform = adapters.get("gradient_shap", baselines="uniform").baselines_of(x)[1]
    assert float(uniform.min()) >= float(x[1].min()) and float(uniform.max()) <= float(x[1].max())
    blurred = adapters.get("gradient_shap", baselines="blur", n_baselines=8).baselines_of(x)[0]
    assert blurred.shape == (8, *x.shape[1:]) and float((blurred - x[0]).abs().amax()) > 0
    assert not adapters.get("gradient_shap", baselines="zero").baselines_of(x)[0].any()


def test_guided_gradcam(model, images, targets, maps_close):
    method = adapters.get("guided_gradcam", batch_size=3)
    maps = method.attribute(model, images, targets)
    assert method.diagnostics["layer"] == "features"  # gradcam's automatic layer
    expected = GuidedGradCam(model, model.features).attribute(grad_input(images), target=targets)
    maps_close(maps, expected.abs().amax(1, keepdim=True))
    bilinear = adapters.get("guided_gradcam", layer="features.3", upsample="bilinear", reduction="sum")
    expected = GuidedGradCam(model, model.features[3]).attribute(grad_input(images[:2]), target=targets[:2],
                                                                 interpolate_mode="bilinear")
    maps_close(bilinear.attribute(model, images[:2], targets[:2]), expected.sum(1, keepdim=True))


def test_deconvolution(model, images, targets, maps_close):
    maps = adapters.get("deconvolution").attribute(model, images[:3], targets[:3])
    expected = Deconvolution(model).attribute(grad_input(images[:3]), target=targets[:3])
    maps_close(maps, expected.abs().amax(1, keepdim=True))
    assert not torch.allclose(maps, adapters.get("guided_backprop").attribute(model, images[:3], targets[:3]))


def test_feature_ablation_on_lime_superpixels(model, images, targets, maps_close):
    method = adapters.get("feature_ablation", **SEGMENTS, perturbations_per_eval=4)
    maps = method.attribute(model, images[:4], targets[:4])
    segments = method.diagnostics["segments"]
    lime = adapters.get("lime_captum", **SEGMENTS)
    assert torch.equal(segments, lime.segments(images[:4])[1]), "the same superpixels as LIME"
    for i in range(4):
        expected = FeatureAblation(model).attribute(images[i:i + 1], baselines=0.0, target=targets[i:i + 1],
                                                    feature_mask=segments[i][None, None])
        maps_close(maps[i:i + 1], expected[:, :1])
        weights = method.diagnostics["segment_weights"][i]
        assert torch.equal(maps[i, 0], weights.float()[segments[i]])


def test_shapley_sampling_equals_captum_seeded_per_image(model, images, targets, maps_close):
    method = adapters.get("shapley_sampling", n_samples=3, **SEGMENTS, seed=2, perturbations_per_eval=5)
    maps = method.attribute(model, images[:2], targets[:2])
    segments = method.diagnostics["segments"]
    for i, seed in enumerate(image_seeds(images[:2], 2)):
        torch.manual_seed(seed)
        expected = ShapleyValueSampling(model).attribute(images[i:i + 1], baselines=0.0, target=targets[i:i + 1],
                                                         feature_mask=segments[i][None, None], n_samples=3)
        maps_close(maps[i:i + 1], expected[:, :1])
    # efficiency: the superpixel values sum to f(x) - f(all hidden)
    logits = model(images[:1]).detach()[0, targets[0]] - model(torch.zeros_like(images[:1])).detach()[0, targets[0]]
    torch.testing.assert_close(method.diagnostics["segment_weights"][0].sum().float(), logits, rtol=1e-4, atol=1e-6)


def test_kernel_shap_equals_captum_seeded_per_image(model, images, targets, maps_close):
    method = adapters.get("kernel_shap", n_samples=40, **SEGMENTS, seed=4, perturbations_per_eval=16)
    maps = method.attribute(model, images[:2], targets[:2])
    segments = method.diagnostics["segments"]
    for i, seed in enumerate(image_seeds(images[:2], 4)):
        torch.manual_seed(seed)
        expected = KernelShap(model).attribute(images[i:i + 1], baselines=0.0, target=targets[i:i + 1],
                                               feature_mask=segments[i][None, None], n_samples=40)
        maps_close(maps[i:i + 1], expected[:, :1], rtol=1e-3)


@pytest.mark.parametrize("rule, captum_rule", [
    ("epsilon", None),
    ("gamma", lambda module: GammaRule(gamma=0.25)),
    ("alpha1_beta0", lambda module: Alpha1_Beta0_Rule()),
    ("composite", lambda module: GammaRule(gamma=0.25) if isinstance(module, nn.Conv2d) else EpsilonRule()),
])
def test_lrp(model, images, targets, maps_close, rule, captum_rule):
    method = adapters.get("lrp", rule=rule, batch_size=3)
    maps = method.attribute(model, images, targets)
    reference = copy.deepcopy(model)
    if captum_rule is not None:
        for module in reference.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.rule = captum_rule(module)
    expected, delta = LRP(reference).attribute(images.clone(), target=targets, return_convergence_delta=True)
    maps_close(maps, expected.sum(1, keepdim=True))
    torch.testing.assert_close(method.diagnostics["convergence_delta"], delta.float(), rtol=1e-3, atol=1e-6)


def test_lrp_keeps_the_users_rules_and_removes_captums_leftovers(model, images, targets, maps_close):
    rule = GammaRule(gamma=0.5)
    model.features[0].rule = rule
    before = {name: sorted(vars(m)) for name, m in model.named_modules()}
    for _ in range(2):  # Captum alone deletes the rule after the first call
        adapters.get("lrp", batch_size=4).attribute(model, images, targets)
        assert model.features[0].rule is rule
    assert {name: sorted(vars(m)) for name, m in model.named_modules()} == before, "no 'activations' left behind"
    reference = copy.deepcopy(model)
    reference.features[0].rule = GammaRule(gamma=0.5)
    expected = LRP(reference).attribute(images.clone(), target=targets)
    maps_close(adapters.get("lrp").attribute(model, images, targets), expected.sum(1, keepdim=True))


def test_lrp_passes_relevance_through_flatten_as_captum_with_an_epsilon_rule(images, targets, maps_close):
    net = nn.Sequential(tiny_cnn().features, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5)).eval()
    maps = adapters.get("lrp").attribute(net, images[:3], targets[:3])
    reference = copy.deepcopy(net)
    reference[2].rule = EpsilonRule()  # Captum alone raises TypeError on the Flatten
    maps_close(maps, LRP(reference).attribute(images[:3].clone(), target=targets[:3]).sum(1, keepdim=True))


@pytest.mark.parametrize("name, nt_type", [("smoothgrad_sq", "smoothgrad_sq"), ("vargrad", "vargrad")])
def test_noise_tunnel_variants_share_smoothgrads_sampling(model, images, targets, name, nt_type, maps_close):
    maps = adapters.get(name, n_samples=5, seed=3, batch_size=7).attribute(model, images[:3], targets[:3])
    same = adapters.get("smoothgrad", n_samples=5, seed=3, nt_type=nt_type).attribute(model, images[:3], targets[:3])
    maps_close(maps, same)
    method = adapters.get(name, n_samples=5, seed=3, reduction="sum")
    stdevs = method.noise_stdevs(images[:2])
    maps = method.attribute(model, images[:2], targets[:2])
    for i, seed in enumerate(image_seeds(images[:2], 3)):
        torch.manual_seed(seed)
        expected = NoiseTunnel(Saliency(model)).attribute(grad_input(images[i:i + 1]), nt_type=nt_type, nt_samples=5,
                                                          stdevs=stdevs[i], target=targets[i:i + 1])
        maps_close(maps[i:i + 1], expected.sum(1, keepdim=True))
    assert "nt_type" not in method.params


# ---------------------------------------------------------------- a trained zoo model

@pytest.fixture(scope="module")
def zoo_cnn():
    from bench import zoo

    trained = zoo.load("small_cnn-synthetic")
    x, y, _ = trained.batch(n=4, start=0)
    return trained, x, y


@pytest.mark.slow
def test_zoo_cnn_equals_captum(zoo_cnn, maps_close):
    trained, x, y = zoo_cnn
    model = trained.model
    maps_close(adapters.get("deeplift").attribute(model, x, y),
               DeepLift(model).attribute(grad_input(x), target=y).sum(1, keepdim=True))
    maps_close(adapters.get("lrp").attribute(model, x, y),
               LRP(model).attribute(x.clone(), target=y).sum(1, keepdim=True))
    layer = trained.gradcam_layer
    expected = GuidedGradCam(model, model.get_submodule(layer)).attribute(grad_input(x), target=y)
    maps_close(adapters.get("guided_gradcam", layer=layer).attribute(model, x, y), expected.abs().amax(1, keepdim=True))
    method = adapters.get("feature_ablation", segmentation_kwargs={"n_segments": 25})
    maps = method.attribute(model, x[:2], y[:2])
    for i in range(2):
        expected = FeatureAblation(model).attribute(x[i:i + 1], target=y[i:i + 1],
                                                    feature_mask=method.diagnostics["segments"][i][None, None])
        maps_close(maps[i:i + 1], expected[:, :1])


# ---------------------------------------------------------------- batches, knobs, seeds

@pytest.mark.parametrize("name, params", [
    ("deeplift", {"batch_size": 3}),
    ("deeplift_shap", {"n_baselines": 3, "internal_batch_size": 5}),
    ("gradient_shap", {"n_samples": 5, "n_baselines": 3, "noise_level": 0.1, "batch_size": 7}),
    ("feature_ablation", {**SEGMENTS, "perturbations_per_eval": 3}),
    ("lrp", {"batch_size": 3}),
    ("vargrad", {"n_samples": 3, "batch_size": 5}),
])
def test_batches_of_1_3_8_with_passes_that_span_images(name, params, model, images, targets, maps_close):
    method = adapters.get(name, **params)
    whole = method.attribute(model, images, targets)
    for size in (1, 3):
        pieces = [method.attribute(model, images[i:i + size], targets[i:i + size]) for i in range(0, 8, size)]
        maps_close(torch.cat(pieces), whole)


@pytest.mark.parametrize("name", ["deeplift_shap", "gradient_shap", "shapley_sampling", "kernel_shap",
                                  "smoothgrad_sq", "vargrad"])
def test_stochastic_methods_follow_their_seed_and_leave_the_global_rngs_alone(name, model, images, targets, build):
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    first = build(name, seed=11).attribute(model, images[:2], targets[:2])
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), numpy_state))
    assert torch.equal(first, build(name, seed=11).attribute(model, images[:2], targets[:2]))
    assert not torch.equal(first, build(name, seed=12).attribute(model, images[:2], targets[:2]))


def test_cost_matches_the_rows_the_model_sees(model, images, targets):
    rows = []
    handle = model.register_forward_hook(lambda _m, inputs, _o: rows.append(len(inputs[0])))
    try:
        for name, params in [("input_x_gradient", {}), ("deeplift", {}), ("deeplift", {"convergence_delta": True}),
                             ("deeplift_shap", {"n_baselines": 3}), ("gradient_shap", {"n_samples": 4}),
                             ("guided_gradcam", {}), ("deconvolution", {}), ("lrp", {}), ("vargrad", {"n_samples": 3}),
                             ("feature_ablation", SEGMENTS), ("shapley_sampling", {"n_samples": 2, **SEGMENTS}),
                             ("kernel_shap", {"n_samples": 20, **SEGMENTS})]:
            method = adapters.get(name, **params)
            method.attribute(model, images[:1], targets[:1])  # warm the caches (probe, function scan)
            rows.clear()
            method.attribute(model, images[:1], targets[:1])
            k = int(method.diagnostics["segments"].max()) + 1 if "segments" in method.diagnostics else None
            assert sum(rows) == method.cost(height=32, width=32, n_segments=k).forward, name
    finally:
        handle.remove()


def test_segment_cost_needs_a_count_for_quickshift():
    with pytest.raises(AttributionError, match="pass n_segments="):
        adapters.get("shapley_sampling", segmentation="quickshift").cost(height=32, width=32)


# ---------------------------------------------------------------- bad parameters

@pytest.mark.parametrize("name, params, message", [
    ("deeplift_shap", {"n_baselines": 1}, r"n_baselines must be an integer in \[2, 1024\]"),
    ("gradient_shap", {"baselines": "dataset"}, r"unknown baseline distribution 'dataset'; baselines must be one of"),
    ("gradient_shap", {"baseline_std": 0.0}, r"baseline_std must be a finite number in \(0, 100\]"),
    ("gradient_shap", {"baseline_blur": 2.0}, r"baseline_blur must be a finite number in \(0, 1\]"),
    ("gradient_shap", {"noise_level": -0.1}, r"noise_level must be a finite number in \[0, 10\]"),
    ("lrp", {"rule": "zplus"}, r"unknown LRP rule 'zplus'; rule must be one of"),
    ("lrp", {"epsilon": 0.0}, r"epsilon must be a finite number in \(0, 1e\+06\]"),
    ("kernel_shap", {"n_samples": 1}, r"n_samples must be an integer in \[2, 100000\]"),
    ("shapley_sampling", {"n_samples": 0}, r"n_samples must be an integer in \[1, 10000\]"),
    ("feature_ablation", {"segmentation": "watershed"}, "unknown segmentation 'watershed'"),
    ("guided_gradcam", {"layer": 3}, r"layer must be a module name \(str\) or None"),
    ("guided_gradcam", {"upsample": "sinc"}, "unknown upsampling 'sinc'"),
    ("vargrad", {"nt_type": "smoothgrad"}, r"unknown parameter\(s\) \['nt_type'\]"),
    ("deeplift", {"reduction": "median"}, "unknown channel reduction 'median'"),
])
def test_bad_parameters_are_named(name, params, message):
    with pytest.raises(AttributionError, match=message):
        adapters.get(name, **params)


# ---------------------------------------------------------------- models Captum would get wrong

class FunctionalRelu(nn.Module):
    """A CNN whose second activation is ``F.relu`` in ``forward``: Captum's hooks never see it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.relu, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Linear(4, 5)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(nn.functional.relu(self.conv2(self.relu(self.conv1(x)))).mean(dim=(2, 3)))


class Residual(nn.Module):
    """conv -> relu -> conv, plus a skip connection, as ``out + x`` or through ``Addition_Module``."""

    def __init__(self, module_add: bool) -> None:
        super().__init__()
        self.conv1, self.relu1 = nn.Conv2d(3, 3, 3, padding=1), nn.ReLU()
        self.conv2, self.relu2 = nn.Conv2d(3, 3, 3, padding=1), nn.ReLU()
        self.add = Addition_Module() if module_add else None
        self.pool, self.flat, self.head = nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 5)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(self.relu1(self.conv1(x)))
        out = self.add(out, x) if self.add is not None else out + x
        return self.head(self.flat(self.pool(self.relu2(out))))


class SharedRelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2, self.relu = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3), nn.ReLU()
        self.head = nn.Linear(4, 5)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.relu(self.conv2(self.relu(self.conv1(x)))).mean(dim=(2, 3)))


def _gelu_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.GELU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5)).eval()


def _bn1d_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.BatchNorm1d(4),
                         nn.Linear(4, 5)).eval()


def _with_softmax() -> nn.Module:
    return nn.Sequential(tiny_cnn(), nn.Softmax(dim=1)).eval()


@pytest.mark.parametrize("name, build_model, message", [
    ("lrp", _gelu_cnn, r"lrp: Captum's LRP has no rule for layer '1' \(GELU\)"),
    ("lrp", _bn1d_net, r"no rule for layer '4' \(BatchNorm1d\)"),
    ("lrp", lambda: Residual(module_add=False).eval(), r"lrp: the model computes 'add' in the model's own forward "
                                                       r"\(Residual\) outside any layer.*Addition_Module"),
    ("lrp", lambda: SharedRelu().eval(), r"layer 'relu' \(ReLU\) runs 2 times per forward"),
    ("lrp", lambda: FunctionalRelu().eval(), r"computes 'relu' in the model's own forward \(FunctionalRelu\)"),
    ("deeplift", lambda: SharedRelu().eval(), r"module 'relu' \(ReLU\) runs 2 times per forward.*used more than once"),
    ("deeplift", lambda: FunctionalRelu().eval(), r"applies 'relu' in the model's own forward \(FunctionalRelu\)"),
    ("deeplift_shap", _gelu_cnn, r"applies 'gelu' in '1' \(GELU\), outside the modules"),
    ("deeplift", _with_softmax, r"module '1' \(Softmax\).*depend on the other images"),
    ("deeplift", tiny_vit, r"applies 'layer_norm' in 'encoder\.layers\.encoder_layer_0\.ln_1' \(LayerNorm\)"),
    ("deconvolution", lambda: FunctionalRelu().eval(), r"deconvolution: the model applies 'relu' in the model's own "
                                                       r"forward \(FunctionalRelu\): a function called in forward"),
    ("deconvolution", _gelu_cnn, r"applies 'gelu' in '1' \(GELU\)"),
    ("guided_gradcam", tiny_vit, r"guided_gradcam needs a CNN layer with a \(N, C, h, w\) output; layer 'encoder\."
                                 r"layers\.encoder_layer_1\.ln_1' gives tokens of a transformer.*use gradcam"),
])
def test_unsupported_models_are_refused_naming_the_module(name, build_model, message, images):
    """Architecture refusals are NotApplicable (an AttributionError the grid records as not applicable)."""
    torch.manual_seed(0)
    net = build_model()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    attributes = {n: sorted(vars(m)) for n, m in net.named_modules()}
    with pytest.raises(NotApplicable, match=message):
        adapters.get(name, **adapters.get_class(name).quick_params()).attribute(net, images[:2], 0)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())
    assert {n: sorted(vars(m)) for n, m in net.named_modules()} == attributes


def test_lrp_takes_a_residual_network_built_with_addition_module(images, maps_close):
    torch.manual_seed(0)
    net = Residual(module_add=True).eval()
    maps = adapters.get("lrp").attribute(net, images[:2], 1)
    reference = copy.deepcopy(net)
    reference.flat.rule = EpsilonRule()
    maps_close(maps, LRP(reference).attribute(images[:2].clone(), target=1).sum(1, keepdim=True))


def test_a_users_backward_hook_on_a_relu_is_refused_by_deeplift(model, images):
    handle = model.features[1].register_full_backward_hook(lambda *_: None)
    try:
        with pytest.raises(AttributionError, match=r"'features\.1' \(ReLU\) has a backward hook"):
            adapters.get("deeplift").attribute(model, images[:1], 0)
    finally:
        handle.remove()
