"""The CAM family (Grad-CAM++, XGrad-CAM, HiResCAM, LayerCAM, Eigen-CAM, Score-CAM) against
pytorch-grad-cam 1.5.5's raw maps: on TinyCNN, a torchvision ResNet-18, a zoo model and a tiny ViT;
Eigen-CAM's sign rule; Score-CAM's batching, cost and memory; bad parameters."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import adapters
from adapters import AttributionError, Cost
from adapters.cam import capture_layer
from adapters.maps import upsample
from adapters.methods import eigencam
from conftest import tiny_cnn, tiny_vit
from gradcam_oracle import reference_cam, vit_reshape

#: Our name -> pytorch-grad-cam's class.
CAMS = {"gradcam_pp": "GradCAMPlusPlus", "xgradcam": "XGradCAM", "hirescam": "HiResCAM", "layercam": "LayerCAM",
        "eigencam": "EigenCAM", "scorecam": "ScoreCAM"}


def resnet18(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return torchvision.models.resnet18(weights=None, num_classes=5).eval()


def _x(n: int, size: int, seed: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _ours_and_reference(name: str, model: nn.Module, x: torch.Tensor, target: torch.Tensor,
                        reshape=None, layer: str | None = None) -> tuple[torch.Tensor, torch.Tensor, adapters.Method]:
    """Our map and pytorch-grad-cam's, both nearest-upsampled from the same layer's grid (so equal maps
    at the layer's resolution give equal tensors)."""
    method = adapters.get(name, upsample="nearest", layer=layer)
    ours = method.attribute(model, x, target)
    reference = reference_cam(CAMS[name], model, method.diagnostics["layer"], x, target, reshape)
    return ours, upsample(reference, tuple(x.shape[-2:]), "nearest"), method


def _assert_equal_maps(ours: torch.Tensor, reference: torch.Tensor) -> None:
    scale = float(reference.abs().max())
    assert scale > 0, "a vacuous comparison: the reference map is zero"
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5 * scale)


# ---------------------------------------------------------------------------------------------
# Equality with pytorch-grad-cam (Eigen-CAM: up to its arbitrary sign, see below)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [n for n in CAMS if n != "eigencam"])
def test_equals_pytorch_grad_cam_on_tiny_cnn(name):
    ours, reference, method = _ours_and_reference(name, tiny_cnn(), _x(3, 32), torch.tensor([0, 3, 4]))
    assert method.diagnostics["layer"] == "features" and method.diagnostics["grid"] == (16, 16)
    _assert_equal_maps(ours, reference)


@pytest.mark.parametrize("name", [n for n in CAMS if n != "eigencam"])
def test_equals_pytorch_grad_cam_on_resnet18(name):
    # 64 px: layer4 is 2x2, so take layer3 (4x4) as well to compare more than four numbers. Score-CAM
    # runs 1 + C forwards per image: one image on layer3 (C = 256).
    model, x, target = resnet18(), _x(2, 64), torch.tensor([1, 4])
    if name == "scorecam":
        ours, reference, method = _ours_and_reference(name, model, x[:1], target[:1], layer="layer3")
        assert method.diagnostics["channels"] == 256 and method.diagnostics["grid"] == (4, 4)
        _assert_equal_maps(ours, reference)
        return
    for layer in (None, "layer3"):
        ours, reference, method = _ours_and_reference(name, model, x, target, layer=layer)
        assert method.diagnostics["layer"] == (layer or "layer4")
        _assert_equal_maps(ours, reference)


@pytest.fixture(scope="module")
def zoo_model():
    zoo = pytest.importorskip("bench.zoo")
    entry = zoo.load("small_cnn-synthetic")
    x, labels, _ = entry.batch(n=3)
    return entry.model.eval(), x, labels


@pytest.mark.parametrize("name", [n for n in CAMS if n != "eigencam"])
def test_equals_pytorch_grad_cam_on_a_zoo_model(name, zoo_model):
    model, x, labels = zoo_model
    ours, reference, _ = _ours_and_reference(name, model, x, labels)
    _assert_equal_maps(ours, reference)


@pytest.mark.parametrize("name", ["gradcam_pp", "layercam", "hirescam", "scorecam"])
def test_equals_pytorch_grad_cam_on_a_vit_with_its_reshape_transform(name):
    model, x, target = tiny_vit(), _x(3, 32), torch.tensor([4, 0, 2])
    ours, reference, method = _ours_and_reference(name, model, x, target, vit_reshape(1, 4, 4))
    assert method.diagnostics["layer"] == "encoder.layers.encoder_layer_1.ln_1"
    assert method.diagnostics["layout"] == "tokens" and method.diagnostics["grid"] == (4, 4)
    _assert_equal_maps(ours, reference)


# ---------------------------------------------------------------------------------------------
# Eigen-CAM: pytorch-grad-cam's projection up to a per-image sign, and our sign rule
# ---------------------------------------------------------------------------------------------

def _eigen_cases() -> list[tuple[nn.Module, str, torch.Tensor, object]]:
    return [(tiny_cnn(), "features", _x(6, 32), None),
            (resnet18(), "layer3", _x(4, 64), None),
            (tiny_vit(), "encoder.layers.encoder_layer_1.ln_1", _x(4, 32), vit_reshape(1, 4, 4))]


def test_eigencam_is_pytorch_grad_cams_projection_oriented_to_the_activations():
    """Per image, our coarse map is ReLU(s * P) with P pytorch-grad-cam's projection and s = +-1
    chosen so that the largest-magnitude value of s * P is positive; pytorch-grad-cam keeps LAPACK's
    sign, which inverts some maps (issue #315): there, its ReLU keeps the weaker side."""
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    inverted = 0
    for model, layer, x, _ in _eigen_cases():
        method = adapters.get("eigencam", layer=layer, upsample="nearest")
        ours = method.attribute(model, x, 0)
        captured = capture_layer(model, layer, model.get_submodule(layer), x, None)
        acts = captured.activations
        raw = torch.from_numpy(get_2d_projection(acts.numpy().copy())).unsqueeze(1)  # (N, 1, h, w)
        flat = raw.flatten(1)
        sign = torch.sign(flat.amax(dim=1) + flat.amin(dim=1)).view(-1, 1, 1, 1)
        assert (sign != 0).all()
        expected = upsample((sign * raw).clamp(min=0), tuple(x.shape[-2:]), "nearest")
        torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))
        inverted += int((sign < 0).sum())
        # Where the reference's sign is the other one, its map is the ReLU of the inverted projection.
        reference = upsample(reference_cam("EigenCAM", model, layer, x, torch.zeros(len(x), dtype=torch.long),
                                           _eigen_reshape(layer)), tuple(x.shape[-2:]), "nearest")
        same = (sign > 0).flatten()
        torch.testing.assert_close(ours[same], reference[same], rtol=1e-4, atol=1e-5 * float(expected.abs().max()))
    print(f"pytorch-grad-cam's Eigen-CAM sign is inverted on {inverted} of 14 images")


def _eigen_reshape(layer: str):
    return vit_reshape(1, 4, 4) if layer.startswith("encoder") else None


def test_eigencam_sign_does_not_depend_on_the_svd_backend(monkeypatch):
    """The other valid SVD (U, S, V) -> (-U, S, -V), which another LAPACK may return, gives the same map."""
    model, x = resnet18(), _x(4, 64)
    first = adapters.get("eigencam").attribute(model, x, 0)
    svd = torch.linalg.svd

    def other_sign(a, full_matrices=True):
        u, s, vh = svd(a, full_matrices=full_matrices)
        return -u, s, -vh

    monkeypatch.setattr(eigencam.torch.linalg, "svd", other_sign)
    assert torch.equal(adapters.get("eigencam").attribute(model, x, 0), first)
    assert first.flatten(1).amax(dim=1).min() > 0


def test_eigencam_orientation_rule():
    projection = torch.tensor([[3.0, -1.0], [1.0, -3.0], [2.0, -2.0], [2.0, -2.0], [0.0, 0.0]]).view(5, 1, 1, 2)
    loadings = torch.tensor([[-0.6, -0.8], [0.6, 0.8], [0.6, 0.8], [-0.6, -0.8], [0.0, 0.0]])
    assert eigencam.orientation(projection, loadings).tolist() == [1.0, -1.0, 1.0, -1.0, 1.0]


def test_eigencam_ignores_the_target_and_needs_no_backward():
    model, x = tiny_cnn(), _x(3, 32)
    method = adapters.get("eigencam")
    assert torch.equal(method.attribute(model, x, 0), method.attribute(model, x, torch.tensor([4, 2, 1])))
    assert method.cost() == Cost(forward=1, backward=0)


# ---------------------------------------------------------------------------------------------
# Score-CAM: batching over images x channels, cost, memory
# ---------------------------------------------------------------------------------------------

def _rows_seen(model: nn.Module) -> tuple[list[int], object]:
    seen: list[int] = []
    return seen, model.register_forward_hook(lambda m, i, o: seen.append(o.shape[0]))


def test_scorecam_runs_one_plus_c_forwards_per_image_in_chunks_of_batch_size():
    model, x = tiny_cnn(), _x(3, 32)
    method = adapters.get("scorecam", batch_size=7)
    seen, handle = _rows_seen(model)
    method.attribute(model, x, torch.tensor([0, 1, 2]))
    handle.remove()
    channels = method.diagnostics["channels"]
    assert channels == 16 and method.diagnostics["batch_size"] == 7
    masked = seen[-math.ceil(3 * channels / 7):]  # the masked passes come last
    assert sum(masked) == 3 * channels and max(masked) == 7 and sum(seen) - sum(masked) <= 3 + 1  # capture (+ probe)
    assert method.cost(layer_channels=channels) == Cost(forward=1 + channels)


def test_scorecam_cost_from_the_probe_or_a_context_key():
    method = adapters.get("scorecam")
    assert method.cost(model=tiny_cnn(), height=32, width=32, channels=3) == Cost(forward=17)
    assert method.cost(model=resnet18(), height=64, width=64, channels=3) == Cost(forward=513)
    assert adapters.get("scorecam", layer="layer3").cost(model=resnet18(), height=64, width=64,
                                                          channels=3) == Cost(forward=257)
    assert method.cost(model=tiny_vit(), height=32, width=32, channels=3) == Cost(forward=17)  # hidden_dim 16
    assert method.cost(layer_channels=2048) == Cost(forward=2049)
    with pytest.raises(AttributionError, match="layer_channels"):
        method.cost(height=32, width=32, channels=3, n_classes=5)
    with pytest.raises(AttributionError, match="height="):
        method.cost(model=tiny_cnn(), width=32, channels=3)
    with pytest.raises(AttributionError, match="layer_channels must be an integer"):
        method.cost(layer_channels=0)


def test_scorecam_memory_budget_and_batch_size_only_change_speed(maps_close):
    model, x, target = tiny_cnn(), _x(4, 32), torch.tensor([0, 1, 2, 3])
    reference = adapters.get("scorecam").attribute(model, x, target)
    for params in ({"batch_size": 1}, {"batch_size": 5}, {"memory_mb": 0.05}):
        maps_close(adapters.get("scorecam", **params).attribute(model, x, target), reference)


# ---------------------------------------------------------------------------------------------
# All of them: batch invariance, model untouched, bad parameters
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [n for n in CAMS if n != "scorecam"])  # Score-CAM: TinyCNN, in the contract tests
def test_batches_of_1_3_8_agree_on_resnet18(name, maps_close):
    model, x = resnet18(), _x(8, 64, seed=5)
    target = torch.arange(8) % 5
    method = adapters.get(name, layer="layer3")
    whole = method.attribute(model, x, target)
    for size in (1, 3):
        pieces = [method.attribute(model, x[i:i + size], target[i:i + size]) for i in range(0, 8, size)]
        maps_close(torch.cat(pieces), whole)
    assert whole.flatten(1).amax(dim=1).min() > 0, "every image gets a non-zero map"


@pytest.mark.parametrize("name", list(CAMS))
@pytest.mark.parametrize("params, named", [
    ({"layer": 3}, "layer"), ({"upsample": "cubic"}, "upsample"), ({"layout": "chw"}, "layout"),
    ({"batch_size": 0}, "batch_size"), ({"memory_mb": -1.0}, "memory_mb"),
])
def test_bad_parameters_are_named(name, params, named):
    with pytest.raises(AttributionError, match=named):
        adapters.get(name, **params)


@pytest.mark.parametrize("name", list(CAMS))
def test_an_unknown_layer_is_named(name):
    with pytest.raises(AttributionError, match="no layer 'no.such'"):
        adapters.get(name, layer="no.such").attribute(tiny_cnn(), _x(1, 32), 0)


def test_maps_are_non_negative_and_differ_between_methods():
    model, x, target = resnet18(), _x(1, 64), torch.tensor([1])
    maps = {name: adapters.get(name, layer="layer3").attribute(model, x, target) for name in CAMS}
    for name, m in maps.items():
        assert (m >= 0).all(), name
    flat = torch.stack([m.flatten() / m.abs().max() for m in maps.values()])
    distances = torch.cdist(flat, flat)
    assert distances[~torch.eye(len(maps), dtype=torch.bool)].min() > 1e-3, "no two CAMs are the same map"
    assert np.isfinite(distances.numpy()).all()


@pytest.mark.parametrize("name", ["gradcam", "gradcam_pp", "eigencam", "scorecam"])
def test_an_inplace_relu_after_the_layer_changes_nothing(name) -> None:
    """vgg_slim's Grad-CAM layer (a BatchNorm) feeds ReLU(inplace=True): the captured activations
    must be the layer's own output, not overwritten by the ReLU, and the backward must not fail on
    them. The same network with out-of-place ReLUs gives the same maps."""
    from bench.models import get_spec

    spec = get_spec("vgg_slim")
    torch.manual_seed(0)
    inplace = spec.builder(4).eval()
    outofplace = spec.builder(4).eval()
    outofplace.load_state_dict(inplace.state_dict())
    for module in outofplace.modules():
        if isinstance(module, torch.nn.ReLU):
            module.inplace = False
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    params = {**adapters.get_class(name).quick_params(), "layer": spec.gradcam_layer}
    expected = adapters.get(name, **params).attribute(outofplace, x, [0, 3])
    torch.testing.assert_close(adapters.get(name, **params).attribute(inplace, x, [0, 3]), expected)
