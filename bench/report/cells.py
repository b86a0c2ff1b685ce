"""Per-cell statistics: the mean score of each (architecture, method, metric) over images, its
bootstrap interval, and honest counts (images scored, NaN scores skipped, error rows).

An *architecture* is a (model, dataset) pair; it is labelled by the model name alone unless the
run evaluates one model on several datasets. Seeds are averaged per image first: the image is the
unit that is resampled.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

import numpy as np
import pandas as pd

from metrics.registry import Category

from .bootstrap import N_RESAMPLES, percentile_interval, resample_weights, seed_for, weighted_means
from .load import Run

#: The score families in the registry's order (faithfulness, localisation, sanity, robustness, ...).
CATEGORY_ORDER = list(get_args(Category))
DIRECTIONS = {"higher": 1.0, "lower": -1.0}


@dataclass(frozen=True)
class Architecture:
    model: str
    dataset: str
    label: str

    @property
    def slug(self) -> str:
        return slug(self.model, self.dataset)


def slug(model: str, dataset: str) -> str:
    """A file-name-safe name for an architecture's figures."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{model}__{dataset}")


@dataclass
class ArchitectureStats:
    """Scores of one architecture as an array, with point means and bootstrap resampled means.

    ``values``: (images, methods, metrics), NaN = no score; ``mean``: (methods, metrics);
    ``samples``: (resamples, methods, metrics), drawn with the same images for every column.
    """

    architecture: Architecture
    methods: list[str]
    metrics: list[str]
    images: list[int]
    values: np.ndarray
    mean: np.ndarray
    samples: np.ndarray


def config_order(metadata: dict, key: str) -> list[str]:
    """Names in the order the run's configuration lists them (``config[key]``: a list or a table);
    the stored rows are ordered by file name, the configuration by the user's intent."""
    listed = (metadata.get("config") or {}).get(key)
    return [str(name) for name in listed] if isinstance(listed, (list, dict)) else []


def _ordered(names: list[str], preferred: list[str]) -> list[str]:
    present = set(names)
    return [n for n in preferred if n in present] + [n for n in names if n not in set(preferred)]


def architectures(scores: pd.DataFrame, metadata: dict | None = None) -> list[Architecture]:
    """(model, dataset) pairs, models in configuration order, then as the rows list them."""
    pairs = list(dict.fromkeys(zip(scores["model"], scores["dataset"])))
    models = _ordered(list(dict.fromkeys(m for m, _ in pairs)), config_order(metadata or {}, "models"))
    pairs.sort(key=lambda pair: models.index(pair[0]))  # stable: datasets keep their order per model
    datasets_per_model = pd.Series([m for m, _ in pairs]).value_counts()
    return [Architecture(m, d, m if datasets_per_model[m] == 1 else f"{m} / {d}") for m, d in pairs]


def method_order(scores: pd.DataFrame, metadata: dict | None = None) -> list[str]:
    """Methods in configuration order (controls where the user put them), then as the rows list them."""
    return _ordered(list(dict.fromkeys(scores["method"])), config_order(metadata or {}, "methods"))


def metric_info(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per metric (index), with its category and direction, grouped by category.

    The direction is taken from a row that states a valid one (an error row may not); a metric with
    none gets an empty direction and is then neither ranked nor coloured, rather than guessed.
    """
    # A failed or refused cell's row may carry no category: take it from a scored row where there is one.
    named = scores.assign(_unnamed=scores["category"].fillna("").astype(str).eq(""))
    info = named.sort_values("_unnamed", kind="stable").drop_duplicates("metric")[["metric", "category"]].copy()
    info["appearance"] = info["metric"].map({m: i for i, m in enumerate(dict.fromkeys(scores["metric"]))})
    stated = scores[scores["direction"].isin(list(DIRECTIONS))].drop_duplicates("metric")
    info["direction"] = info["metric"].map(dict(zip(stated["metric"], stated["direction"]))).fillna("")
    rank = {c: i for i, c in enumerate(CATEGORY_ORDER)}
    info["order"] = info["category"].map(lambda c: rank.get(c, len(rank)))
    return info.sort_values(["order", "appearance"]).set_index("metric")[["category", "direction"]]


def per_image(ok: pd.DataFrame) -> pd.DataFrame:
    """Mean score over seeds for each (model, dataset, method, metric, image); NaN if no seed scored."""
    return (ok.groupby(["model", "dataset", "method", "metric", "image"], sort=False)["score"]
            .mean().reset_index())


def architecture_stats(run: Run, n_resamples: int = N_RESAMPLES) -> list[ArchitectureStats]:
    """Arrays, means and paired bootstrap samples for every architecture of the run."""
    methods_all = method_order(run.scores, run.metadata)
    metrics_all = list(metric_info(run.scores).index)
    images_frame = per_image(run.ok)
    result = []
    for arch in architectures(run.scores, run.metadata):
        in_arch = run.scores[(run.scores["model"] == arch.model) & (run.scores["dataset"] == arch.dataset)]
        methods = [m for m in methods_all if m in set(in_arch["method"])]
        metrics = [m for m in metrics_all if m in set(in_arch["metric"])]
        frame = images_frame[(images_frame["model"] == arch.model) & (images_frame["dataset"] == arch.dataset)]
        images = sorted(int(i) for i in frame["image"].unique())
        values = np.full((len(images), len(methods), len(metrics)), np.nan)
        if images:
            i = frame["image"].map({im: k for k, im in enumerate(images)}).to_numpy()
            j = frame["method"].map({m: k for k, m in enumerate(methods)}).to_numpy()
            k = frame["metric"].map({m: k for k, m in enumerate(metrics)}).to_numpy()
            values[i, j, k] = frame["score"].to_numpy(dtype=float)
        flat = values.reshape(len(images), len(methods) * len(metrics))
        shape = (len(methods), len(metrics))
        mean = weighted_means(flat, np.ones((1, len(images))))[0].reshape(shape)
        weights = resample_weights(len(images), n_resamples, seed_for(arch.model, arch.dataset))
        samples = weighted_means(flat, weights).reshape((n_resamples, *shape))
        result.append(ArchitectureStats(arch, methods, metrics, images, values, mean, samples))
    return result


def cell_table(run: Run, stats: list[ArchitectureStats]) -> pd.DataFrame:
    """Long table, one row per (architecture, method, metric) cell: mean, 95% interval and counts.

    ``n_images``: images with a finite score; ``n_rows``: score rows of the cell that ran;
    ``n_nan``: those rows whose score is NaN (skipped); ``n_errors``: error rows of the cell.
    """
    info = metric_info(run.scores)
    keys = ["model", "dataset", "method", "metric"]
    rows_ok = run.ok.groupby(keys).agg(n_rows=("score", "size"), n_nan=("score", lambda s: int(s.isna().sum())))
    rows_err = run.errors.groupby(keys).size().rename("n_errors")
    records = []
    for st in stats:
        low, high = percentile_interval(st.samples)
        n_images = np.isfinite(st.values).sum(axis=0)
        for j, method in enumerate(st.methods):
            for k, metric in enumerate(st.metrics):
                key = (st.architecture.model, st.architecture.dataset, method, metric)
                has_ok = key in rows_ok.index
                if not has_ok and key not in rows_err.index:
                    continue  # never scheduled: not a failure, just absent
                records.append({
                    "model": key[0], "dataset": key[1], "architecture": st.architecture.label,
                    "method": method, "metric": metric, "category": info.at[metric, "category"],
                    "direction": info.at[metric, "direction"], "mean": st.mean[j, k],
                    "ci_low": low[j, k], "ci_high": high[j, k], "n_images": int(n_images[j, k]),
                    "n_rows": int(rows_ok.at[key, "n_rows"]) if has_ok else 0,
                    "n_nan": int(rows_ok.at[key, "n_nan"]) if has_ok else 0,
                    "n_errors": int(rows_err.get(key, 0)),
                })
    return pd.DataFrame.from_records(records, columns=[
        "model", "dataset", "architecture", "method", "metric", "category", "direction", "mean", "ci_low",
        "ci_high", "n_images", "n_rows", "n_nan", "n_errors"])


def oriented(values: np.ndarray, directions: list[str]) -> np.ndarray:
    """Scores turned so that higher is better on every metric (last axis = metrics); NaN for a
    metric without a valid direction."""
    sign = np.array([DIRECTIONS.get(d, np.nan) for d in directions])
    return values * sign
