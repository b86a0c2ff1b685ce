"""Each Captum-backed adapter equals a direct Captum call on the same inputs, after the adapter's
documented channel reduction and upsampling."""
from __future__ import annotations

import warnings

import torch
from captum.attr import (GuidedBackprop, IntegratedGradients, LayerAttribution, LayerGradCam, NoiseTunnel,
                         Occlusion, Saliency)

import adapters
from adapters.seeding import image_seeds


def test_saliency(model, images, targets, maps_close):
    expected = Saliency(model).attribute(images.clone().requires_grad_(), target=targets, abs=True).amax(1, keepdim=True)
    maps_close(adapters.get("saliency").attribute(model, images, targets), expected)
    expected_sum = Saliency(model).attribute(images.clone().requires_grad_(), target=targets).sum(1, keepdim=True)
    maps_close(adapters.get("saliency", reduction="sum_abs").attribute(model, images, targets), expected_sum)


def test_smoothgrad_equals_noise_tunnel_seeded_per_image(model, images, targets, maps_close):
    method = adapters.get("smoothgrad", n_samples=6, noise_level=0.2, seed=7, batch_size=4)
    maps = method.attribute(model, images[:3], targets[:3])
    stdevs = method.noise_stdevs(images[:3])
    for i, seed in enumerate(image_seeds(images[:3], 7)):
        torch.manual_seed(seed)
        direct = NoiseTunnel(Saliency(model)).attribute(images[i:i + 1].clone().requires_grad_(), nt_type="smoothgrad",
                                                        nt_samples=6, stdevs=stdevs[i], target=targets[i:i + 1])
        maps_close(maps[i:i + 1], direct.amax(1, keepdim=True))
    assert stdevs[0] == 0.2 * float(images[0].max() - images[0].min())


def test_smoothgrad_sq_and_vargrad(model, images, targets, maps_close):
    for nt_type in ("smoothgrad_sq", "vargrad"):
        method = adapters.get("smoothgrad", n_samples=4, nt_type=nt_type, reduction="sum")
        maps = method.attribute(model, images[:1], targets[:1])
        torch.manual_seed(image_seeds(images[:1], 0)[0])
        direct = NoiseTunnel(Saliency(model)).attribute(images[:1].clone().requires_grad_(), nt_type=nt_type,
                                                        nt_samples=4, stdevs=method.noise_stdevs(images[:1])[0],
                                                        target=targets[:1])
        maps_close(maps, direct.sum(1, keepdim=True))


def test_integrated_gradients_and_delta(model, images, targets, maps_close):
    method = adapters.get("integrated_gradients", n_steps=16, baseline=0.5)
    maps = method.attribute(model, images[:4], targets[:4])
    direct, delta = IntegratedGradients(model).attribute(images[:4], baselines=0.5, target=targets[:4], n_steps=16,
                                                         return_convergence_delta=True)
    maps_close(maps, direct.sum(1, keepdim=True))
    torch.testing.assert_close(method.diagnostics["convergence_delta"], delta.float(), rtol=1e-3, atol=1e-5)


def test_occlusion(model, images, targets, maps_close):
    maps = adapters.get("occlusion", window=8, stride=4).attribute(model, images[:3], targets[:3])
    direct = Occlusion(model).attribute(images[:3], sliding_window_shapes=(3, 8, 8), strides=(3, 4, 4), baselines=0.0,
                                        target=targets[:3])
    maps_close(maps, direct.mean(1, keepdim=True))
    assert torch.allclose(direct[:, 0], direct[:, 2]), "a full-channel window gives every channel the same value"


def test_guided_backprop(model, images, targets, maps_close):
    maps = adapters.get("guided_backprop").attribute(model, images[:3], targets[:3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        direct = GuidedBackprop(model).attribute(images[:3].clone().requires_grad_(), target=targets[:3])
    maps_close(maps, direct.abs().amax(1, keepdim=True))
    assert not torch.allclose(maps, adapters.get("saliency").attribute(model, images[:3], targets[:3]))


def test_gradcam(model, images, targets, maps_close):
    method = adapters.get("gradcam")
    maps = method.attribute(model, images[:3], targets[:3])
    assert method.diagnostics["layer"] == "features"
    cam = LayerGradCam(model, model.features).attribute(images[:3], target=targets[:3], relu_attributions=True)
    maps_close(maps, LayerAttribution.interpolate(cam, (32, 32), interpolate_mode="bilinear"))


def test_cost_matches_the_passes_captum_makes(model, images, targets):
    # Count model calls (rows) for one image: forwards as rows seen by the model's forward.
    rows = []
    handle = model.register_forward_hook(lambda _m, inputs, _o: rows.append(len(inputs[0])))
    try:
        for name, params in [("saliency", {}), ("integrated_gradients", {"n_steps": 5}),
                             ("smoothgrad", {"n_samples": 3}), ("occlusion", {"window": 8, "stride": 8}),
                             ("lime_captum", {"n_samples": 40}), ("lime", {"n_samples": 40})]:
            method = adapters.get(name, **params)
            method.attribute(model, images[:1], targets[:1])  # warm the probe cache: it is not per call
            rows.clear()
            method.attribute(model, images[:1], targets[:1])
            assert sum(rows) == method.cost(height=32, width=32).forward, name
    finally:
        handle.remove()
