"""Rank methods per architecture, with bootstrap intervals over images, and measure how well the
metrics agree with each other.

Rank 1 is the best method on a metric (its direction respected); ties share the average rank. The
overall rank of a method is its mean rank over the metrics that rank at least two methods on that
architecture. When a metric scores only k of the architecture's n methods (a failed cell), its ranks
are stretched linearly from 1..k onto 1..n, so that the last of the k still counts as last and a
failure does not lift the methods below it in the overall rank. Intervals come from the paired
resamples of :mod:`.cells`, so a method's rank moves with the same images as its competitors'.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from .bootstrap import percentile_interval
from .cells import DIRECTIONS, ArchitectureStats, metric_info, oriented
from .load import Run

OVERALL = "overall"


def metric_ranks(means: np.ndarray) -> np.ndarray:
    """Ranks of methods (axis -2) per metric (axis -1) on the 1..n scale of all n methods; ``means``
    oriented so higher is better; NaN where a method has no mean."""
    ranks = rankdata(-means, axis=-2, nan_policy="omit")
    n = means.shape[-2]
    k = np.isfinite(means).sum(axis=-2, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        stretched = 1.0 + (ranks - 1.0) * (n - 1) / (k - 1)
    # A method ranked alone sits mid-scale: one method is no evidence of being best or worst.
    stretched = np.where(k > 1, stretched, (n + 1) / 2.0)
    return np.where(np.isfinite(ranks), stretched, np.nan)


def _mean_rank(ranks: np.ndarray, used: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a method with no ranked metric stays NaN
        return np.nanmean(ranks[..., used], axis=-1)


def rank_table(run: Run, stats: ArchitectureStats) -> pd.DataFrame:
    """One row per method of the architecture: for each ranked metric and for ``overall``, the rank
    (column = name) and its 95% interval (``<name>_low``, ``<name>_high``); sorted best first."""
    directions = [metric_info(run.scores).at[m, "direction"] for m in stats.metrics]
    point = metric_ranks(oriented(stats.mean, directions))
    samples = metric_ranks(oriented(stats.samples, directions))
    used = np.isfinite(stats.mean).sum(axis=0) >= 2  # one method alone is not a ranking
    names = [m for m, u in zip(stats.metrics, used) if u]
    columns = {OVERALL: (_mean_rank(point, used), _mean_rank(samples, used))}
    columns.update({m: (point[:, k], samples[:, :, k]) for k, m in enumerate(stats.metrics) if used[k]})
    data = {}
    for name in [OVERALL, *names]:  # built as one frame: column by column fragments it (and warns)
        estimate, resampled = columns[name]
        low, high = percentile_interval(resampled)
        data.update({name: estimate, f"{name}_low": low, f"{name}_high": high})
    table = pd.DataFrame(data, index=pd.Index(stats.methods, name="method"))
    return table.sort_values(OVERALL, na_position="last", kind="stable")


def ranked_metrics(table: pd.DataFrame) -> list[str]:
    """The metric names of a :func:`rank_table`, overall excluded."""
    return [c for c in table.columns if c != OVERALL and not c.endswith(("_low", "_high"))]


def metric_agreement(cells: pd.DataFrame, min_points: int = 3) -> pd.DataFrame:
    """Spearman correlation between metrics across (architecture, method) means.

    Each metric is oriented so that higher is better first: a positive correlation means two
    metrics agree on which methods are good. NaN where fewer than ``min_points`` pairs exist.
    """
    if cells.empty:
        return pd.DataFrame()
    frame = cells.assign(value=cells["mean"] * cells["direction"].map(DIRECTIONS).astype(float))
    wide = frame.pivot_table(index=["model", "dataset", "method"], columns="metric", values="value",
                             aggfunc="first", sort=False)
    order = [m for m in dict.fromkeys(cells["metric"]) if m in wide.columns]
    return wide[order].corr(method="spearman", min_periods=min_points)
