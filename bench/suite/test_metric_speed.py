"""Faithfulness and localisation scores: time against their roofline, ROAD's solver against scipy,
and time against Quantus 0.6.0 for the same work.

Run: ``.venv/bin/python -m pytest bench/suite/test_metric_speed.py --benchmark-enable -q``.
Self-contained: a randomly initialised torchvision resnet18 (the cost does not depend on training)
on ``METRIC_BENCH_N`` (default 4) random images of ``METRIC_BENCH_SIZE`` (default 64) pixels.

The roofline of a score is the plain forward passes it needs (for example deletion with S steps:
N * (S + 1) rows), timed with the same model, rows and batch size in the same run, just before each
round of the score; efficiency = the median over rounds of roofline time / score time (1.0 = no
overhead). For sensitivity the unavoidable work is the
explanations of the perturbed inputs. Quantus does the same number of model passes (PixelFlipping:
S steps of N images; FaithfulnessCorrelation: 1 + runs; MaxSensitivity: samples explanations) but
steps through them in Python with a NumPy round trip per pass. Quantus's ROAD metric raises on RGB
input, so for ROAD its imputation function (the reference's lil_matrix + scipy spsolve per image)
is timed against our batched solver on the same removal masks, at ``METRIC_BENCH_SIZE`` and at 224 px.
"""
from __future__ import annotations

import os
import statistics
import time
from typing import Any, Callable

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import metrics
from metrics.imputation import linear_impute
from metrics.perturb import forward_chunked, rows_per_chunk
from metrics.ranking import pixel_ranks
from bench.suite.subjects import resnet18_batch, smooth_maps_and_box

SIZE = int(os.environ.get("METRIC_BENCH_SIZE", "64"))
N_IMAGES = int(os.environ.get("METRIC_BENCH_N", "4"))
ROUNDS = 5
# STEPS is a multiple of 3 so that Quantus (which flattens C*H*W) can take the same number of steps.
STEPS, RUNS, SAMPLES, SENS_SAMPLES = 24, 32, 16, 8
FRACTIONS = [p / 10 for p in range(1, 10)]


class Gradient:
    """|d logit_target / d x| summed over channels: the explainer sensitivity re-runs."""

    def attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        x = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(model(x).gather(1, target.view(-1, 1)).sum(), x)
        return grad.abs().sum(dim=1, keepdim=True)


@pytest.fixture(scope="module")
def setup() -> dict[str, Any]:
    model, x, target = resnet18_batch(N_IMAGES, SIZE)
    attributions, mask = smooth_maps_and_box(N_IMAGES, SIZE)
    return {"model": model, "x": x, "target": target, "attributions": attributions, "mask": mask,
            "chunk": rows_per_chunk(model, x)}


@pytest.fixture(scope="module")
def report(request: pytest.FixtureRequest):
    lines: list[str] = []
    yield lines
    writer = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if writer is None or capture is None or not lines:
        return
    with capture.global_and_fixture_disabled():  # teardown output is captured otherwise
        writer.write_line("")
        writer.write_line(f"metric speed (resnet18, {N_IMAGES} images of {SIZE}px, {torch.get_num_threads()} threads):")
        for line in lines:
            writer.write_line("  " + line)


def median_seconds(fn: Callable[[], Any], rounds: int = ROUNDS, warmup: bool = True) -> float:
    if warmup:
        fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_against(benchmark: Any, fn: Callable[[], Any], baseline: Callable[[], Any]) -> tuple[float | None, float, float]:
    """Median seconds of ``fn`` (timed by pytest-benchmark, pedantic) and of ``baseline``, run just
    before each round of ``fn`` so that both see the same machine load (other jobs share the CPU),
    and the median over rounds of baseline / fn: the paired ratio, robust to load that drifts
    between rounds.

    Each test calls ``fn`` once before, to check its output, which is the warm-up; the baseline gets
    its own. ``fn``'s time and the ratio are None when benchmarks are disabled.
    """
    baseline()
    baseline_times: list[float] = []

    def timed_baseline() -> None:
        start = time.perf_counter()
        baseline()
        baseline_times.append(time.perf_counter() - start)

    benchmark.pedantic(fn, setup=timed_baseline, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    stats = getattr(benchmark, "stats", None)
    if stats is None:
        return None, statistics.median(baseline_times), None
    ratios = [b / t for b, t in zip(baseline_times, stats.stats.data)]
    return stats.stats.median, statistics.median(baseline_times), statistics.median(ratios)


def forward_rows(setup: dict[str, Any], passes_per_image: int) -> Callable[[], Tensor]:
    """The roofline: ``passes_per_image`` plain forward passes of every image, in the score's batches."""
    rows = setup["x"].repeat(passes_per_image, 1, 1, 1)
    return lambda: forward_chunked(setup["model"], rows, setup["chunk"])


def record(benchmark: Any, report: list[str], name: str, timing: tuple[float | None, float, float | None], rows: int,
           quantus: float | None = None) -> None:
    """Report a score's median time, its roofline's, and efficiency = the median paired ratio."""
    ours, roofline, efficiency = timing
    if ours is None or efficiency is None:
        return
    benchmark.extra_info.update(images=N_IMAGES, size=SIZE, rows=rows, roofline_s=roofline, efficiency=efficiency,
                                threads=torch.get_num_threads())
    line = f"{name:26s} ours {ours:7.3f}s  roofline {roofline:7.3f}s  efficiency {efficiency:5.2f}"
    if quantus is not None:
        benchmark.extra_info.update(quantus_s=quantus, speedup_vs_quantus=quantus / ours)
        line += f"  quantus {quantus:7.3f}s  ({quantus / ours:5.1f}x)"
    report.append(line)


def benchmark_seconds(benchmark: Any, fn: Callable[[], Any]) -> float | None:
    """Median seconds of ``fn`` by pytest-benchmark (pedantic; the caller has warmed it up)."""
    benchmark.pedantic(fn, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    stats = getattr(benchmark, "stats", None)
    return None if stats is None else stats.stats.median


def quantus_module(monkeypatch: pytest.MonkeyPatch):
    module = pytest.importorskip("quantus")
    if not hasattr(np, "trapz"):  # Quantus 0.6 calls np.trapz, removed in NumPy 2
        monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)
    return module


def quantus_seconds(run: Callable[[], Any]) -> float:
    return median_seconds(run, rounds=1, warmup=False)  # the model is warm; Quantus takes long enough


@pytest.mark.benchmark(group="metric-deletion")
def test_deletion(benchmark: Any, setup: dict[str, Any], report: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def run() -> Tensor:
        return metrics.deletion(model=setup["model"], x=setup["x"], target=setup["target"],
                                attributions=setup["attributions"], n_steps=STEPS).scores

    scores = run()
    assert scores.shape == (N_IMAGES,) and torch.isfinite(scores).all()
    timing = time_against(benchmark, run, forward_rows(setup, STEPS + 1))
    q = quantus_module(monkeypatch)
    x, y, a = setup["x"].numpy(), setup["target"].numpy(), setup["attributions"].numpy()
    # Quantus flattens C*H*W: STEPS steps over all channel values is the same number of passes.
    metric = q.PixelFlipping(features_in_step=3 * SIZE * SIZE // STEPS, perturb_baseline="black",
                             disable_warnings=True)
    theirs = quantus_seconds(lambda: metric(model=setup["model"], x_batch=x, y_batch=y, a_batch=a, device="cpu",
                                            batch_size=N_IMAGES))
    record(benchmark, report, f"deletion ({STEPS} steps)", timing, N_IMAGES * (STEPS + 1), theirs)


@pytest.mark.benchmark(group="metric-insertion")
def test_insertion(benchmark: Any, setup: dict[str, Any], report: list[str]) -> None:
    def run() -> Tensor:
        return metrics.insertion(model=setup["model"], x=setup["x"], target=setup["target"],
                                 attributions=setup["attributions"], n_steps=STEPS).scores

    assert run().shape == (N_IMAGES,)
    timing = time_against(benchmark, run, forward_rows(setup, STEPS + 1))
    record(benchmark, report, f"insertion ({STEPS} steps)", timing, N_IMAGES * (STEPS + 1))


@pytest.mark.benchmark(group="metric-road")
def test_road_morf(benchmark: Any, setup: dict[str, Any], report: list[str]) -> None:
    def run() -> Tensor:
        return metrics.road_morf(model=setup["model"], x=setup["x"], target=setup["target"],
                                 attributions=setup["attributions"], fractions=FRACTIONS).scores

    assert run().shape == (N_IMAGES,)
    timing = time_against(benchmark, run, forward_rows(setup, len(FRACTIONS) + 1))
    record(benchmark, report, f"road_morf ({len(FRACTIONS)} fractions)", timing,
           N_IMAGES * (len(FRACTIONS) + 1))


@pytest.mark.benchmark(group="metric-road-solver")
@pytest.mark.parametrize("size", sorted({SIZE, 224}))
def test_road_solver_against_scipy(benchmark: Any, size: int, report: list[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Our batched solver against the reference's imputation (lil_matrix + scipy spsolve per image) on
    the removal masks of every fraction; at 224 px one image (nine systems), the size where holes are
    widest and iterative solvers slowest."""
    quantus_module(monkeypatch)
    from quantus.functions.perturb_func import noisy_linear_imputation

    n = N_IMAGES if size == SIZE else 1
    x = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))
    noise = torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(2))
    ranks = pixel_ranks(torch.nn.functional.avg_pool2d(noise, 9, stride=1, padding=4)).repeat(len(FRACTIONS), 1, 1, 1)
    counts = torch.tensor([int(size * size * p) for p in FRACTIONS]).repeat_interleave(n)
    removed = ranks < counts.view(-1, 1, 1, 1)
    x = x.repeat(len(FRACTIONS), 1, 1, 1)

    def ours_run() -> Tensor:
        return linear_impute(x, removed)

    ours_out = ours_run()
    ours = benchmark_seconds(benchmark, ours_run)
    rows = [(x[i].double().numpy(), np.flatnonzero(removed[i, 0].numpy())) for i in range(x.shape[0])]

    def scipy_run() -> list[np.ndarray]:
        return [noisy_linear_imputation(image, indices, noise=0.0) for image, indices in rows]

    start = time.perf_counter()
    reference = scipy_run()
    theirs = time.perf_counter() - start
    error = max(float(np.abs(ours_out[i].double().numpy() - reference[i]).max()) for i in range(x.shape[0]))
    assert error <= 1e-4
    if ours is not None:
        benchmark.extra_info.update(size=size, systems=x.shape[0], scipy_s=theirs, speedup=theirs / ours,
                                    max_abs_error=error)
        report.append(f"{f'ROAD imputation {size}px':26s} ours {ours:7.3f}s  scipy spsolve (reference) {theirs:7.3f}s  "
                      f"({theirs / ours:5.1f}x) on {x.shape[0]} images, max |diff| {error:.1e}")


@pytest.mark.benchmark(group="metric-faithfulness-correlation")
def test_faithfulness_correlation(benchmark: Any, setup: dict[str, Any], report: list[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def run() -> Tensor:
        return metrics.faithfulness_correlation(model=setup["model"], x=setup["x"], target=setup["target"],
                                                attributions=setup["attributions"], n_runs=RUNS).scores

    assert run().shape == (N_IMAGES,)
    timing = time_against(benchmark, run, forward_rows(setup, RUNS + 1))
    q = quantus_module(monkeypatch)
    metric = q.FaithfulnessCorrelation(nr_runs=RUNS, subset_size=int(0.1 * 3 * SIZE * SIZE), return_aggregate=False,
                                       disable_warnings=True)
    x, y, a = setup["x"].numpy(), setup["target"].numpy(), setup["attributions"].numpy()
    theirs = quantus_seconds(lambda: metric(model=setup["model"], x_batch=x, y_batch=y, a_batch=a, device="cpu",
                                            batch_size=N_IMAGES))
    record(benchmark, report, f"faithfulness_corr ({RUNS} runs)", timing, N_IMAGES * (RUNS + 1), theirs)


@pytest.mark.benchmark(group="metric-infidelity")
def test_infidelity(benchmark: Any, setup: dict[str, Any], report: list[str]) -> None:
    def run() -> Tensor:
        return metrics.infidelity(model=setup["model"], x=setup["x"], target=setup["target"],
                                  attributions=setup["attributions"], n_samples=SAMPLES).scores

    assert run().shape == (N_IMAGES,)
    timing = time_against(benchmark, run, forward_rows(setup, SAMPLES + 1))
    record(benchmark, report, f"infidelity ({SAMPLES} samples)", timing, N_IMAGES * (SAMPLES + 1))


@pytest.mark.benchmark(group="metric-sensitivity")
def test_sensitivity(benchmark: Any, setup: dict[str, Any], report: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    method, model = Gradient(), setup["model"]
    attributions = method.attribute(model, setup["x"], setup["target"])

    def run() -> Tensor:
        return metrics.sensitivity(model=model, x=setup["x"], target=setup["target"], attributions=attributions,
                                   method=method, n_samples=SENS_SAMPLES).scores

    assert run().shape == (N_IMAGES,)
    rows, row_targets = setup["x"].repeat_interleave(SENS_SAMPLES, 0), setup["target"].repeat_interleave(SENS_SAMPLES)
    timing = time_against(benchmark, run, lambda: method.attribute(model, rows, row_targets))
    q = quantus_module(monkeypatch)

    def explain(model: nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: Any) -> np.ndarray:
        return method.attribute(model, torch.as_tensor(inputs, dtype=torch.float32),
                                torch.as_tensor(targets, dtype=torch.long)).numpy()

    metric = q.MaxSensitivity(nr_samples=SENS_SAMPLES, lower_bound=0.02, disable_warnings=True)
    theirs = quantus_seconds(lambda: metric(model=model, x_batch=setup["x"].numpy(), y_batch=setup["target"].numpy(),
                                            a_batch=attributions.numpy(), explain_func=explain, device="cpu",
                                            batch_size=N_IMAGES))
    record(benchmark, report, f"sensitivity ({SENS_SAMPLES} samples)", timing,
           N_IMAGES * SENS_SAMPLES, theirs)


@pytest.mark.benchmark(group="metric-localisation")
def test_localisation(benchmark: Any, report: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    n = 256
    a = torch.rand(n, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    mask = torch.zeros(n, 1, SIZE, SIZE, dtype=torch.bool)
    mask[:, :, 8:40, 16:48] = True
    x = torch.zeros(n, 1, SIZE, SIZE)

    def run() -> list[Tensor]:
        return [metrics.get(name).compute(x=x, attributions=a, mask=mask).scores
                for name in ("pointing_game", "relevance_mass", "relevance_rank")]

    assert all(s.shape == (n,) for s in run())
    ours = benchmark_seconds(benchmark, run)
    q = quantus_module(monkeypatch)
    refs = [q.PointingGame(disable_warnings=True), q.RelevanceMassAccuracy(disable_warnings=True),
            q.RelevanceRankAccuracy(disable_warnings=True)]
    arrays = dict(model=None, x_batch=x.numpy(), y_batch=np.zeros(n, dtype=int), a_batch=a.numpy(),
                  s_batch=mask.numpy().astype(float), device="cpu", batch_size=n)
    theirs = quantus_seconds(lambda: [ref(**arrays) for ref in refs])
    if ours is not None:
        benchmark.extra_info.update(images=n, quantus_s=theirs, speedup_vs_quantus=theirs / ours)
        report.append(f"{'localisation (3 scores)':26s} ours {ours:7.3f}s  quantus {theirs:7.3f}s  "
                      f"({theirs / ours:5.1f}x) on {n} maps, no model passes")
