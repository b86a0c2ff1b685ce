"""Figures of the sanity checks: Adebayo-style cascade curves and a strip of maps along the cascade.

The curves are drawn from a tidy frame, one row per (architecture, method, measure, image, step),
built from cascading results by :func:`cascade_frame`; step 0 is the original map (similarity 1
with itself), step k the map after k randomised blocks.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: the harness runs headless

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import Tensor  # noqa: E402

from metrics import MetricResult  # noqa: E402
from metrics.similarity import MEASURES, abs_unit  # noqa: E402

COLUMNS = ["architecture", "method", "measure", "image", "n_randomised", "block", "similarity"]


def cascade_frame(result: MetricResult, architecture: str, method: str,
                  measures: Sequence[str] = MEASURES) -> pd.DataFrame:
    """Tidy rows (columns :data:`COLUMNS`) from a ``model_randomisation_cascading`` result.

    Adds step 0 ("original", similarity 1) for images whose original map is not constant, so the
    curves start where the paper's do.
    """
    blocks = list(result.extras["block_names"])
    valid = result.extras.get("original_valid")
    rows = []
    for measure in measures:
        curves = result.extras[f"curves_{measure}"]
        for image in range(curves.shape[0]):
            if valid is None or bool(valid[image]):
                rows.append((architecture, method, measure, image, 0, "original", 1.0))
            for step, block in enumerate(blocks):
                rows.append((architecture, method, measure, image, step + 1, block, float(curves[image, step])))
    return pd.DataFrame(rows, columns=COLUMNS)


def plot_cascade(frame: pd.DataFrame, measure: str = "spearman_abs", path: str | Path | None = None) -> Figure:
    """Similarity against the number of randomised blocks: one line per method (mean over images,
    band = one standard deviation), one panel per architecture, x ticks named by block."""
    data = frame[frame["measure"] == measure].dropna(subset=["similarity"])
    if data.empty:
        raise ValueError(f"no finite similarities for measure {measure!r} in the frame")
    architectures = sorted(data["architecture"].unique())
    grid = sns.relplot(data=data, x="n_randomised", y="similarity", hue="method", col="architecture",
                       col_order=architectures, kind="line", errorbar="sd", marker="o", height=3.2, aspect=1.3,
                       facet_kws={"sharex": False})
    for ax, architecture in zip(grid.axes.flat, architectures):
        ticks = (data[data["architecture"] == architecture][["n_randomised", "block"]]
                 .drop_duplicates().sort_values("n_randomised"))
        ax.set_xticks(ticks["n_randomised"].tolist())
        ax.set_xticklabels(ticks["block"].tolist(), rotation=45, ha="right")
        ax.axhline(0.0, color="grey", lw=0.5)
        ax.set_xlabel("randomised down to block")
    grid.set_ylabels(f"similarity ({measure})")
    grid.figure.tight_layout()
    if path is not None:
        grid.figure.savefig(path, dpi=120)
    return grid.figure


def plot_cascade_strip(original: Tensor, maps: Tensor, blocks: Sequence[str], image: Tensor | None = None,
                       title: str | None = None, path: str | Path | None = None) -> Figure:
    """A row of maps for one image: (input,) original, then after each randomised block.

    ``original``: (H, W) or (1, H, W); ``maps``: (B, H, W), e.g. ``result.extras["maps"][i]`` of a
    cascading result run with ``keep_maps=True``; ``image``: optional (3, H, W), min-max scaled for
    display. Maps are shown as the paper did: absolute value, min to 99th percentile, clipped.
    """
    original = original.reshape(1, 1, *original.shape[-2:]).float()
    maps = maps.reshape(-1, 1, *maps.shape[-2:]).float()
    if maps.shape[0] != len(blocks):
        raise ValueError(f"{maps.shape[0]} maps for {len(blocks)} blocks")
    shown, _ = abs_unit(torch.cat([original, maps]).cpu())
    panels = [("original", shown[0])] + [(f"-> {b}", shown[k + 1]) for k, b in enumerate(blocks)]
    extra = 0 if image is None else 1
    fig, axes = plt.subplots(1, len(panels) + extra, figsize=(1.7 * (len(panels) + extra), 2.0), squeeze=False)
    axes = axes[0]
    if image is not None:
        img = image.detach().float().cpu()
        img = (img - img.min()) / (img.max() - img.min()).clamp_min(1e-12)
        axes[0].imshow(img.permute(1, 2, 0).numpy())
        axes[0].set_title("input", fontsize=8)
    for ax, (label, panel) in zip(axes[extra:], panels):
        ax.imshow(torch.nan_to_num(panel).numpy(), cmap="gray", vmin=0.0, vmax=1.0)
        ax.set_title(label, fontsize=8)
    for ax in axes:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
