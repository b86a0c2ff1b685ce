"""Every method leaves the model exactly as it found it: weights, training flags, requires_grad,
hooks, and no weight gradients accumulated."""
from __future__ import annotations

import pytest
import torch

import adapters
from adapters import AttributionError, Method

METHODS = adapters.names()


def snapshot(model):
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "hooks": [(list(m._forward_hooks), list(m._forward_pre_hooks), list(m._backward_hooks)) for m in model.modules()],
        "grads": [p.grad for p in model.parameters()],
    }


@pytest.mark.parametrize("name", METHODS)
def test_model_left_as_found(name, model, images, targets, build, run):
    # A partly frozen model with a user's hook on its last layer (TinyCNN's or the ViT's head): both must survive.
    next(model.parameters()).requires_grad_(False)
    calls = []
    list(model.modules())[-1].register_forward_hook(lambda *_: calls.append(1))
    before = snapshot(model)
    run(build(name), model, images[:2], targets[:2])
    after = snapshot(model)
    assert before["training"] == after["training"]
    assert before["requires_grad"] == after["requires_grad"]
    assert before["hooks"] == after["hooks"]
    assert all(g is None for g in after["grads"]), "a method must not accumulate weight gradients"
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), key
    assert calls, "the user's hook stays registered and active"


@pytest.mark.parametrize("name", METHODS)
def test_input_left_as_found(name, model, images, targets, build, run):
    x = images[:2].clone()
    run(build(name), model, x, targets[:2])
    assert torch.equal(x, images[:2]) and not x.requires_grad and x.grad is None


def test_a_method_that_changes_the_model_is_caught(model, images):
    class Careless(Method):
        name = "careless"

        def _attribute(self, model, x, target):
            model.head.weight.requires_grad_(False)
            return torch.zeros(len(x), 1, *x.shape[-2:])

    with pytest.raises(AttributionError, match="changed the model"):
        Careless().attribute(model, images[:1], 0)
