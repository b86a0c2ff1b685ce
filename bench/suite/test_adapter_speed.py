"""Adapter speed against the roofline, and the two LIME implementations against each other.

Run: ``python -m pytest bench/suite/test_adapter_speed.py --benchmark-enable -q``.

Gradient methods: resnet18 (torchvision, random init, eval) at 224x224, batch 8. Each round times
the method; the round's untimed ``setup`` runs its roofline (``bench.timing.roofline``: the passes
``Method.cost`` names, as plain batched passes) with the same timer, so both see the same machine
load. Efficiency = median roofline time / median method time; the issue asks for >= 0.9.
Sample and step counts are small (4) to keep a round short; the overhead per pass is what is
measured, and it does not shrink with more passes.

LIME: ``lime_captum`` is timed by the benchmark; the ``lime`` package is timed in setup on the same
images, at 1000 samples. Agreement (Spearman of segment weights, top-k overlap) goes in extra_info.
"""
from __future__ import annotations

import os
import statistics

import pytest
import torch
import torchvision
from scipy.stats import spearmanr

import adapters
from bench.device import resolve_device
from bench.timing import roofline, set_active_device

BATCH, SIZE, ROUNDS, WARMUP = 8, 224, 5, 1
MIN_EFFICIENCY = float(os.environ.get("ADAPTER_MIN_EFFICIENCY", "0.9"))
GRADIENT_METHODS = {
    "saliency": {},
    "smoothgrad": {"n_samples": 2},
    "integrated_gradients": {"n_steps": 2},
    "gradcam": {},
}


@pytest.fixture(scope="module")
def device():
    device = resolve_device("cpu")
    set_active_device(device)
    return device


@pytest.fixture(scope="module")
def resnet18_batch():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(BATCH, 3, SIZE, SIZE)
    target = torch.arange(BATCH)
    return model, x, target


def _timed(fn, device, times):
    def setup():
        start = device.time()
        fn()
        times.append(device.time() - start)
    return setup


@pytest.mark.parametrize("name", list(GRADIENT_METHODS))
def test_gradient_method_efficiency(benchmark, device, resnet18_batch, name):
    model, x, target = resnet18_batch
    method = adapters.get(name, **GRADIENT_METHODS[name])
    cost = method.cost(height=SIZE, width=SIZE)
    roofline_times: list[float] = []
    benchmark.group = f"resnet18-{SIZE}-b{BATCH}"
    maps = benchmark.pedantic(method.attribute, args=(model, x, target), rounds=ROUNDS, warmup_rounds=WARMUP,
                              setup=_timed(roofline(model, x, target, cost), device, roofline_times))
    assert maps.shape == (BATCH, 1, SIZE, SIZE) and torch.isfinite(maps).all()
    if benchmark.disabled:
        return
    method_rounds, roofline_rounds = benchmark.stats.stats.data, roofline_times[WARMUP:]
    method_s, roofline_s = statistics.median(method_rounds), statistics.median(roofline_rounds)
    efficiency = statistics.median(r / m for r, m in zip(roofline_rounds, method_rounds))
    benchmark.extra_info.update(
        method=name, params=method.params, passes={"forward": cost.forward, "backward": cost.backward},
        images_per_s=BATCH / method_s, roofline_s=roofline_s, roofline_rounds_s=roofline_rounds,
        efficiency=efficiency, efficiency_of_medians=roofline_s / method_s, load_average=os.getloadavg(),
        **device.info())
    assert efficiency >= MIN_EFFICIENCY, (f"{name}: {efficiency:.2f} of the roofline ({roofline_s:.2f}s passes vs "
                                          f"{method_s:.2f}s method); load average {os.getloadavg()}")


def _lime_subject():
    """The embedded zoo's small CNN on its held-out images when available; it trains on first use."""
    from bench import zoo

    entry = zoo.load("small_cnn-synthetic")
    x, labels, _ = entry.batch(n=4)
    return entry.model, x, labels, {"segmentation_input": "denormalize", "mean": entry.spec.mean,
                                    "std": entry.spec.std}


def test_lime_captum_against_lime(benchmark, device):
    model, x, target, segmentation = _lime_subject()
    params = {"n_samples": 1000, "seed": 0, **segmentation}
    package, captum = adapters.get("lime", **params), adapters.get("lime_captum", **params)
    package_times: list[float] = []
    benchmark.group = "lime-1000"
    benchmark.pedantic(captum.attribute, args=(model, x, target), rounds=ROUNDS, warmup_rounds=WARMUP,
                       setup=_timed(lambda: package.attribute(model, x, target), device, package_times))
    package.attribute(model, x, target)  # the weights of the runs compared below
    rhos, overlaps, k = [], [], 5
    for a, b in zip(package.diagnostics["segment_weights"], captum.diagnostics["segment_weights"]):
        rhos.append(float(spearmanr(a.cpu().numpy(), b.cpu().numpy())[0]))
        top_a, top_b = set(a.argsort(descending=True)[:k].tolist()), set(b.argsort(descending=True)[:k].tolist())
        overlaps.append(len(top_a & top_b) / k)
    assert statistics.mean(rhos) > 0.5, rhos
    if benchmark.disabled:
        return
    speedup = statistics.median(p / c for p, c in zip(package_times[WARMUP:], benchmark.stats.stats.data))
    benchmark.extra_info.update(
        images=len(x), n_samples=1000, lime_s=statistics.median(package_times[WARMUP:]),
        lime_captum_s=benchmark.stats.stats.median, speedup=speedup, spearman=rhos, top5_overlap=overlaps,
        images_per_s=len(x) / benchmark.stats.stats.median,
        load_average=os.getloadavg(), **device.info())
