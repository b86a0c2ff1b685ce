"""One benchmark per (model, method, batch size) cell of a run configuration.

Run by ``python -m bench run`` (or ``make bench-suite``, which times the ``quick`` configuration).
Each benchmark times the method in pedantic mode, its roofline (its unavoidable passes as plain
batched passes, same timer and images) in each round's untimed setup, so the two interleave and see
the same machine load. Rounds are adaptive (``bench.timing.RoundPolicy``, the ``[timing]`` keys):
at least ``rounds``, then more until the IQR of both series is at most ``target_iqr`` of their
median, capped by ``max_rounds`` and ``max_seconds``; a cell that never settles is recorded as
``noisy``. ``extra_info`` carries throughput, passes, roofline time, efficiency, every round's
times, the IQR fractions, peak memory and the device settings.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import pytest

from adapters import NotApplicable
from bench.config import from_dict, load_config
from bench.device import resolve_device
from bench.grid import build_method, load_subject, plan
from bench.timing import RoundPolicy, Rounds, extend_rounds, iqr, roofline, set_active_device


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
        if not group.metrics:  # not applicable on this model (attention methods on a CNN), as the manifest skips it
            continue
        if timing.methods is not None and group.method not in timing.methods:
            continue
        if timing.models is not None and group.model not in timing.models:
            continue
        for batch in timing.batch_sizes:
            cells.append((config, group, batch))
    cells = [c for i, c in enumerate(cells) if (c[1].model, c[1].method, c[2]) not in
             {(d[1].model, d[1].method, d[2]) for d in cells[:i]}]  # one per (model, method, batch)
    metafunc.parametrize("timing_cell", cells, ids=[f"{g.model}-{g.method}-b{b}" for _, g, b in cells])


def _seconds(fn, timer) -> float:
    start = timer()
    fn()
    return timer() - start


def test_grid_timing(benchmark, timing_cell) -> None:
    config, group, batch_size = timing_cell
    device = resolve_device(config.device)
    set_active_device(device)
    subject = load_subject(config, group.model, group.dataset, device.torch_device)
    method = build_method(config, group.method, subject)
    reps = (batch_size + len(subject.x) - 1) // len(subject.x)
    x = subject.x.repeat(reps, *([1] * (subject.x.dim() - 1)))[:batch_size]  # images or token ids
    target = subject.targets.repeat(reps)[:batch_size]
    kwargs = {}
    if method.needs_mask:
        if subject.masks is None:
            pytest.fail(f"{group.method} needs masks; {group.dataset} has none")
        kwargs["mask"] = subject.masks.repeat(reps, *([1] * (subject.masks.dim() - 1)))[:batch_size]
    benchmark.group = group.model
    shape = dict(channels=x.shape[1], height=x.shape[2], width=x.shape[3]) if x.dim() == 4 else dict(length=x.shape[1])
    cost = method.cost(n_classes=int(subject.model(x[:1]).shape[1]), model=subject.model, **shape)
    policy = RoundPolicy.from_config(config.timing)
    # A control that needs no model pass has no roofline: nothing to time, its efficiency undefined.
    passes = roofline(subject.model, x, target, cost) if cost.forward > 0 else None
    attribute = lambda: method.attribute(subject.model, x, target, **kwargs)  # noqa: E731
    started = time.perf_counter()
    device.reset_peak_memory()
    try:
        attribute()  # the first warm-up round, which also gives the method's peak memory (roofline apart)
    except NotApplicable as refusal:  # the method refuses the architecture (GELU for guided backprop)
        pytest.skip(f"not applicable: {refusal}")
    peak = device.peak_memory_bytes()
    rounds = Rounds()
    if passes is not None:
        passes()
    setup = (lambda: rounds.roofline.append(_seconds(passes, device.time))) if passes is not None else None
    warmup = max(config.timing.warmup_rounds - 1, 0)
    benchmark.pedantic(method.attribute, args=(subject.model, x, target), kwargs=kwargs, setup=setup,
                       rounds=policy.min_rounds, warmup_rounds=warmup, iterations=1)
    rounds.method = list(benchmark.stats.stats.data)
    rounds.roofline = rounds.roofline[warmup:]  # setup also ran before each warm-up round
    added = extend_rounds(rounds, lambda: _seconds(attribute, device.time),
                          (lambda: _seconds(passes, device.time)) if passes is not None else None,
                          policy, time.perf_counter() - started, time.perf_counter)
    for seconds in added:  # pytest-benchmark's statistics then cover every round quoted
        benchmark.stats.stats.update(seconds)
    method_median = statistics.median(rounds.method)
    roof_median = statistics.median(rounds.roofline) if rounds.roofline else 0.0
    summary = rounds.summary(policy)
    benchmark.extra_info.update({
        "model": group.model, "dataset": group.dataset, "method": group.method, "batch_size": batch_size,
        "images_per_s": batch_size / method_median, "forward_passes": cost.forward, "backward_passes": cost.backward,
        "roofline_s": roof_median, "roofline_iqr_s": iqr(rounds.roofline),
        "efficiency": roof_median / method_median if passes is not None else None,
        "peak_memory_bytes": peak, "method_params": {k: str(v) for k, v in method.params.items()},
        **summary, **device.info(x.dtype),
    })
    assert method_median > 0
