"""Shared figure plumbing: headless backend, one style, and saving that always closes the figure
(a report draws dozens of figures; open ones would pile up in memory)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: reports are built headless, often on a server

import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

DPI = 110


def style(name: str = "whitegrid") -> None:
    """Seaborn's theme for the next figure (heatmaps and image grids want no grid lines)."""
    sns.set_theme(style=name, context="paper")


def save(fig: Figure, path: Path) -> Path:
    """Write a PNG without a timestamp in its metadata (rebuilds give identical files) and close."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # zlib level 3, not PIL's 6: a third of the encoding time (a 3400x940 saliency grid: 4.8 s -> 1.8 s)
    # for files ~10% larger.
    fig.savefig(path, dpi=DPI, bbox_inches="tight", metadata={"Software": None}, pil_kwargs={"compress_level": 3})
    plt.close(fig)
    return path


def finish_heatmap(fig: Figure, ax, title: str, path: Path, rotation: int) -> Path:
    """The method x column heatmaps' common ending: grey where a cell has no value, the title, no
    axis labels (the ticks name methods and columns), slanted column names; then :func:`save`."""
    ax.set_facecolor("#e6e6e6")
    ax.set_title(title)
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.tick_params(axis="x", rotation=rotation)
    for tick in ax.get_xticklabels():
        tick.set_ha("right")
    return save(fig, path)
