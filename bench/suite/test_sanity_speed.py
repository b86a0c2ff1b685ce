"""Cascading model randomisation: ours against Quantus 0.6.0 MPRT, same model, images and explainer.

Run: ``.venv/bin/python -m pytest bench/suite/test_sanity_speed.py --benchmark-enable -q``.
Self-contained: a randomly initialised torchvision resnet18 (the cost does not depend on training),
a plain gradient explainer shared by both, and the maps of the trained model given to both.

Ours randomises the 6 blocks of the spec (fc, layer4, layer3, layer2, layer1, stem): 6 explanation
passes, and computes four similarity measures on the device. Quantus resets every module with
``reset_parameters`` (20 conv + 20 batch-norm + 1 linear = 41 on resnet18) and explains the
original again: 42 passes, then Spearman through SciPy. ``SANITY_BENCH_SIZE`` (default 224) and
``SANITY_BENCH_N`` (default 4) set the input size and the number of images;
``BENCH_THREADS`` sets torch's intra-op threads for both (default: torch's own choice). On
a CPU shared with other jobs, 1 thread avoids the stalls of oversubscribed OpenMP regions, which
hit the many small tensor ops of our similarity code harder than Quantus' single-threaded NumPy.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from adapters.base import Cost, Method
from metrics.scores.sanity import model_randomisation_cascading
from bench.suite.subjects import resnet18_batch

SIZE = int(os.environ.get("SANITY_BENCH_SIZE", "224"))
N_IMAGES = int(os.environ.get("SANITY_BENCH_N", "4"))
BLOCKS = [("fc", ["fc"]), ("layer4", ["layer4"]), ("layer3", ["layer3"]), ("layer2", ["layer2"]),
          ("layer1", ["layer1"]), ("stem", ["conv1", "bn1"])]


class Gradient(Method):
    """|d logit_target / d x| summed over channels: the explainer both implementations call."""

    name = "bench_gradient"

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor, **_: Any) -> Tensor:
        self.calls += 1
        x = x.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(x).gather(1, target[:, None]).sum(), x)
        return grad.abs().sum(dim=1, keepdim=True)

    def cost(self, **_: Any) -> Cost:
        return Cost(forward=1, backward=1)


@pytest.fixture(scope="module")
def setup() -> dict[str, Any]:
    model, x, target = resnet18_batch(N_IMAGES, SIZE)
    method = Gradient()
    attributions = method.attribute(model, x, target)
    return {"model": model, "x": x, "target": target, "method": method, "attributions": attributions}


def _info(benchmark: Any, passes: int, seconds: float) -> None:
    benchmark.extra_info.update(images=N_IMAGES, size=SIZE, explanation_passes=passes,
                                seconds_per_image=seconds / N_IMAGES, threads=torch.get_num_threads())


@pytest.mark.benchmark(group="sanity-cascading-resnet18")
def test_ours_cascading(benchmark: Any, setup: dict[str, Any]) -> None:
    method: Gradient = setup["method"]

    def run() -> Tensor:
        return model_randomisation_cascading(model=setup["model"], x=setup["x"], target=setup["target"],
                                             attributions=setup["attributions"], method=method, blocks=BLOCKS).scores

    method.calls = 0
    scores = benchmark.pedantic(run, rounds=2, iterations=1, warmup_rounds=0)
    passes = method.calls // 2
    assert passes == len(BLOCKS)
    assert scores.shape == (N_IMAGES,)
    _info(benchmark, passes, benchmark.stats.stats.mean)


@pytest.mark.benchmark(group="sanity-cascading-resnet18")
def test_quantus_mprt(benchmark: Any, setup: dict[str, Any]) -> None:
    quantus = pytest.importorskip("quantus")
    method: Gradient = setup["method"]

    def explain(model: nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: Any) -> np.ndarray:
        x = torch.as_tensor(inputs, dtype=torch.float32)
        return method.attribute(model.eval(), x, torch.as_tensor(targets, dtype=torch.long)).numpy()

    def run() -> Any:
        metric = quantus.MPRT(layer_order="top_down", seed=42, return_last_correlation=True,
                              disable_warnings=True, display_progressbar=False)
        return metric(model=setup["model"], x_batch=setup["x"].numpy(), y_batch=setup["target"].numpy(),
                      a_batch=setup["attributions"].numpy(), explain_func=explain, device="cpu",
                      batch_size=N_IMAGES)

    method.calls = 0
    scores = benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    assert len(scores) == N_IMAGES
    _info(benchmark, method.calls, benchmark.stats.stats.mean)
