"""TorchRay's extremal perturbation as a float64 test oracle.

TorchRay is CC-BY-NC: the tests call it, the library never imports it. It builds its blur filters
and its mask-generator weights in float32 whatever the input dtype, so for float64 comparisons we
run its own code with ``torch.float32`` read as float64 (and its float32 constants promoted): the
oracle's maths is untouched, only its precision. Its optimiser is wrapped to record the mask
parameters used at every iteration.
"""
from __future__ import annotations

import contextlib
import copy
import math
import types
from typing import Iterator

import pytest
import torch
from torch import Tensor, nn

ep = pytest.importorskip("torchray.attribution.extremal_perturbation", reason="TorchRay (test oracle) not installed")
torchray_utils = pytest.importorskip("torchray.utils")


class _Float64Torch(types.ModuleType):
    """``torch`` for the oracle's modules, with ``float32`` meaning float64."""

    float32 = torch.float64

    def __init__(self) -> None:
        super().__init__("torch")

    def __getattr__(self, name: str) -> object:
        return getattr(torch, name)


@contextlib.contextmanager
def float64_torchray() -> Iterator[types.ModuleType]:
    """TorchRay's extremal-perturbation module computing in float64 throughout."""
    saved = (ep.torch, torchray_utils.torch, torchray_utils.SQRT_TWO_SINGLE, torchray_utils.EPSILON_SINGLE,
             torch.get_default_dtype())
    shim = _Float64Torch()
    ep.torch = shim
    torchray_utils.torch = shim
    torchray_utils.SQRT_TWO_SINGLE = torch.tensor(math.sqrt(2), dtype=torch.float64)
    torchray_utils.EPSILON_SINGLE = torch.tensor(2.0 ** -23, dtype=torch.float64)
    torch.set_default_dtype(torch.float64)
    try:
        yield ep
    finally:
        (ep.torch, torchray_utils.torch, torchray_utils.SQRT_TWO_SINGLE, torchray_utils.EPSILON_SINGLE,
         default) = saved
        torch.set_default_dtype(default)


def torchray_run(model: nn.Module, x: Tensor, target: int, areas: list[float], iterations: int,
                 variant: str = "preserve", reward: str = "logit") -> tuple[Tensor, Tensor, Tensor]:
    """One TorchRay call on x (1, C, H, W) in float64.

    Returns (params (T, K, 1, h, w): the parameters used at iterations 0..T-1, masks (K, 1, H, W),
    hist (K, 2, T): TorchRay's logged reward and weighted regulariser). The model is deep-copied
    because TorchRay switches its requires_grad flags off for good.
    """
    log: list[Tensor] = []

    class RecordingSGD(torch.optim.SGD):
        def zero_grad(self, set_to_none: bool = True) -> None:  # called after each forward pass
            log.append(self.param_groups[0]["params"][0].detach().clone())
            super().zero_grad(set_to_none)

    reward_func = {"logit": "simple_reward", "contrastive": "contrastive_reward"}[reward]
    with float64_torchray() as oracle:
        original = oracle.optim.SGD
        oracle.optim.SGD = RecordingSGD
        try:
            masks, hist = oracle.extremal_perturbation(
                copy.deepcopy(model), x, target, areas=areas, max_iter=iterations, variant=variant,
                reward_func=getattr(oracle, reward_func))
        finally:
            oracle.optim.SGD = original
    return torch.stack(log), masks, hist


def tiny_cnn(seed: int = 0) -> nn.Module:
    """A small fixed-seed float64 CNN (N, 3, H, W) -> (N, 5) for oracle comparisons."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 5, stride=2, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5),
    )
    return model.double().eval()
