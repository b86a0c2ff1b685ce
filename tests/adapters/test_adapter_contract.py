"""Contract tests every registered method gets for free (walks ``adapters.names()``).

A method is built with ``Method.quick_params()`` (its cheap settings) so slow methods stay fast.
"""
from __future__ import annotations

import inspect

import pytest
import torch

import adapters
from adapters import AttributionError, Cost, UnknownParameterError

METHODS = adapters.names()


def test_registry_lists_the_issue_methods():
    expected = {"saliency", "smoothgrad", "gradcam", "integrated_gradients", "occlusion", "lime", "lime_captum",
                "guided_backprop", "random", "edge", "center", "oracle"}
    assert expected <= set(METHODS)


@pytest.mark.parametrize("name", METHODS)
def test_map_shape_dtype_device_finite(name, model, images, targets, build, run):
    maps = run(build(name), model, images, targets)
    assert maps.shape == (len(images), 1, *images.shape[-2:])
    assert maps.dtype == torch.float32
    assert maps.device == images.device
    assert torch.isfinite(maps).all()
    assert not maps.requires_grad


@pytest.mark.parametrize("name", METHODS)
def test_int_target_is_broadcast(name, model, images, build, run, maps_close):
    method = build(name)
    maps_close(run(method, model, images[:3], 2), run(method, model, images[:3], torch.tensor([2, 2, 2])))


@pytest.mark.parametrize("name", METHODS)
def test_params_round_trip_and_declared_knobs(name, build):
    method = build(name)
    assert isinstance(method.params, dict)
    rebuilt = adapters.get(name, **method.params)
    assert rebuilt.params == method.params
    cls = adapters.get_class(name)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    assert set(cls.memory_knobs) <= accepted, "memory knobs must be constructor parameters"
    if cls.stochastic:
        assert "seed" in method.params, "a stochastic method must take a seed"


@pytest.mark.parametrize("name", METHODS)
def test_unknown_parameter_is_named(name):
    with pytest.raises(UnknownParameterError, match="no_such_knob"):
        adapters.get(name, no_such_knob=1)


@pytest.mark.parametrize("name", METHODS)
def test_cost_counts_passes(name, build, model):
    # model= lets a method whose count depends on the architecture (Score-CAM: 1 + the layer's channels) find it.
    cost = build(name).cost(height=32, width=32, channels=3, n_classes=5, model=model)
    assert isinstance(cost, Cost)
    assert isinstance(cost.forward, int) and isinstance(cost.backward, int)
    assert cost.forward >= cost.backward >= 0


@pytest.mark.parametrize("name", METHODS)
def test_diagnostics_replaced_per_call(name, model, images, targets, build, run):
    method = build(name)
    run(method, model, images[:2], targets[:2])
    first = method.diagnostics
    run(method, model, images[:2], targets[:2])
    assert isinstance(method.diagnostics, dict) and method.diagnostics is not first


@pytest.mark.parametrize("name", METHODS)
def test_unexpected_attribute_argument_is_named(name, model, images, targets, build):
    with pytest.raises(AttributionError, match="bogus"):
        build(name).attribute(model, images[:1], targets[:1], bogus=1)


@pytest.mark.parametrize("name", [n for n in METHODS if adapters.get_class(n).needs_attention])
def test_attention_method_refuses_a_model_without_attention(name, make_model, images, build, run):
    with pytest.raises(AttributionError, match=r"needs a transformer's attention probabilities, but TinyCNN has no "
                                               r"supported attention module \(torch\.nn\.MultiheadAttention"):
        run(build(name), make_model(0), images[:2], 0)
