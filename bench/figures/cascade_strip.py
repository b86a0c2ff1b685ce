"""Adebayo et al.'s (2018) Figure 2 for one image: rows = methods, columns = the input, the original
map and the map after each randomised block from the logits down, with the similarity curves beside.

The maps come from the registered ``model_randomisation_cascading`` check itself (``keep_maps``),
with the run's protocol parameters (order, seed, batch-norm treatment), so the strip shows what the
scores measured. Maps are drawn as the paper did and as :func:`bench.figures.sanity.plot_cascade_strip`
does: absolute value, scaled from its minimum to its 99th percentile, clipped (each map on its own).

:func:`write_cascade_strips` is called by the runner after the cells, like the attention pages: one
``figures/cascade_strip_<model>__<dataset>.png`` per (model, dataset) of the grid that has the
cascading check planned for at least one of :data:`PAPER_METHODS`; the report picks them up.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: the harness runs headless

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

import metrics  # noqa: E402
from adapters import AttributionError  # noqa: E402
from metrics import MetricResult  # noqa: E402
from metrics.similarity import abs_unit  # noqa: E402

from .sanity import cascade_frame  # noqa: E402

CASCADE = "model_randomisation_cascading"
#: The methods of the paper's Figure 2 that the harness has, in its row order.
PAPER_METHODS = ("saliency", "smoothgrad", "integrated_gradients", "guided_backprop", "guided_gradcam", "gradcam")
#: The similarity curves drawn beside the maps.
STRIP_MEASURES = ("spearman_abs", "ssim")
MEASURE_LABELS = {"spearman_abs": "Spearman of |map|", "spearman": "Spearman", "ssim": "SSIM", "hog": "HOG Spearman"}


def cascade_strips(results: dict[str, MetricResult], image: Tensor, *, title: str, path: str | Path | None = None,
                   index: int = 0, measures: Sequence[str] = STRIP_MEASURES) -> plt.Figure:
    """Draw the strip of image ``index`` from cascading results run with ``keep_maps=True``.

    ``results``: method name -> result, in row order (a result without maps is skipped);
    ``image``: (3, H, W) in [0, 1]. The curves beside the maps are image ``index``'s similarity to its
    original map for each ``measure``, one line per method, step 0 = the original (similarity 1).
    """
    rows = {name: result for name, result in results.items() if "maps" in result.extras}
    if not rows:
        raise ValueError("no cascading result with maps (run the check with keep_maps=True)")
    blocks = list(next(iter(rows.values())).extras["block_names"])
    columns = 2 + len(blocks)
    fig = plt.figure(figsize=(1.25 * columns + 4.2, 1.3 * len(rows) + 0.9))
    grid = fig.add_gridspec(len(rows), columns + 1, width_ratios=[1] * columns + [3.4], wspace=0.04, hspace=0.08)
    shown_image = image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
    for r, (name, result) in enumerate(rows.items()):
        maps = result.extras["maps"][index][:, None]  # (B, 1, H, W)
        original = result.extras.get("original_maps")  # absent: the original column stays empty
        stack = maps if original is None else torch.cat([original[index].reshape(1, 1, *maps.shape[-2:]), maps])
        shown, _ = abs_unit(stack.float().cpu())
        panels = {block: shown[k + (original is not None)] for k, block in enumerate(blocks)}
        if original is not None:
            panels = {"original": shown[0], **panels}
        axes = [fig.add_subplot(grid[r, c]) for c in range(columns)]
        axes[0].imshow(shown_image)
        axes[0].set_ylabel(name, fontsize=8)
        for ax, label in zip(axes[1:], ["original", *blocks]):
            if label in panels:
                ax.imshow(torch.nan_to_num(panels[label]).numpy(), cmap="gray", vmin=0.0, vmax=1.0)
            if r == 0:
                ax.set_title(label if label == "original" else f"-> {label}", fontsize=7)
        if r == 0:
            axes[0].set_title("input", fontsize=7)
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
    curves = grid[:, columns].subgridspec(len(measures), 1, hspace=0.5)
    for k, measure in enumerate(measures):
        ax = fig.add_subplot(curves[k])
        for name, result in rows.items():
            frame = cascade_frame(result, "", name, measures=[measure])
            frame = frame[frame["image"] == index].sort_values("n_randomised")
            ax.plot(frame["n_randomised"], frame["similarity"], marker="o", ms=3, lw=1.3, label=name)
        ax.axhline(0.0, color="grey", lw=0.5)
        ax.set_ylim(-0.25, 1.05)
        ax.yaxis.tick_right()  # the maps' column sits on the left: keep the labels clear of it
        ax.set_title(f"similarity to the original map: {MEASURE_LABELS.get(measure, measure)}", fontsize=8)
        ax.set_xticks(range(len(blocks) + 1))
        ax.set_xticklabels(["original", *blocks] if k == len(measures) - 1 else [], rotation=45, ha="right",
                           fontsize=6)
        ax.tick_params(axis="y", labelsize=6)
        if k == 0:
            ax.legend(fontsize=6, frameon=False, loc="lower left")
    fig.suptitle(title, fontsize=9)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})
    return fig


def run_cascades(model: torch.nn.Module, x: Tensor, target: Tensor, methods: dict[str, Any], blocks: Any,
                 params: dict[str, Any] | None = None) -> tuple[dict[str, MetricResult], dict[str, Exception]]:
    """The cascading check with ``keep_maps`` for each method: (results, errors by method); the
    original maps are kept in ``extras["original_maps"]`` (N, H, W)."""
    spec = metrics.get(CASCADE)
    checked = spec.check_params({**(params or {}), "keep_maps": True})
    results, errors = {}, {}
    for name, method in methods.items():
        try:
            original = method.attribute(model, x, target)
            result = spec.compute(model=model, x=x, target=target, attributions=original, method=method,
                                  blocks=blocks, **checked)
        except Exception as error:  # noqa: BLE001 - a method that cannot run here is a missing row
            errors[name] = error
            continue
        result.extras["original_maps"] = original[:, 0].detach().cpu()
        results[name] = result
    return results, errors


def write_cascade_strips(config: Any, run_dir: Path, n_images: int = 1) -> list[str]:
    """One strip per (model, dataset) of the grid with the cascading check planned for a paper
    method; failures are returned (for the driver to print), not raised."""
    from ..device import resolve_device
    from ..grid import build_method, load_subject, plan
    from ..settings import model_spec

    if CASCADE not in config.metrics:
        return []
    device = resolve_device(config.device)
    wanted: dict[tuple[str, str], list[str]] = {}
    for group in plan(config):
        if group.method in PAPER_METHODS and CASCADE in group.metrics:
            wanted.setdefault((group.model, group.dataset), []).append(group.method)
    failures = []
    for (model_name, dataset), names in sorted(wanted.items()):
        try:
            subject = load_subject(config, model_name, dataset, device.torch_device)
            spec = model_spec(model_name)
            k = min(n_images, len(subject.x))
            methods = {name: build_method(config, name, subject) for name in PAPER_METHODS if name in names}
            results, errors = run_cascades(subject.model, subject.x[:k], subject.targets[:k], methods,
                                           subject.blocks, config.metrics[CASCADE])
            # A method that refuses the architecture (AttributionError) is a row the grid does not have either.
            failures += [f"cascade strip for {model_name}/{dataset}: {name} left out: {type(why).__name__}: {why}"
                         for name, why in errors.items() if not isinstance(why, AttributionError)]
            if not results:
                continue
            target = int(subject.targets[0])
            title = (f"{model_name} on {dataset} image 0, explaining '{spec.class_name(target)}': maps after "
                     f"randomising blocks from the logits down")
            out = run_dir / "figures" / f"cascade_strip_{model_name.replace('/', '_')}__{dataset}.png"
            plt.close(cascade_strips(results, subject.images[0], title=title, path=out))
        except Exception as error:  # a view is a nice-to-have: never lose the run for it
            failures.append(f"cascade strip for {model_name}/{dataset} failed: {type(error).__name__}: {error}")
    return failures
