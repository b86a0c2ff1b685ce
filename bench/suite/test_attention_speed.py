"""Attention methods against their roofline: rollout (1 forward) and transformer_attribution
(1 forward + 1 backward), on torchvision's vit_b_16 at 224x224 and the zoo's vit_slim at 64x64,
batch 8 (random init: speed does not depend on the weights).

Run: ``python -m pytest bench/suite/test_attention_speed.py --benchmark-enable -q``.
The cost of capturing the attention probabilities is part of the method's time: the roofline is
the model's plain passes (``bench.timing.roofline``), timed in each round's untimed setup so both
see the same machine load. Efficiency = median over rounds of roofline time / method time;
``ADAPTER_MIN_EFFICIENCY`` (0.9) is the asserted floor.
"""
from __future__ import annotations

import os
import statistics

import pytest
import torch

import adapters
from bench.device import resolve_device
from bench.models import get_spec
from bench.timing import roofline, set_active_device

BATCH, ROUNDS, WARMUP = 8, 5, 1
MIN_EFFICIENCY = float(os.environ.get("ADAPTER_MIN_EFFICIENCY", "0.9"))
METHODS = ("raw_attention", "attention_rollout", "transformer_attribution")
MODELS = {"vit_b_16": (1000, 224), "vit_slim": (4, 64)}


@pytest.fixture(scope="module")
def device():
    device = resolve_device("cpu")
    set_active_device(device)
    return device


@pytest.fixture(scope="module", params=list(MODELS))
def vit_batch(request):
    name = request.param
    classes, size = MODELS[name]
    model = get_spec(name).with_overrides(num_classes=classes).build(seed=0)
    if name != "vit_slim":  # torchvision zero-initialises the head (vit_slim's builder does not)
        model.heads.head.reset_parameters()
    x = torch.randn(BATCH, 3, size, size, generator=torch.Generator().manual_seed(0))
    return name, model, x, torch.arange(BATCH) % classes


def _timed(fn, device, times):
    def setup():
        start = device.time()
        fn()
        times.append(device.time() - start)
    return setup


@pytest.mark.parametrize("method_name", METHODS)
def test_attention_method_efficiency(benchmark, device, vit_batch, method_name):
    model_name, model, x, target = vit_batch
    method = adapters.get(method_name)
    cost = method.cost(height=x.shape[-2], width=x.shape[-1])
    roofline_times: list[float] = []
    benchmark.group = f"{model_name}-{x.shape[-1]}-b{BATCH}"
    maps = benchmark.pedantic(method.attribute, args=(model, x, target), rounds=ROUNDS, warmup_rounds=WARMUP,
                              setup=_timed(roofline(model, x, target, cost), device, roofline_times))
    assert maps.shape == (BATCH, 1, *x.shape[-2:]) and torch.isfinite(maps).all()
    if benchmark.disabled:
        return
    method_rounds, roofline_rounds = benchmark.stats.stats.data, roofline_times[WARMUP:]
    efficiency = statistics.median(r / m for r, m in zip(roofline_rounds, method_rounds))
    benchmark.extra_info.update(method=method_name, model=model_name, params=method.params,
                                passes={"forward": cost.forward, "backward": cost.backward},
                                images_per_s=BATCH / statistics.median(method_rounds),
                                roofline_s=statistics.median(roofline_rounds), efficiency=efficiency,
                                load_average=os.getloadavg(), **device.info())
    assert efficiency >= MIN_EFFICIENCY, (f"{method_name} on {model_name}: {efficiency:.2f} of the roofline; "
                                          f"load average {os.getloadavg()}")
