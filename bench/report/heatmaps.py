"""Heatmaps: methods x metrics per architecture, and the metric-agreement matrix."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .cells import ArchitectureStats, oriented
from .formatting import ARROWS, number
from .plotting import finish_heatmap, plt, save, sns, style


def normalise_per_metric(means: np.ndarray, directions: list[str]) -> np.ndarray:
    """Min-max per metric column after orienting, so 1 = best method and 0 = worst on that metric;
    a metric on which all methods tie maps to 0.5."""
    turned = oriented(means, directions)
    finite = np.isfinite(turned)
    low = np.min(turned, axis=0, initial=np.inf, where=finite)
    high = np.max(turned, axis=0, initial=-np.inf, where=finite)
    span = high - low
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = (turned - low) / np.where(span > 0, span, np.nan)
    return np.where(finite & ~(span > 0), 0.5, scaled)


def plot_architecture_heatmap(stats: ArchitectureStats, directions: list[str], path: Path) -> Path:
    """Colour = quality normalised per metric; numbers = raw means; grey = no score or failed."""
    style("white")
    normalised = normalise_per_metric(stats.mean, directions)
    labels = np.vectorize(number, otypes=[str])(stats.mean)
    columns = [f"{m} {ARROWS.get(d, '')}" for m, d in zip(stats.metrics, directions)]
    frame = pd.DataFrame(normalised, index=stats.methods, columns=columns)
    fig, ax = plt.subplots(figsize=(1.1 * len(columns) + 2.5, 0.45 * len(stats.methods) + 1.8))
    sns.heatmap(frame, annot=labels, fmt="", cmap="viridis", vmin=0.0, vmax=1.0, ax=ax,
                annot_kws={"fontsize": 7}, cbar_kws={"label": "normalised per metric (1 = best)"})
    return finish_heatmap(fig, ax, f"{stats.architecture.label}: mean score per method and metric", path, 40)


def plot_agreement(agreement: pd.DataFrame, path: Path) -> Path | None:
    """Spearman correlations between metrics; None when fewer than two metrics."""
    if agreement.shape[0] < 2:
        return None
    style("white")
    size = 0.6 * agreement.shape[0] + 2.5
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    sns.heatmap(agreement, annot=True, fmt=".2f", cmap="coolwarm", vmin=-1.0, vmax=1.0, square=True, ax=ax,
                annot_kws={"fontsize": 7}, cbar_kws={"label": "Spearman ρ (metrics oriented: higher = better)"})
    ax.set_title("Agreement between metrics across (architecture, method) means")
    ax.set_xlabel("")
    ax.set_ylabel("")
    return save(fig, path)
