"""The leaderboard figure: methods x architectures, the aggregate rank with its 95% interval.

Colour is the rank normalised to [0, 1] by the architecture's number of methods (0 = best), so
architectures that rank different numbers of methods share one scale; the text is the rank itself.
Methods are ordered by their mean normalised rank over the architectures they ran on.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .aggregate import AGGREGATE
from .plotting import finish_heatmap, plt, sns, style


def leaderboard_frames(aggregates: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(normalised rank, annotation text), method x architecture, best method first."""
    normalised, text = {}, {}
    for architecture, table in aggregates.items():
        n = max(len(table) - 1, 1)
        normalised[architecture] = (table[AGGREGATE] - 1.0) / n
        text[architecture] = [f"{v:.3g}\n[{lo:.3g}, {hi:.3g}]" if np.isfinite(v) else ""
                              for v, lo, hi in zip(table[AGGREGATE], table[f"{AGGREGATE}_low"],
                                                   table[f"{AGGREGATE}_high"])]
        text[architecture] = pd.Series(text[architecture], index=table.index)
    values = pd.DataFrame(normalised).dropna(how="all")  # a method that failed everywhere has no rank to show
    order = values.mean(axis=1, skipna=True).sort_values(kind="stable").index
    return values.reindex(order), pd.DataFrame(text).reindex(order).fillna("")


def plot_leaderboard(aggregates: dict[str, pd.DataFrame], path: Path) -> Path | None:
    """None when no architecture has an aggregate rank."""
    values, text = leaderboard_frames(aggregates)
    if values.empty or not np.isfinite(values.to_numpy(dtype=float)).any():
        return None
    style("white")
    fig, ax = plt.subplots(figsize=(1.35 * values.shape[1] + 2.8, 0.42 * values.shape[0] + 1.6))
    sns.heatmap(values.astype(float), annot=text.to_numpy(), fmt="", cmap="viridis_r", vmin=0.0, vmax=1.0, ax=ax,
                annot_kws={"fontsize": 6.5}, linewidths=0.5, linecolor="white",
                cbar_kws={"label": "normalised aggregate rank (0 = best)"})
    # grey: the method did not run on that architecture
    return finish_heatmap(fig, ax, "Leaderboard: aggregate rank over the score families [95% interval]", path, 30)
