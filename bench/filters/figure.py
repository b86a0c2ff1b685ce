"""The filters figure: visualised filters on top, each filter's activation maps on images below."""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: figures are written headless

import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from ..models.spec import ModelSpec  # noqa: E402
from .activations import filter_activations, most_active_filters  # noqa: E402
from .ascent import start_image, visualise_filters  # noqa: E402
from .layers import FilterError, model_device  # noqa: E402

DPI = 110
OVERLAY_ALPHA = 0.6


def plot_filters(visualisations: Tensor, activations: Tensor, images: Tensor, filters: Sequence[int], *,
                 title: str = "", path: str | Path | None = None) -> Figure:
    """Draw (and optionally write as PNG) the filters figure.

    ``visualisations``: (F, 3, H, W) in [0, 1], one per filter (top row). ``activations``: (N, F, h, w)
    maps of the same filters on ``images`` (N, 3, H', W') in [0, 1]; each is upsampled to the image
    and overlaid on a dimmed copy of it (rows below). A filter's maps share one colour scale, 0 to
    that filter's largest activation over all N images, so a weak response looks weak rather than
    being stretched to full contrast.
    """
    n_filters, n_images = visualisations.shape[0], images.shape[0]
    if activations.shape[:2] != (n_images, n_filters) or len(filters) != n_filters:
        raise FilterError(f"shapes do not match: {n_filters} visualisations, {len(filters)} filter indices, "
                          f"activations {tuple(activations.shape)} for {n_images} images")
    maps = torch.nn.functional.interpolate(activations.detach().float().cpu(), size=images.shape[-2:],
                                           mode="bilinear", align_corners=False)
    scale = maps.amax(dim=(0, 2, 3)).clamp_min(1e-12)  # (F,): per-filter scale over every image
    # Scoped styles, not sns.set_theme: the report's other figures keep their own theme.
    with sns.axes_style("white"), sns.plotting_context("paper"):
        fig, axes = plt.subplots(1 + n_images, n_filters, squeeze=False,
                                 figsize=(1.5 * n_filters + 0.6, 1.5 * (1 + n_images) + 0.4))
    for j, f in enumerate(filters):
        axes[0, j].imshow(visualisations[j].detach().cpu().permute(1, 2, 0).clamp(0, 1).numpy())
        axes[0, j].set_title(f"filter {f}", fontsize=8)
        for i in range(n_images):
            ax = axes[1 + i, j]
            ax.imshow(images[i].detach().cpu().permute(1, 2, 0).clamp(0, 1).numpy() * 0.5)
            ax.imshow((maps[i, j] / scale[j]).clamp(0, 1).numpy(), cmap="inferno", vmin=0, vmax=1,
                      alpha=OVERLAY_ALPHA)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_ylabel("ascent", fontsize=8)
    for i in range(n_images):
        axes[1 + i, 0].set_ylabel(f"image {i}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI, bbox_inches="tight", metadata={"Software": None})  # rebuilds are byte-identical
    return fig


def filters_figure(model: nn.Module, spec: ModelSpec, images_x: Tensor, path: str | Path, *, layer: str | None = None,
                   filters: Sequence[int] | None = None, n_filters: int = 8, n_images: int = 4, steps: int = 128,
                   seed: int = 0, **ascent: Any) -> dict:
    """Visualise filters of ``layer`` and their maps on the first ``n_images`` of ``images_x``; write a PNG.

    ``images_x``: (N, 3, H, W) preprocessed as ``spec`` does, on the model's device. ``layer``
    defaults to ``spec.gradcam_layer``; ``filters`` to the ``n_filters`` most active on the images
    (:func:`bench.filters.activations.most_active_filters`). Extra keywords go to
    :func:`visualise_filters` (lr, jitter, blur_every, blur_sigma, tv_weight, chunk_size).
    Returns the settings and, per filter, its mean activation on the start image and on its
    visualisation (the gain the ascent made), JSON-ready.
    """
    layer = layer or spec.gradcam_layer
    if not layer:
        raise FilterError(f"model {spec.name} names no Grad-CAM layer; pass a layer")
    images_x = images_x[:n_images].to(model_device(model))
    if filters is None:
        filters = most_active_filters(model, layer, images_x, n_filters)
    filters = list(filters)
    visualisations = visualise_filters(model, layer, filters, input_size=spec.input_size, mean=spec.mean, std=spec.std,
                                       steps=steps, seed=seed, **ascent)
    before = _own_filter_means(model, layer, filters, spec.preprocess(start_image(len(filters), spec.input_size, seed)
                                                                      .to(visualisations.device)))
    after = _own_filter_means(model, layer, filters, spec.preprocess(visualisations))
    activations = filter_activations(model, layer, filters, images_x)
    title = f"{spec.name}: filters of {layer} (top: gradient ascent, {steps} steps; below: activations on images)"
    plt.close(plot_filters(visualisations, activations, spec.unpreprocess(images_x), filters, title=title, path=path))
    return {"model": spec.name, "layer": layer, "filters": filters, "steps": steps, "seed": seed,
            "n_images": int(images_x.shape[0]), "ascent": dict(ascent), "figure": Path(path).name,
            "activation_start": [round(float(v), 6) for v in before],
            "activation_visualised": [round(float(v), 6) for v in after]}


def report_page(model: nn.Module, spec: ModelSpec, images_x: Tensor, out_dir: str | Path, *, name: str | None = None,
                **options: Any) -> Path:
    """The filters page of one architecture for the run report: ``out_dir/filters_<name>.png``.

    ``name`` (default ``spec.name``) names the file: pass the zoo entry name when two entries
    share an architecture. A JSON sidecar ``filters_<name>.json`` records the layer, filters,
    settings and activation gains (see :func:`filters_figure`, which receives ``options``).
    Returns the PNG's path; the report embeds it as an image.
    """
    stem = f"filters_{name or spec.name}"
    out_dir = Path(out_dir)
    path = out_dir / f"{stem}.png"
    summary = filters_figure(model, spec, images_x, path, **options)
    (out_dir / f"{stem}.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return path


def _own_filter_means(model: nn.Module, layer: str, filters: list[int], x: Tensor) -> Tensor:
    """Row i's mean activation of filter ``filters[i]``: (F, 3, H, W) -> (F,)."""
    maps = filter_activations(model, layer, filters, x)
    return maps[torch.arange(len(filters)), torch.arange(len(filters))].mean(dim=(1, 2))
