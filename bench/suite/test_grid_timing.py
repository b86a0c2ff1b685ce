"""One benchmark per (model, method, batch size) cell of a run configuration.

Run by ``python -m bench run`` (or ``make bench-suite``, which times the ``quick`` configuration).
Each benchmark times the method in pedantic mode with warm-up and fixed rounds, then the method's
roofline (its unavoidable passes as plain batched passes) with the same timer, rounds and images,
and records throughput, passes, roofline time, efficiency, peak memory and the device settings in
``extra_info``.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from bench.config import from_dict, load_config
from bench.device import resolve_device
from bench.grid import build_method, load_subject, plan
from bench.timing import roofline, set_active_device


def _config(pytest_config):
    source = pytest_config.getoption("--bench-config") or "quick"
    if source.endswith(".json"):
        return from_dict(json.loads(Path(source).read_text()), source=source)
    return load_config(source)


def pytest_generate_tests(metafunc) -> None:
    if "timing_cell" not in metafunc.fixturenames:
        return
    config = _config(metafunc.config)
    timing = config.timing
    cells = []
    for group in plan(config):
        if timing.methods is not None and group.method not in timing.methods:
            continue
        if timing.models is not None and group.model not in timing.models:
            continue
        for batch in timing.batch_sizes:
            cells.append((config, group, batch))
    cells = [c for i, c in enumerate(cells) if (c[1].model, c[1].method, c[2]) not in
             {(d[1].model, d[1].method, d[2]) for d in cells[:i]}]  # one per (model, method, batch)
    metafunc.parametrize("timing_cell", cells, ids=[f"{g.model}-{g.method}-b{b}" for _, g, b in cells])


def _median_seconds(fn, timer, rounds: int, warmup: int) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(rounds):
        start = timer()
        fn()
        times.append(timer() - start)
    quartiles = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return statistics.median(times), quartiles[2] - quartiles[0]


def test_grid_timing(benchmark, timing_cell) -> None:
    config, group, batch_size = timing_cell
    device = resolve_device(config.device)
    set_active_device(device)
    subject = load_subject(config, group.model, group.dataset, device.torch_device)
    method = build_method(config, group.method, subject)
    reps = (batch_size + len(subject.x) - 1) // len(subject.x)
    x = subject.x.repeat(reps, 1, 1, 1)[:batch_size]
    target = subject.targets.repeat(reps)[:batch_size]
    kwargs = {}
    if method.needs_mask:
        if subject.masks is None:
            pytest.fail(f"{group.method} needs masks; {group.dataset} has none")
        kwargs["mask"] = subject.masks.repeat(reps, 1, 1, 1)[:batch_size]
    benchmark.group = group.model
    cost = method.cost(n_classes=int(subject.model(x[:1]).shape[1]), channels=x.shape[1], height=x.shape[2], width=x.shape[3],
                       model=subject.model)
    device.reset_peak_memory()
    benchmark.pedantic(method.attribute, args=(subject.model, x, target), kwargs=kwargs,
                       rounds=config.timing.rounds, warmup_rounds=config.timing.warmup_rounds, iterations=1)
    peak = device.peak_memory_bytes()
    method_median = statistics.median(benchmark.stats.stats.data)
    roof_median, roof_iqr = _median_seconds(roofline(subject.model, x, target, cost), device.time,
                                            config.timing.rounds, config.timing.warmup_rounds)
    benchmark.extra_info.update({
        "model": group.model, "dataset": group.dataset, "method": group.method, "batch_size": batch_size,
        "images_per_s": batch_size / method_median, "forward_passes": cost.forward, "backward_passes": cost.backward,
        # A control that needs no model pass has no roofline: its efficiency is undefined, not ~0.
        "roofline_s": roof_median, "roofline_iqr_s": roof_iqr,
        "efficiency": roof_median / method_median if cost.forward > 0 else None,
        "peak_memory_bytes": peak, "method_params": {k: str(v) for k, v in method.params.items()},
        **device.info(x.dtype),
    })
    assert method_median > 0
