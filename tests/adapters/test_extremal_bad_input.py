"""Bad input to the extremal method: clear errors that name the problem, before any optimisation."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import adapters
from adapters.base import AttributionError
from adapters.extremal import ExtremalSettings, extremal_masks


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 5)).eval()


def _quick(**params: object) -> adapters.Method:
    return adapters.get("extremal", **{**adapters.get_class("extremal").quick_params(), **params})


@pytest.mark.parametrize("areas", [0.0, 1.0, -0.1, 1.5, [0.1, 1.0], [0.2, 0.0], math.nan, [math.inf]])
def test_areas_outside_the_open_unit_interval(areas):
    with pytest.raises(AttributionError, match="between 0 and 1"):
        _quick(areas=areas)


@pytest.mark.parametrize("areas", [[], ()])
def test_empty_areas(areas):
    with pytest.raises(AttributionError, match="areas is empty"):
        _quick(areas=areas)


@pytest.mark.parametrize("areas", ["0.1", [None], [True], object()])
def test_areas_that_are_not_numbers(areas):
    with pytest.raises(AttributionError, match="area"):
        _quick(areas=areas)


@pytest.mark.parametrize("name,value,words", [
    ("variant", "keep", "unknown variant 'keep'"),
    ("reward", "softmax", "unknown reward 'softmax'"),
    ("perturbation", "noise", "unknown perturbation 'noise'"),
    ("backend", "cuda-graphs", "unknown backend 'cuda-graphs'"),
    ("iterations", 0, r"iterations must be an integer in \[1, 10000\]"),
    ("iterations", 2.5, r"iterations must be an integer in \[1, 10000\]"),
    ("step", 0, r"step must be an integer in \[1, 64\]"),
    ("levels", 1, r"levels must be an integer in \[2, 64\]"),
    ("sigma", -1.0, r"sigma must be a finite number in \(0, 256\]"),
    ("lr", 0.0, "lr must be a finite number > 0"),
    ("momentum", 1.0, r"momentum must be a finite number in \[0, 1\)"),
    ("dampening", 1.5, r"dampening must be a finite number in \[0, 1\]"),
    ("penalty", math.nan, "penalty must be a finite number >= 0"),
    ("flip", "yes", "flip must be True or False"),
    ("fast", 1, "fast must be True or False"),
    ("smoothing", -0.1, r"smoothing must be a finite number in \[0, 1\]"),
    ("chunk_rows", 0, r"chunk_rows must be an integer in \[1, 65536\] or None"),
    ("memory_mb", -5, "memory_mb must be a finite number > 0"),
])
def test_bad_parameters_are_named(name, value, words):
    with pytest.raises(AttributionError, match=words):
        _quick(**{name: value})


def test_fast_iterations_must_be_positive_when_fast():
    with pytest.raises(AttributionError, match=r"fast_iterations must be an integer in \[1, 10000\]"):
        _quick(fast=True, fast_iterations=0)


@pytest.mark.parametrize("target", [5, -1, [0, 7]])
def test_targets_out_of_range(target):
    x = torch.randn(2, 3, 16, 16)
    with pytest.raises(AttributionError, match="target"):
        _quick().attribute(_model(), x, target)


def test_targets_out_of_range_in_a_multi_target_explanation():
    x = torch.randn(2, 3, 16, 16)
    with pytest.raises(AttributionError, match="target out of range"):
        _quick().explain(_model(), x, torch.tensor([[0, 1], [2, 9]]))


def test_images_of_different_sizes_in_one_batch():
    images = [torch.randn(3, 16, 16), torch.randn(3, 16, 20)]
    with pytest.raises(AttributionError, match="images of different sizes in one batch"):
        _quick().explain(_model(), images, 0)
    with pytest.raises(AttributionError, match="images of different sizes"):
        extremal_masks(_model(), images, 0, [0.1], ExtremalSettings(iterations=1, backend="eager"))


def test_a_list_of_same_size_images_is_accepted():
    images = [torch.randn(3, 16, 16), torch.randn(1, 3, 16, 16)]
    result = _quick(iterations=1).explain(_model(), images, [0, 1])
    assert result.masks.shape == (2, 1, 2, 1, 16, 16)


def test_model_in_training_mode():
    model = _model().train()
    with pytest.raises(AttributionError, match="training mode"):
        _quick().attribute(model, torch.randn(1, 3, 16, 16), 0)
    with pytest.raises(AttributionError, match="training mode"):
        extremal_masks(model, torch.randn(1, 3, 16, 16), 0, [0.1], ExtremalSettings(iterations=1, backend="eager"))


def test_submodule_in_training_mode():
    model = _model()
    model[0].train()  # batch-norm or dropout in train mode would couple the rows of a batch
    with pytest.raises(AttributionError, match="training mode"):
        _quick().attribute(model, torch.randn(1, 3, 16, 16), 0)


def test_bad_input_leaves_the_model_untouched():
    model = _model()
    flags = [p.requires_grad for p in model.parameters()]
    with pytest.raises(AttributionError):
        extremal_masks(model, [torch.randn(3, 8, 8), torch.randn(3, 9, 8)], 0, [0.1])
    assert [p.requires_grad for p in model.parameters()] == flags
