"""Every registered method on a vision transformer: a valid map, or a clear refusal (never a crash
from deep inside torch), with the model left exactly as it was."""
from __future__ import annotations

import pytest
import torch
import torchvision

import adapters
from adapters.base import ModelState
from conftest import explain, quick


def tiny_vit() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                                 hidden_dim=16, mlp_dim=32, num_classes=5)
    model.heads.head.reset_parameters()  # torchvision zero-initialises it: every gradient would be 0
    return model.eval()


@pytest.mark.parametrize("name", adapters.names())
def test_every_method_runs_on_a_vit_or_refuses_clearly(name):
    model = tiny_vit()
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    before = ModelState.of(model)
    logits = model(x)
    try:
        maps = explain(quick(name), model, x, torch.tensor([0, 1, 2]))
    except adapters.AttributionError as error:
        assert str(error) and "Traceback" not in str(error)
    else:
        assert maps.shape == (3, 1, 32, 32) and torch.isfinite(maps).all()
    assert ModelState.of(model) == before
    assert torch.equal(model(x), logits)
