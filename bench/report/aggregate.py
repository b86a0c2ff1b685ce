"""One aggregate rank per (architecture, method): the leaderboard's number.

Weighting: every score family present counts equally, whatever its number of scores (otherwise the
15 faithfulness scores would outvote the 3 complexity scores). Within a family, a method's rank is
its mean rank over the family's scores that rank at least two methods (ranks as in
:mod:`.ranking`: direction respected, ties shared, failed cells stretched onto 1..n). The aggregate
is the mean of the family ranks, on the 1..n scale of the architecture's n methods. Its 95%
interval comes from the same paired bootstrap resamples of images as every other interval.

For reference, LATEC's aggregate (Klein et al. 2024) is also given: the median over all scores of
the normalised rank (rank - 1) / (n - 1), 0 = best, every score weighted alike.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .bootstrap import percentile_interval
from .cells import CATEGORY_ORDER, ArchitectureStats, oriented
from .ranking import metric_ranks

AGGREGATE = "aggregate"
LATEC = "latec_median"


def _nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a method without a ranked score stays NaN
        return np.nanmean(values, axis=axis)


def _nanmedian(values: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(values, axis=axis)


def families_of(stats: ArchitectureStats, metrics: pd.DataFrame) -> list[tuple[str, list[int]]]:
    """(family, indices of its ranked scores) in the registry's family order; a score ranks when at
    least two methods have a mean for it."""
    used = np.isfinite(stats.mean).sum(axis=0) >= 2
    found: dict[str, list[int]] = {}
    for k, metric in enumerate(stats.metrics):
        if used[k] and metrics.at[metric, "direction"] in ("higher", "lower"):
            found.setdefault(str(metrics.at[metric, "category"]), []).append(k)
    order = {c: i for i, c in enumerate(CATEGORY_ORDER)}
    return sorted(found.items(), key=lambda item: order.get(item[0], len(order)))


def aggregate_table(stats: ArchitectureStats, metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per method, best first: ``aggregate`` (+ ``_low``/``_high``), one column per family
    (its mean rank, + ``_low``/``_high``), ``latec_median`` and ``n_scores`` (scores it is ranked on)."""
    directions = [metrics.at[m, "direction"] for m in stats.metrics]
    point = metric_ranks(oriented(stats.mean, directions))  # (methods, metrics)
    samples = metric_ranks(oriented(stats.samples, directions))  # (resamples, methods, metrics)
    families = families_of(stats, metrics)
    table = pd.DataFrame(index=pd.Index(stats.methods, name="method"))
    n = len(stats.methods)
    if not families:
        table[AGGREGATE] = table[f"{AGGREGATE}_low"] = table[f"{AGGREGATE}_high"] = np.nan
        table[LATEC], table["n_scores"] = np.nan, 0
        return table
    family_point = np.stack([_nanmean(point[:, idx], axis=-1) for _, idx in families], axis=-1)
    family_samples = np.stack([_nanmean(samples[:, :, idx], axis=-1) for _, idx in families], axis=-1)
    columns = {AGGREGATE: (_nanmean(family_point, -1), _nanmean(family_samples, -1))}
    columns.update({name: (family_point[:, f], family_samples[:, :, f]) for f, (name, _) in enumerate(families)})
    for name, (estimate, resampled) in columns.items():
        low, high = percentile_interval(resampled)
        table[name], table[f"{name}_low"], table[f"{name}_high"] = estimate, low, high
    ranked = [k for _, idx in families for k in idx]
    normalised = (point[:, ranked] - 1.0) / max(n - 1, 1)
    table[LATEC] = _nanmedian(normalised, axis=-1)
    table["n_scores"] = np.isfinite(point[:, ranked]).sum(axis=-1)
    return table.sort_values(AGGREGATE, na_position="last", kind="stable")


def family_names(table: pd.DataFrame) -> list[str]:
    """The family columns of an :func:`aggregate_table`."""
    return [c for c in table.columns if c in CATEGORY_ORDER]
