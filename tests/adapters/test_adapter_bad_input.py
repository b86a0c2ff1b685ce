"""Bad input gets an AttributionError that names the problem, before any work is done."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import adapters
from adapters import AttributionError, Method, UnknownMethodError


@pytest.fixture
def saliency():
    return adapters.get("saliency")


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 1, 3, 32, 32), (32, 32)])
def test_input_not_4d(saliency, model, shape):
    with pytest.raises(AttributionError, match="4-D"):
        saliency.attribute(model, torch.zeros(shape), 0)


def test_wrong_channel_count(saliency, model):
    with pytest.raises(AttributionError, match="1 channels but the model takes 3"):
        saliency.attribute(model, torch.zeros(2, 1, 32, 32), 0)


def test_input_the_model_rejects_is_named(saliency):
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4)).eval()
    with pytest.raises(AttributionError, match="model failed on an input of shape"):
        saliency.attribute(mlp, torch.zeros(2, 3, 16, 16), 0)


def test_model_without_logits(saliency):
    conv = nn.Conv2d(3, 4, 3).eval()
    with pytest.raises(AttributionError, match=r"logits \(N, K\)"):
        saliency.attribute(conv, torch.zeros(2, 3, 16, 16), 0)


@pytest.mark.parametrize("target, message", [
    (torch.tensor([0, 1, 2]), "one class index per image"),
    (torch.tensor([[0, 1]]), "one class index per image"),
    (torch.tensor([0, 5]), "out of range: model has 5 classes"),
    (torch.tensor([0, -1]), "negative"),
    (torch.tensor([0.0, 1.5]), "integer class indices"),
    (7, "out of range"),
])
def test_bad_targets(saliency, model, images, target, message):
    with pytest.raises(AttributionError, match=message):
        saliency.attribute(model, images[:2], target)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_input(saliency, model, images, value):
    x = images[:2].clone()
    x[1, 0, 3, 3] = value
    with pytest.raises(AttributionError, match="NaN or infinite"):
        saliency.attribute(model, x, 0)


def test_integer_input(saliency, model):
    with pytest.raises(AttributionError, match="floating-point"):
        saliency.attribute(model, torch.zeros(1, 3, 32, 32, dtype=torch.long), 0)


def test_model_in_training_mode(saliency, model, images):
    with pytest.raises(AttributionError, match="training mode"):
        saliency.attribute(model.train(), images[:1], 0)


def test_submodule_in_training_mode_is_named(saliency, model, images):
    model.features[1].train()
    with pytest.raises(AttributionError, match="'features.1' is in training mode"):
        saliency.attribute(model, images[:1], 0)


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(UnknownMethodError, match="unknown attribution method 'saliencyy'.*saliency"):
        adapters.get("saliencyy")
    with pytest.raises(KeyError):  # still a KeyError for dict-like callers
        adapters.get("saliencyy")


@pytest.mark.parametrize("name, params, message", [
    ("saliency", {"reduction": "median"}, "unknown channel reduction 'median'"),
    ("smoothgrad", {"n_samples": 0}, r"n_samples must be an integer in \[1, 10000\]"),
    ("smoothgrad", {"nt_type": "noise"}, "unknown nt_type"),
    ("integrated_gradients", {"integration": "simpson"}, "unknown integration"),
    ("gradcam", {"upsample": "sinc"}, "unknown upsampling"),
    ("gradcam", {"layer": 4}, "module name"),
    ("occlusion", {"window": -2}, "window must be"),
    ("lime", {"segmentation": "watershed"}, "unknown segmentation 'watershed'"),
    ("lime_captum", {"segmentation_input": "denormalize"}, "needs the normalisation's mean= and std="),
    ("random", {"seed": "zero"}, "seed must be an integer"),
    ("saliency", {"memory_mb": 0}, "memory_mb must be a finite number > 0"),
])
def test_bad_parameter_values(name, params, message):
    with pytest.raises(AttributionError, match=message):
        adapters.get(name, **params)


def test_gradcam_unknown_layer_is_named(model, images):
    with pytest.raises(AttributionError, match="no layer 'layer4'"):
        adapters.get("gradcam", layer="layer4").attribute(model, images[:1], 0)


def test_occlusion_window_larger_than_image(model, images):
    with pytest.raises(AttributionError, match="larger than the image"):
        adapters.get("occlusion", window=40).attribute(model, images[:1], 0)


def test_occlusion_cost_needs_the_image_size():
    with pytest.raises(AttributionError, match="height= and width="):
        adapters.get("occlusion").cost()


def test_oracle_without_mask_or_with_wrong_shape(model, images):
    oracle = adapters.get("oracle")
    with pytest.raises(AttributionError, match="needs the ground-truth mask"):
        oracle.attribute(model, images[:2], 0)
    with pytest.raises(AttributionError, match="mask must have shape"):
        oracle.attribute(model, images[:2], 0, mask=torch.ones(2, 16, 16))


def test_non_finite_map_raises(model, images):
    class Broken(Method):
        name = "broken"

        def _attribute(self, model, x, target):
            return torch.full((len(x), 1, *x.shape[-2:]), float("nan"))

    with pytest.raises(AttributionError, match="non-finite attribution map"):
        Broken().attribute(model, images[:1], 0)


def test_real_method_with_infinite_gradient_raises():
    # d/dx sqrt(x) is infinite at 0: saliency of this model is not finite there.
    class Sqrt(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(1, 2)

        def forward(self, x):
            return self.head(x.sqrt().mean(dim=(1, 2, 3)).unsqueeze(1))

    # The logits are finite: the map, not the model output, is at fault, and the message says so.
    with pytest.raises(AttributionError, match="produced a non-finite attribution map$"):
        adapters.get("saliency").attribute(Sqrt().eval(), torch.zeros(1, 3, 4, 4), 0)


def test_wrong_output_shape_raises(model, images):
    class Small(Method):
        name = "small"

        def _attribute(self, model, x, target):
            return torch.zeros(len(x), 1, 4, 4)

    with pytest.raises(AttributionError, match="returned shape"):
        Small().attribute(model, images[:1], 0)


def _mask_with(value: float, image: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    mask = torch.zeros(2, 32, 32, dtype=dtype)
    mask[image, 3:9, 3:9] = 1
    mask[image, 5, 5] = value
    return mask


@pytest.mark.parametrize("mask, message", [
    (_mask_with(0.5, 0), r"mask must be boolean or hold only 0 and 1, got 0\.5 \(image 0\)"),
    (_mask_with(2, 1, torch.int64), r"mask must be boolean or hold only 0 and 1, got 2 \(image 1\)"),
    (_mask_with(-1, 1, torch.int8), r"got -1 \(image 1\)"),
    (_mask_with(float("nan"), 1), r"got nan \(image 1\)"),
    (_mask_with(float("inf"), 0), r"got inf \(image 0\)"),
    (_mask_with(1, 0) * 255, r"got 255\.0 \(image 0\)"),  # an 8-bit PNG mask read as is
    (_mask_with(1, 0).tolist(), r"mask must be a torch\.Tensor, got list"),
    (_mask_with(1, 0).numpy(), r"mask must be a torch\.Tensor, got ndarray"),
    (torch.ones(2, 2, 32, 32), r"mask must have shape \(2, 1, 32, 32\) or \(2, 32, 32\), got \(2, 2, 32, 32\)"),
    (torch.ones(3, 32, 32), r"mask must have shape"),
])
@pytest.mark.parametrize("interior", ["depth", "flat"])
def test_oracle_refuses_masks_the_localisation_scores_refuse(model, images, mask, message, interior):
    with pytest.raises(AttributionError, match=message):
        adapters.get("oracle", interior=interior).attribute(model, images[:2], 0, mask=mask)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.float16, torch.float64])
def test_oracle_takes_a_0_1_mask_of_any_dtype_as_the_boolean_mask(model, images, dtype):
    mask = _mask_with(1, 0, torch.bool)
    oracle = adapters.get("oracle")
    assert torch.equal(oracle.attribute(model, images[:2], 0, mask=mask.to(dtype)),
                       oracle.attribute(model, images[:2], 0, mask=mask))
