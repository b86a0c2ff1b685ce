"""Faithfulness against speed: one point per (architecture, method), the Pareto front joined.

Speed is the best measured throughput of the method on the model; faithfulness is insertion minus
deletion when both were scored (the gap between the two curves, higher is better), otherwise the
first faithfulness metric of the run turned so that higher is better.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .cells import DIRECTIONS
from .plotting import plt, save, sns, style
from .speed import best_timings


def faithfulness_score(cells: pd.DataFrame) -> tuple[pd.DataFrame, str] | None:
    """Per (model, dataset, architecture, method): one faithfulness value, and its axis label."""
    keys = ["model", "dataset", "architecture", "method"]
    faithful = cells[(cells["category"] == "faithfulness") & cells["direction"].isin(list(DIRECTIONS))]
    metrics = list(dict.fromkeys(faithful["metric"]))
    if {"insertion", "deletion"} <= set(metrics):
        wide = faithful.pivot_table(index=keys, columns="metric", values="mean", aggfunc="first", dropna=False)
        frame = (wide["insertion"] - wide["deletion"]).rename("faithfulness").reset_index()
        return frame, "insertion − deletion (AUC, ↑)"
    if not metrics:
        return None
    metric = metrics[0]
    rows = faithful[faithful["metric"] == metric]
    sign = 1.0 if rows["direction"].iloc[0] == "higher" else -1.0
    frame = rows[keys].assign(faithfulness=sign * rows["mean"].to_numpy())
    return frame.reset_index(drop=True), (metric if sign > 0 else f"−{metric}") + " (↑)"


def pareto_mask(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """True for points that no other point beats on both axes (higher is better on both)."""
    keep = np.ones(len(x), dtype=bool)
    for i in range(len(x)):
        others = (x >= x[i]) & (y >= y[i]) & ((x > x[i]) | (y > y[i]))
        keep[i] = not others.any()
    return keep


def pareto_points(cells: pd.DataFrame, timings: pd.DataFrame) -> tuple[pd.DataFrame, str] | None:
    """The plotted points: images/s, faithfulness and whether the point is on its model's front."""
    scored = faithfulness_score(cells)
    if scored is None:
        return None
    frame, label = scored
    speed = best_timings(timings)[["model", "method", "images_per_s"]]
    points = frame.merge(speed, on=["model", "method"], how="inner")
    points = points[np.isfinite(points["faithfulness"]) & (points["images_per_s"] > 0)].reset_index(drop=True)
    if points.empty:
        return None
    points["front"] = False
    for _, group in points.groupby("architecture", sort=False):
        mask = pareto_mask(group["images_per_s"].to_numpy(), group["faithfulness"].to_numpy())
        points.loc[group.index, "front"] = mask
    return points, label


def plot_pareto(cells: pd.DataFrame, timings: pd.DataFrame, methods: list[str], path: Path) -> Path | None:
    """Draw the figure; None when there is nothing to plot (no faithfulness metric or no timing)."""
    found = pareto_points(cells, timings)
    if found is None:
        return None
    points, label = found
    style()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    several = points["architecture"].nunique() > 1
    hue_order = [m for m in methods if m in set(points["method"])]
    sns.scatterplot(data=points, x="images_per_s", y="faithfulness", hue="method", hue_order=hue_order,
                    style="architecture" if several else None, s=70, ax=ax)
    for architecture, group in points[points["front"]].groupby("architecture", sort=False):
        front = group.sort_values("images_per_s")
        ax.plot(front["images_per_s"], front["faithfulness"], ls="--", lw=1, color="grey", zorder=0)
    ax.set_xscale("log")
    ax.set_xlabel("throughput (images/s, log scale; best batch size)")
    ax.set_ylabel(label)
    ax.set_title("Faithfulness against speed (dashed: Pareto front per architecture)")
    ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=7)
    return save(fig, path)
