"""Compare the scores of two runs cell by cell: what a change of version or setting moved.

For every (model, dataset, method, metric) cell scored in both runs, the difference of the means
over images (B - A) with a 95% bootstrap interval. Images both runs scored are resampled together
(paired: the same image's scores move together, so the interval measures the change, not the spread
between images); a cell whose runs share no image is resampled independently per run. A cell is
flagged when its interval excludes zero. Each run is read through its own plan (``load_run``), so a
stale file is never compared.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import formatting as fmt
from .bootstrap import N_RESAMPLES, percentile_interval, resample_weights, seed_for, weighted_means
from .cells import per_image
from .load import load_run

KEYS = ["model", "dataset", "method", "metric"]


def _difference(a: pd.Series, b: pd.Series, n_resamples: int, seed: int) -> tuple[float, float, float, int, bool]:
    """(B - A, low, high, images used, paired) from per-image scores indexed by image."""
    common = a.index.intersection(b.index)
    if len(common):
        delta = (b.loc[common] - a.loc[common]).to_numpy(dtype=float).reshape(-1, 1)
        point = float(np.nanmean(delta)) if np.isfinite(delta).any() else float("nan")
        samples = weighted_means(delta, resample_weights(len(common), n_resamples, seed))
        low, high = percentile_interval(samples)
        return point, float(low[0]), float(high[0]), len(common), True
    columns = []
    for k, side in enumerate((a, b)):
        values = side.to_numpy(dtype=float).reshape(-1, 1)
        columns.append(weighted_means(values, resample_weights(len(values), n_resamples, seed + k)))
    low, high = percentile_interval(columns[1] - columns[0])
    return float(np.nanmean(b) - np.nanmean(a)), float(low[0]), float(high[0]), 0, False


def compare_scores(run_a: str | Path, run_b: str | Path, n_resamples: int = N_RESAMPLES) -> pd.DataFrame:
    """One row per cell scored in both runs: mean_a, mean_b, difference, its interval, images, flagged."""
    means = [per_image(load_run(r).ok) for r in (run_a, run_b)]
    grouped = [dict(tuple(g.groupby(KEYS, sort=False))) for g in means]
    rows = []
    for key in [k for k in grouped[0] if k in grouped[1]]:
        a, b = (g[key].set_index("image")["score"] for g in grouped)
        diff, low, high, n, paired = _difference(a, b, n_resamples, seed_for(*key))
        rows.append(dict(zip(KEYS, key), mean_a=float(np.nanmean(a)), mean_b=float(np.nanmean(b)), difference=diff,
                         ci_low=low, ci_high=high, images=n, paired=paired,
                         flagged=bool(np.isfinite(low) and np.isfinite(high) and (low > 0 or high < 0))))
    return pd.DataFrame(rows, columns=[*KEYS, "mean_a", "mean_b", "difference", "ci_low", "ci_high", "images",
                                       "paired", "flagged"])


def compare_text(frame: pd.DataFrame, only_flagged: bool = False) -> str:
    """Aligned text, flagged cells first ('*'), then by the size of the change."""
    if frame.empty:
        return "no cell is scored in both runs"
    order = frame.assign(_size=frame["difference"].abs()).sort_values(["flagged", "_size"], ascending=[False, False],
                                                                        kind="stable")
    if only_flagged:
        order = order[order["flagged"]]
    lines = [f"{'':1} {'model/dataset':<24} {'method':<24} {'metric':<32} {'A':>8} {'B':>8} {'B - A [95% interval]':>30}"]
    for r in order.itertuples():
        interval = fmt.with_interval(r.difference, r.ci_low, r.ci_high) + ("" if r.paired else " (unpaired)")
        model = f"{r.model}/{r.dataset}"
        lines.append(f"{'*' if r.flagged else ' '} {model:<24} {r.method:<24} {r.metric:<32} {fmt.number(r.mean_a):>8} "
                     f"{fmt.number(r.mean_b):>8} {interval:>30}")
    flagged = int(frame["flagged"].sum())
    lines.append(f"{flagged} of {len(frame)} cell(s) moved (* = the 95% interval of B - A excludes 0)")
    return "\n".join(lines)
