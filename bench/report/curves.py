"""Curve figures from ``curves.csv``: mean curves per method (deletion, insertion, ROAD, ...) and
the cascading randomisation curves of the sanity checks (Adebayo et al. 2018, their Fig. 2 layout:
similarity to the original map against the number of randomised blocks, top down).

Drawn with plain matplotlib from stored numbers only: rebuilding a report must not need the
attribution or metric libraries to import (they may be absent, newer or mid-change).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .load import CASCADE_METRIC
from .plotting import plt, save, sns, style

X_LABELS = {"deletion": "fraction of pixels deleted", "insertion": "fraction of pixels inserted"}
LINE_STYLES = ["-", "--", ":", "-."]


def with_architecture(curves: pd.DataFrame, labels: dict[tuple[str, str], str]) -> pd.DataFrame:
    keys = list(zip(curves["model"], curves["dataset"]))
    return curves.assign(architecture=[labels.get(k, f"{k[0]} / {k[1]}") for k in keys])


def mean_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation of y per (architecture, method, curve, x) over images."""
    return (curves.dropna(subset=["y"])
            .groupby(["architecture", "method", "curve", "x"], sort=False)["y"]
            .agg(y="mean", sd="std", n_images="size").reset_index().sort_values("x", kind="stable"))


def _panels(data: pd.DataFrame, methods: list[str], band: bool, x_label: str, y_label: str,
            title: str) -> tuple[plt.Figure, np.ndarray]:
    """One panel per architecture, one colour per method, one dash style per curve name."""
    style()
    architectures = list(dict.fromkeys(data["architecture"]))
    order = [m for m in methods if m in set(data["method"])] + sorted(set(data["method"]) - set(methods))
    colours = dict(zip(order, sns.color_palette(n_colors=len(order))))
    curve_names = list(dict.fromkeys(data["curve"]))
    dashes = {c: LINE_STYLES[i % len(LINE_STYLES)] for i, c in enumerate(curve_names)}
    fig, axes = plt.subplots(1, len(architectures), figsize=(3.6 * len(architectures) + 1.6, 3.2),
                             squeeze=False, sharey=True)
    for ax, architecture in zip(axes[0], architectures):
        panel = data[data["architecture"] == architecture]
        for (method, curve), line in panel.groupby(["method", "curve"], sort=False):
            label = method if len(curve_names) == 1 else f"{method} ({curve})"
            ax.plot(line["x"], line["y"], dashes[curve], color=colours[method], lw=1.4, label=label,
                    marker="o" if band else None, ms=3)
            if band:
                ax.fill_between(line["x"], line["y"] - line["sd"].fillna(0), line["y"] + line["sd"].fillna(0),
                                color=colours[method], alpha=0.15, lw=0)
        ax.set_title(architecture, fontsize=9)
        ax.set_xlabel(x_label)
    axes[0, 0].set_ylabel(y_label)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    by_label = dict(zip(labels, handles))
    for ax in axes[0, 1:]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            by_label.setdefault(label, handle)
    axes[0, -1].legend(by_label.values(), by_label.keys(), bbox_to_anchor=(1.02, 1), loc="upper left",
                       fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=10, y=1.03)
    return fig, axes


def primary_curve(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The curve named after its metric when there is one (the runner may also store secondary
    curves, e.g. every similarity measure of a sanity check); all curves otherwise."""
    primary = rows[rows["curve"] == metric]
    return primary if not primary.empty else rows


def cascade_measures(rows: pd.DataFrame) -> pd.DataFrame:
    """Cascade rows with one curve per similarity measure, named by the measure.

    Accepts the measure names themselves (``spearman_abs``) or the metric's extras keys
    (``curves_spearman_abs``); the curve named after the metric duplicates its primary measure and is
    dropped when the measures are there, or called ``similarity`` when it is alone.
    """
    names = rows["curve"].str.replace(r"^curves_", "", regex=True)
    if (names != CASCADE_METRIC).any():
        keep = names != CASCADE_METRIC
        return rows[keep].assign(curve=names[keep])
    return rows.assign(curve="similarity")


def with_original(means: pd.DataFrame) -> pd.DataFrame:
    """Add step 0 (the original map: similarity 1 with itself) where the stored curve starts at
    step 1, so every curve starts where the paper's do."""
    starts = means.groupby(["architecture", "method", "curve"], sort=False)["x"].min()
    missing = starts[starts > 0].reset_index()[["architecture", "method", "curve"]]
    if missing.empty:
        return means
    origin = missing.assign(x=0.0, y=1.0, sd=0.0, n_images=0)
    return pd.concat([origin, means], ignore_index=True).sort_values("x", kind="stable")


def plot_metric_curves(curves: pd.DataFrame, metric: str, methods: list[str], path: Path) -> Path | None:
    """Mean curve over images of one metric, per architecture and method."""
    data = mean_curves(primary_curve(curves[curves["metric"] == metric], metric))
    if data.empty:
        return None
    fig, _ = _panels(data, methods, band=False, x_label=X_LABELS.get(metric, "x"),
                     y_label="score (mean over images)", title=f"{metric} curves")
    return save(fig, path)


def cascade_blocks(rows: pd.DataFrame) -> dict[int, str]:
    """Tick label per step (step 0 always): the stored block name, ``original`` at step 0, else the
    step number."""
    names: dict[int, str] = {}
    for step, label in zip(rows["x"].round().astype(int), rows["label"]):
        if label.strip():
            names.setdefault(step, label.strip())
    steps = sorted(set(rows["x"].round().astype(int)) | {0})
    return {s: names.get(s, "original" if s == 0 else str(s)) for s in steps}


def plot_cascades(curves: pd.DataFrame, methods: list[str], directory: Path) -> list[tuple[str, Path]]:
    """One figure per similarity measure present: (measure, path). Band = one standard deviation
    over images; the zero line is where a map no longer resembles the original."""
    rows = cascade_measures(curves[(curves["metric"] == CASCADE_METRIC)].dropna(subset=["y"]))
    written = []
    for measure in dict.fromkeys(rows["curve"]):
        selected = rows[rows["curve"] == measure]
        means = with_original(mean_curves(selected))
        fig, axes = _panels(means, methods, band=True, x_label="randomised down to block",
                            y_label=f"similarity ({measure})",
                            title=f"Cascading model randomisation: {measure} to the original map")
        for ax, architecture in zip(axes[0], dict.fromkeys(means["architecture"])):
            ticks = cascade_blocks(selected[selected["architecture"] == architecture])
            ax.set_xticks(list(ticks))
            ax.set_xticklabels(list(ticks.values()), rotation=40, ha="right", fontsize=7)
            ax.axhline(0.0, color="grey", lw=0.6)
        written.append((measure, save(fig, directory / f"cascade_{measure}.png")))
    return written
