"""The report: built from a fake run directory in exactly the runner's schema (seeded random data,
2 models x 4 methods x 4 metrics x 6 images, one failed cell, some NaN scores)."""
from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bench.report import build_report, summary_table
from bench.report.bootstrap import bootstrap_mean_ci
from bench.report.curves import cascade_blocks, cascade_measures, mean_curves, with_original

MODELS = {"cnn_a": 0.0, "cnn_b": -0.05}  # model -> quality offset, so (model, method) means never tie
METHODS = {"good": 0.9, "saliency": 0.6, "gradcam": 0.45, "random": 0.1}  # quality: "good" is clearly best
METRICS = {  # name -> (category, direction, score as a function of quality)
    "deletion": ("faithfulness", "lower", lambda q: 1.0 - q),
    "insertion": ("faithfulness", "higher", lambda q: q),
    "pointing_game": ("localisation", "higher", lambda q: q),
    "model_randomisation_cascading": ("sanity", "lower", lambda q: 1.0 - q),
}
N_IMAGES = 6
NAN_CELL = ("cnn_a", "saliency", "insertion", (0, 3))  # model, method, metric, images with a NaN score
ERROR_CELL = ("cnn_b", "gradcam", "pointing_game")
ERROR_MESSAGE = "RuntimeError: fake out of memory at batch 4"
DATASET = "synthetic"


def _write_run(root: Path) -> dict[tuple[str, str, str], list[float]]:
    """Write the run directory; return the raw scores per (model, method, metric) for the checks."""
    rng = np.random.default_rng(1234)
    rows, expected = [], {}
    for model, offset in MODELS.items():
        for method, quality in METHODS.items():
            for metric, (category, direction, score_of) in METRICS.items():
                base = dict(model=model, dataset=DATASET, method=method, metric=metric, category=category,
                            direction=direction, params=json.dumps({"steps": 5}),
                            method_params=json.dumps({"seed": 0}))
                if (model, method, metric) == ERROR_CELL:
                    rows.append({**base, "image": -1, "seed": 0, "score": float("nan"), "status": "error",
                                 "error": ERROR_MESSAGE})
                    continue
                values = score_of(quality + offset) + rng.normal(0, 0.03, N_IMAGES)
                if (model, method, metric) == NAN_CELL[:3]:
                    values[list(NAN_CELL[3])] = np.nan
                expected[(model, method, metric)] = list(values)
                rows += [{**base, "image": i, "seed": 0, "score": v, "status": "ok", "error": ""}
                         for i, v in enumerate(values)]
    # The runner collects cells by file name: rows arrive sorted, not in the configuration's order.
    pd.DataFrame(rows).sort_values(["model", "dataset", "method", "metric"], kind="stable").to_csv(
        root / "scores.csv", index=False)

    curves = []
    for model in MODELS:
        for method, quality in METHODS.items():
            for image in range(N_IMAGES):
                for x in np.linspace(0, 1, 5):
                    deleted, inserted = (1 - x) ** (1 + 3 * quality), x ** (1 - quality / 2)
                    curves.append((model, DATASET, method, "deletion", "deletion", image, x, deleted, ""))
                    curves.append((model, DATASET, method, "insertion", "insertion", image, x, inserted, ""))
                for step, block in enumerate(["", "fc", "conv"]):
                    curves.append((model, DATASET, method, "model_randomisation_cascading", "spearman_abs", image,
                                   float(step), 1.0 - step * quality / 2 + rng.normal(0, 0.02), block))
    pd.DataFrame(curves, columns=["model", "dataset", "method", "metric", "curve", "image", "x", "y", "label"]
                 ).to_csv(root / "curves.csv", index=False)

    timings = [dict(model=model, method=method, batch_size=4, device="cpu", median_s=0.01 / (q + 0.1),
                    iqr_s=0.001, images_per_s=4 * (q + 0.1) / 0.01, forward_passes=1, backward_passes=1,
                    roofline_s=0.005, efficiency=0.5 * (q + 0.1), peak_memory_bytes=2.5e6)
               for model in MODELS for method, q in METHODS.items()]
    pd.DataFrame(timings).to_csv(root / "timings.csv", index=False)

    (root / "maps").mkdir()
    generator = torch.Generator().manual_seed(0)
    for model in MODELS:
        for method in METHODS:
            torch.save({"model": model, "dataset": DATASET, "method": method,
                        "images": torch.rand(2, 3, 16, 16, generator=generator),
                        "maps": torch.randn(2, 1, 16, 16, generator=generator),
                        "labels": torch.tensor([0, 1]), "targets": torch.tensor([0, 1]),
                        "masks": torch.rand(2, 1, 16, 16, generator=generator) > 0.7},
                       root / "maps" / f"{model}__{DATASET}__{method}-0123456789abcdef.pt")
    (root / "zoo.json").write_text(json.dumps([{"name": f"{m}_{DATASET}", "model": m, "dataset": DATASET,
                                                "accuracy": 0.9} for m in MODELS]))
    (root / "metadata.json").write_text(json.dumps({
        "run": "fake-run", "config": {"n_images": N_IMAGES, "seed": 0, "models": list(MODELS),
                                       "methods": {m: {} for m in METHODS}}, "git_revision": "abc1234",
        "versions": {"torch": torch.__version__}, "device": {"type": "cpu", "name": "test cpu"},
        "started": "2024-01-01T00:00:00", "finished": "2024-01-01T00:01:00",
        "notes": ["iterations trimmed to 5 to fit the time budget"]}))
    return expected


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    """The fake run, built once: (run dir, raw scores, report.md text)."""
    root = tmp_path_factory.mktemp("run")
    expected = _write_run(root)
    report = build_report(root, n_resamples=300)
    return root, expected, report.read_text()


def _table_after(markdown: str, heading: str) -> list[list[str]]:
    """Rows (header first) of the first pipe table after the line starting with ``heading``."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    first = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("|"))
    rows = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split(" | ")])
    return [rows[0]] + rows[2:]  # drop the |---| line


def _cell(table: list[list[str]], row: str, column: str) -> str:
    header = table[0]
    return next(r for r in table[1:] if r[0] == row)[header.index(column)]


def _mean_ci(text: str) -> tuple[float, float, float]:
    mean, low, high = re.match(r"(-?[\d.e+-]+) \[(-?[\d.e+-]+), (-?[\d.e+-]+)\]", text).groups()
    return float(mean), float(low), float(high)


def test_report_and_figures_are_written(run: tuple[Path, dict, str]) -> None:
    root, _, markdown = run
    assert (root / "report.html").read_text().startswith("<!DOCTYPE html>")
    html = (root / "report.html").read_text()
    for name in ["leaderboard", "pareto", "metric_agreement", "heatmap_cnn_a__synthetic", "heatmap_cnn_b__synthetic",
                 "curves_deletion", "curves_insertion", "cascade_spearman_abs", "saliency_cnn_a__synthetic",
                 "saliency_cnn_b__synthetic"]:
        path = root / "figures" / f"{name}.png"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"(figures/{name}.png)" in markdown, name
        # The HTML is one file that opens offline: every figure is embedded, none referenced.
        assert f'src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}"' in html, name
    assert 'src="figures/' not in html
    for text in ["abc1234", "test cpu", "iterations trimmed to 5", "Model zoo", "cnn_a_synthetic"]:
        assert text in markdown


def test_metric_tables_hold_the_means_per_method_and_architecture(run: tuple[Path, dict, str]) -> None:
    _, expected, markdown = run
    for metric, (category, direction, _) in METRICS.items():
        arrow = "↑" if direction == "higher" else "↓"
        table = _table_after(markdown, f"#### {metric} ({category}, {arrow} {direction} is better)")
        assert table[0] == ["method", "cnn_a", "cnn_b"]
        assert [r[0] for r in table[1:]] == list(METHODS)  # configuration order, not file order
    insertion = _table_after(markdown, "#### insertion")
    good_a = sum(expected[("cnn_a", "good", "insertion")]) / N_IMAGES  # plain mean, no NaN in this cell
    assert _mean_ci(_cell(insertion, "good", "cnn_a"))[0] == pytest.approx(good_a, abs=5e-4)
    for (model, method, metric), values in expected.items():  # every other cell, NaN-aware
        shown = _mean_ci(_cell(_table_after(markdown, f"#### {metric}"), method, model))[0]
        assert shown == pytest.approx(np.nanmean(values), abs=5e-4), (model, method, metric)


def test_nan_scores_are_skipped_and_counted(run: tuple[Path, dict, str]) -> None:
    _, expected, markdown = run
    model, method, metric, nan_images = NAN_CELL
    finite = [v for i, v in enumerate(expected[(model, method, metric)]) if i not in nan_images]
    cell = _cell(_table_after(markdown, f"#### {metric}"), method, model)
    assert _mean_ci(cell)[0] == pytest.approx(sum(finite) / len(finite), abs=5e-4)
    assert cell.endswith(f"({N_IMAGES - len(nan_images)}/{N_IMAGES})")
    counts = _table_after(markdown, "## No score")
    assert [model, method, metric, str(len(nan_images)), str(N_IMAGES), str(len(finite))] in counts[1:]


def test_bootstrap_intervals_bracket_the_mean(run: tuple[Path, dict, str]) -> None:
    _, _, markdown = run
    widths = []
    for metric in METRICS:
        for row in _table_after(markdown, f"#### {metric}")[1:]:
            for cell in row[1:]:
                if cell != "error":
                    mean, low, high = _mean_ci(cell)
                    assert low <= mean <= high, (metric, row[0], cell)
                    widths.append(high - low)
    assert min(widths) > 0


def test_bootstrap_is_seeded_and_skips_nan() -> None:
    values = np.array([1.0, 2.0, np.nan, 4.0, 7.0])
    mean, low, high = bootstrap_mean_ci(values, n_resamples=500, seed=3)
    assert mean == pytest.approx(np.nanmean(values))
    assert low < mean < high and 1.0 <= low and high <= 7.0
    assert bootstrap_mean_ci(values, n_resamples=500, seed=3) == (mean, low, high)


def test_ranking_puts_the_clearly_better_method_first(run: tuple[Path, dict, str]) -> None:
    _, _, markdown = run
    for model in MODELS:
        table = _table_after(markdown, f"*{model}: aggregate rank")
        assert table[0][:2] == ["method", "aggregate rank"]
        assert table[0][2:5] == ["faithfulness", "localisation", "sanity"]  # the registry's family order
        assert [r[0] for r in table[1:]] == ["good", "saliency", "gradcam", "random"]
        assert table[1][1] == "1 [1, 1]"
        per_score = _table_after(markdown, f"*{model}: rank per faithfulness score")
        assert per_score[0] == ["method", "deletion", "insertion"]  # one family's scores only
        assert per_score[1][0] == "good"


def test_metric_agreement(run: tuple[Path, dict, str]) -> None:
    _, _, markdown = run
    agreement = _table_after(markdown, "## Agreement between metrics")
    # Both faithfulness metrics order the eight (model, method) pairs by quality: perfect agreement.
    assert _cell(agreement, "insertion", "deletion") == "1.00"


def test_error_rows_are_listed(run: tuple[Path, dict, str]) -> None:
    root, _, markdown = run
    model, method, metric = ERROR_CELL
    assert _cell(_table_after(markdown, f"#### {metric}"), method, model) == "error"
    errors = _table_after(markdown, "## Failed cells")
    assert [model, DATASET, method, metric, "0", ERROR_MESSAGE] in errors[1:]
    assert ERROR_MESSAGE in (root / "report.html").read_text()


@pytest.fixture(scope="module")
def bare(run: tuple[Path, dict, str], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The same scores without timings, curves or zoo, and one unreadable map file, built once:
    (run dir, report.md text)."""
    root = tmp_path_factory.mktemp("bare")
    for name in ["scores.csv", "metadata.json"]:
        shutil.copy(run[0] / name, root / name)
    (root / "maps").mkdir()
    (root / "maps" / f"cnn_a__{DATASET}__good.pt").write_bytes(b"not a torch file")
    return root, build_report(root, n_resamples=100).read_text()


def test_run_without_timings_still_builds(bare: tuple[Path, str]) -> None:
    root, markdown = bare
    speed = markdown.split("## Speed", 1)[1].split("\n## ", 1)[0]
    assert "no timings" in speed.lower()
    assert not (root / "figures" / "pareto.png").exists()
    assert (root / "figures" / "heatmap_cnn_a__synthetic.png").exists()
    assert "## Failed cells" in markdown and "## Leaderboard" in markdown
    assert f"cnn_a__{DATASET}__good.pt" in markdown  # the unreadable map file is named, not fatal
    assert not (root / "figures" / f"saliency_cnn_a__{DATASET}.png").exists()


def test_rebuild_is_deterministic(bare: tuple[Path, str]) -> None:
    # Seeded bootstrap and stable ordering: the same files give the same report, intervals included.
    root, first = bare
    assert re.search(r"\[0\.\d{3}, 0\.\d{3}\]", first)  # intervals an unseeded bootstrap would move
    assert build_report(root, n_resamples=100).read_text() == first


def test_cascade_curves_as_the_runner_stores_them() -> None:
    # The runner keeps the metric's primary curve and one curve per measure ("curves_<measure>"),
    # with steps 1..B; the figure wants one curve per measure, starting at the original (step 0).
    names = ["model_randomisation_cascading", "curves_spearman_abs", "curves_ssim"]
    rows = pd.DataFrame({"architecture": "a", "method": "m", "image": 0, "x": [1.0, 2.0] * 3,
                         "label": ["fc", "conv"] * 3, "curve": [n for n in names for _ in range(2)],
                         "y": [0.5, 0.2, 0.5, 0.2, 0.7, 0.4]})
    measures = cascade_measures(rows)
    assert list(dict.fromkeys(measures["curve"])) == ["spearman_abs", "ssim"]
    means = with_original(mean_curves(measures))
    start = means[(means["curve"] == "ssim") & (means["x"] == 0)]
    assert start["y"].tolist() == [1.0]
    assert cascade_blocks(rows) == {0: "original", 1: "fc", 2: "conv"}


def test_summary_table(run: tuple[Path, dict, str]) -> None:
    root, expected, _ = run
    # Columns are separated by at least two spaces; a header may hold one ("insertion ↑").
    lines = [re.split(r"\s{2,}", line.strip()) for line in summary_table(root).splitlines()]
    header = lines[0]
    assert header[:4] == ["architecture", "method", "images/s", "efficiency"]
    good_a = next(line for line in lines if line[:2] == ["cnn_a", "good"])
    insertion = float(good_a[header.index("insertion ↑")])
    assert insertion == pytest.approx(np.mean(expected[("cnn_a", "good", "insertion")]), abs=5e-4)
    failed = next(line for line in lines if line[:2] == ["cnn_b", "gradcam"])
    assert failed[header.index("pointing_game ↑")] == "error"
