"""Saliency grids: for each architecture, rows = images, columns = the image and one map per method.

Maps are stored by the runner in ``maps/<model>__<dataset>__<method>-<settings hash>.pt``. Each map is shown as
its absolute value scaled by its own 99th percentile (so one hot pixel does not wash out the rest,
and methods with different units can sit side by side), over a grey copy of the image with an
opacity that grows with the map; the ground-truth mask, when there is one, is outlined on the
image column.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cells import slug
from .formatting import one_line
from .plotting import plt, save, style

MAX_IMAGES = 6
ALPHA = 0.8  # opacity of the strongest attribution
ALPHA_FLOOR = 0.1  # opacity of zero attribution
CMAP = "jet"
_COLOURS = plt.get_cmap(CMAP)


@dataclass
class StoredMaps:
    model: str
    dataset: str
    method: str
    images: np.ndarray  # (K, H, W, 3) in [0, 1]
    maps: np.ndarray  # (K, H, W)
    labels: np.ndarray
    targets: np.ndarray
    masks: np.ndarray | None  # (K, H, W) bool


def read_maps(path: Path) -> StoredMaps:
    """Load one ``maps/*.pt`` file written by the runner (it names its model, dataset and method)."""
    import torch  # only reports with stored maps pay for importing torch

    data = torch.load(path, map_location="cpu", weights_only=True)
    if not all(key in data for key in ("model", "dataset", "method", "maps", "images")):
        raise ValueError(f"{path.name}: not a maps file of this harness (no model, dataset, method, maps, images)")
    masks = data.get("masks")
    return StoredMaps(
        model=data["model"], dataset=data["dataset"], method=data["method"],
        images=data["images"].float().clamp(0, 1).permute(0, 2, 3, 1).numpy(),
        maps=data["maps"].float()[:, 0].numpy(),
        labels=data["labels"].numpy(), targets=data["targets"].numpy(),
        masks=None if masks is None else masks[:, 0].bool().numpy())


def class_label(model: str, index: int) -> str:
    """``"Egyptian cat (285)"`` when the model is a registered spec with class names, else the index."""
    try:
        from bench.models import get_spec  # the specs only (no attribution or metric library)

        names = get_spec(model).class_names
    except (KeyError, ImportError):  # a zoo entry or a model this checkout does not know
        names = ()
    index = int(index)
    return f"{names[index]} ({index})" if 0 <= index < len(names) else str(index)


def display_map(saliency: np.ndarray) -> np.ndarray:
    """|map| / its 99th percentile, clipped to [0, 1]; a constant-zero map stays zero."""
    magnitude = np.abs(np.nan_to_num(saliency))
    scale = np.percentile(magnitude, 99)
    if scale <= 0:
        scale = magnitude.max()
    return np.clip(magnitude / scale, 0, 1) if scale > 0 else magnitude


def overlay(image: np.ndarray, saliency: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB: the map in the colour map over a grey copy of the image, with an opacity that
    follows the map (the image stays visible where the method attributes little). Blended here, one
    RGB image per panel: Agg composites a per-pixel alpha layer ~10x slower (a 26-column grid of
    224-px maps took 29 s to draw that way)."""
    shown = display_map(saliency)
    alpha = (ALPHA_FLOOR + (ALPHA - ALPHA_FLOOR) * shown)[..., None]
    grey = np.repeat(image.mean(axis=-1, keepdims=True), 3, axis=-1)
    return np.clip(grey * (1 - alpha) + _COLOURS(shown)[..., :3] * alpha, 0, 1)


def plot_grid(stored: list[StoredMaps], title: str, path: Path, methods: list[str] | None = None,
              max_images: int = MAX_IMAGES) -> Path:
    """One architecture's grid; ``methods`` fixes the column order (default: as given).

    The panels are tiled into one RGB mosaic drawn on a single axes, with the column names and row
    labels as text around it: one axes per panel (a 6 x 36 grid is 216 of them) made drawing the
    grids most of a report's build time."""
    by_method = {s.method: s for s in stored}
    order = [m for m in (methods or []) if m in by_method] + [m for m in by_method if m not in (methods or [])]
    first = by_method[order[0]]
    rows = min(max_images, *(by_method[m].maps.shape[0] for m in order))
    cols = 1 + len(order)
    height, width = first.images.shape[1:3]
    gap = max(2, max(height, width) // 20)
    step_y, step_x = height + gap, width + gap
    mosaic = np.ones((rows * step_y - gap, cols * step_x - gap, 3))
    for r in range(rows):
        mosaic[r * step_y:r * step_y + height, :width] = first.images[r]
        for c, method in enumerate(order, start=1):
            mosaic[r * step_y:r * step_y + height, c * step_x:c * step_x + width] = overlay(
                by_method[method].images[r], by_method[method].maps[r])
    style("white")
    fig = plt.figure(figsize=(1.5 * cols + 0.5, 1.5 * rows + 0.6))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.imshow(mosaic)
    ax.set_axis_off()
    for r in range(rows):
        if first.masks is not None and first.masks[r].any():
            ax.contour(np.arange(width), np.arange(height) + r * step_y, first.masks[r].astype(float), levels=[0.5],
                       colors="lime", linewidths=0.8)
        label = f"label {class_label(first.model, first.labels[r])}\n" if first.labels[r] >= 0 else ""
        target = class_label(first.model, first.targets[r])
        joiner = " " if target.isdigit() else "\n"  # a class name gets a line of its own
        ax.text(-gap, r * step_y + height / 2, f"{label}target{joiner}{target}", fontsize=7, rotation=90,
                ha="right", va="center")
    for c, name in enumerate(["image", *order]):
        ax.text(c * step_x + width / 2, -gap, name, fontsize=8, ha="center", va="bottom")
    ax.text(mosaic.shape[1] / 2, -gap - 0.3 * height, title, fontsize=9, ha="center", va="bottom")
    return save(fig, path)


def plot_saliency_grids(paths: list[Path], labels: dict[tuple[str, str], str], methods: list[str],
                        directory: Path) -> tuple[list[tuple[str, Path]], list[str]]:
    """One grid per architecture found in ``paths``: ((architecture label, figure path) pairs,
    messages for map files that could not be read; one bad file must not cost the whole report)."""
    from .token_grid import split_token_maps  # text models' maps: tokens, not pixels

    paths, token_figures, skipped = split_token_maps(paths, labels, methods, directory)
    groups: dict[tuple[str, str], list[StoredMaps]] = {}
    for path in paths:
        try:
            stored = read_maps(path)
        except (OSError, RuntimeError, ValueError, KeyError, AttributeError, EOFError, pickle.UnpicklingError) as error:
            skipped.append(one_line(f"{path.name}: {type(error).__name__}: {error}"))
            continue
        groups.setdefault((stored.model, stored.dataset), []).append(stored)
    written = token_figures
    for (model, dataset), stored in groups.items():
        label = labels.get((model, dataset), f"{model} / {dataset}")
        title = f"{label}: maps over images (|map| / 99th percentile)"
        written.append((label, plot_grid(stored, title, directory / f"saliency_{slug(model, dataset)}.png", methods)))
    return written, skipped
