"""The registered ``extremal`` method and the channel optimiser: outputs, cost, model hygiene, fast mode."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torchray_oracle import torchray_utils

import adapters
from adapters.base import AttributionError
from adapters.extremal import ExtremalSettings, channel_masks, extremal_masks


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, stride=2, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5)).eval()


def _images(n: int = 2, size: int = 24) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(3))


def _method(**params: object) -> adapters.Method:
    return adapters.get("extremal", **{**adapters.get_class("extremal").quick_params(), **params})


def test_attribute_is_the_sum_of_the_area_masks():
    model, x, target = _model(), _images(), torch.tensor([1, 4])
    method = _method(smoothing=0.0)
    maps = method.attribute(model, x, target)
    masks = method.explain(model, x, target).masks  # (N, 1, A, 1, H, W)
    assert maps.shape == (2, 1, 24, 24) and maps.dtype == torch.float32
    assert torch.equal(maps, masks.sum(dim=2)[:, 0])
    assert maps.max() <= len(method.params["areas"])
    assert method.diagnostics["chunk_rows"] >= 1 and method.diagnostics["backend"] == "eager"


def test_smoothing_matches_torchrays_imsmooth_of_each_mask():
    model, x = _model(), _images()
    masks = _method().explain(model, x, 2).masks[:, 0]  # (N, A, 1, H, W)
    smoothed = _method(smoothing=0.09).attribute(model, x, 2)
    # TorchRay's benchmark: imsmooth(mask, sigma = 0.09 * min(H, W)) per area, then the sum.
    reference = sum(torchray_utils.imsmooth(masks[:, a], sigma=0.09 * 24, padding_mode="constant")
                    for a in range(masks.shape[1]))
    assert (smoothed - reference).abs().max() <= 1e-5
    assert (smoothed - masks.sum(dim=1)).abs().max() > 1e-3  # smoothing really happened


def test_several_targets_per_image_equal_separate_runs():
    model, x = _model(), _images()
    method = _method()
    both = method.explain(model, x, torch.tensor([[0, 3], [2, 1]]))
    first = method.explain(model, x, torch.tensor([0, 2]))
    second = method.explain(model, x, torch.tensor([3, 1]))
    assert both.masks.shape == (2, 2, 2, 1, 24, 24)
    assert (both.masks[:, 0] - first.masks[:, 0]).abs().max() <= 1e-6
    assert (both.masks[:, 1] - second.masks[:, 0]).abs().max() <= 1e-6
    assert (both.masks[:, 0] - both.masks[:, 1]).abs().max() > 1e-4  # the target matters


def test_model_left_exactly_as_found_including_mixed_requires_grad():
    model = _model()
    model[0].weight.requires_grad_(False)  # a partly frozen model: every flag must come back as it was
    flags = [p.requires_grad for p in model.parameters()]
    _method().explain(model, _images(), 1)
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())


def test_model_restored_when_the_run_fails_midway():
    model = _model()
    calls = {"n": 0}

    def explode(_module: nn.Module, _inputs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 3:  # the probe and a few iterations have run
            raise RuntimeError("boom")

    handle = model[0].register_forward_pre_hook(explode)
    with pytest.raises(RuntimeError, match="boom"):
        extremal_masks(model, _images(), 1, [0.1], ExtremalSettings(iterations=5, backend="eager"), chunk_rows=1)
    handle.remove()
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("variant,factor", [("preserve", 1), ("delete", 1), ("dual", 2)])
def test_cost_counts_every_model_pass(variant, factor):
    method = adapters.get("extremal", areas=[0.05, 0.1, 0.2], variant=variant)
    assert method.cost() == adapters.Cost(forward=800 * 3 * factor, backward=800 * 3 * factor)
    fast = adapters.get("extremal", areas=[0.1], variant=variant, fast=True, fast_iterations=100)
    assert fast.cost() == adapters.Cost(forward=100 * factor, backward=100 * factor)


def test_model_passes_equal_the_declared_cost():
    model, x = _model(), _images(2)
    method = _method(variant="dual", iterations=3, chunk_rows=1)
    seen = []
    handle = model.register_forward_hook(lambda m, i, o: seen.append(o.shape[0]))
    method.explain(model, x, 0)
    handle.remove()
    # Probe passes see one image; the optimisation passes see 2 rows (dual) per chunk of 1 row.
    optimisation_rows = sum(n for n in seen if n == 2)
    assert optimisation_rows == method.cost().forward * x.shape[0]


def test_fast_mode_compresses_the_schedule_and_runs_fewer_iterations():
    method = _method(iterations=40, fast=True, fast_iterations=10, history_every=1)
    settings = method.settings
    assert settings.iterations == 10 and settings.schedule_iterations == 40
    weights = settings.penalty_weights()
    reference = ExtremalSettings(iterations=40).penalty_weights()
    assert weights[0] == reference[0] and weights[-1] == pytest.approx(reference[36], rel=1e-12)
    result = method.explain(_model(), _images(1), 0)
    assert result.history.iterations.tolist() == list(range(10))
    assert not _method().settings.schedule_iterations  # never the default


def test_history_is_sampled_every_k_iterations_and_at_the_last():
    result = _method(iterations=7, history_every=3).explain(_model(), _images(2), 0)
    assert result.history.iterations.tolist() == [0, 3, 6]
    assert result.history.reward.shape == (3, 2, 1, 2)
    assert result.history.residual.shape == (3, 2, 1, 2)
    assert (result.history.residual >= 0).all()
    assert torch.isfinite(result.history.reward).all()


def test_masks_reach_their_area_on_a_model_that_wants_one_region():
    """A model whose logit is the brightness of the top-left quadrant: the preserve mask keeps it."""

    class Quadrant(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 1, 1, bias=False)
            nn.init.constant_(self.conv.weight, 1.0)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            score = y[:, :, :24, :24].mean(dim=(1, 2, 3))
            return torch.stack([score, -score], dim=1)

    x = torch.zeros(1, 3, 48, 48)
    x[:, :, :24, :24] = 3.0
    result = extremal_masks(Quadrant().eval(), x, 0, [0.2], ExtremalSettings(iterations=150, backend="eager"),
                            chunk_rows=1)
    mask = result.masks[0, 0, 0, 0]
    assert mask[:24, :24].mean() > 2 * mask[24:, 24:].mean()
    assert result.history.reward[-1, 0, 0, 0] > result.history.reward[0, 0, 0, 0]


def test_channel_masks_find_the_channels_the_class_reads():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 2, bias=False)).eval()
    with torch.no_grad():
        model[4].weight.fill_(-0.2)
        model[4].weight[0, [2, 5]] = 1.0  # class 0 is driven by channels 2 and 5
        model[0].bias.fill_(1.0)  # every channel is active
    flags = [p.requires_grad for p in model.parameters()]
    # Area 0.25 of 8 channels = 2 channels. With 8 parameters (not 67,600 pixels) the default penalty
    # weight would swamp the reward, so it is scaled down.
    settings = ExtremalSettings(iterations=100, penalty=3.0, flip=False)
    result = channel_masks(model, "1", _images(1, 16), 0, [0.25], settings)
    assert result.masks.shape == (1, 1, 1, 8) and result.layer == "1"
    mask = result.masks[0, 0, 0]
    kept = set(mask.topk(2).indices.tolist())
    assert kept == {2, 5}, mask
    assert mask[[2, 5]].min() > mask[[0, 1, 3, 4, 6, 7]].max() + 0.3
    assert [p.requires_grad for p in model.parameters()] == flags
    assert not any(m._forward_hooks for m in model.modules())


def test_channel_masks_reject_bad_input():
    with pytest.raises(AttributionError, match="areas is empty"):
        channel_masks(_model(), None, _images(1), 0, [])
    with pytest.raises(AttributionError, match="layer"):
        channel_masks(_model(), "no.such.layer", _images(1), 0, [0.1])
