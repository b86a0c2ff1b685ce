"""Token maps in the report: for each text model, one panel per sentence, rows = methods, columns =
the sentence's tokens, each cell coloured by |map| / the row's maximum; evidence tokens (the
ground truth) are underlined in red on the token labels.

The runner stores a text model's maps like an image model's (``maps/*.pt``) with the token ids in
``images`` and the maps (K, L); :func:`split_token_maps` draws those and hands the image files back.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .cells import slug
from .formatting import one_line
from .plotting import plt, save

MAX_SENTENCES = 3


def _vocabulary(model: str) -> tuple[str, ...] | None:
    try:
        from bench.settings import model_spec

        return tuple(model_spec(model).build().vocab)
    except Exception:  # noqa: BLE001 - ids are shown instead of tokens
        return None


def split_token_maps(paths: list[Path], labels: dict[tuple[str, str], str], methods: list[str],
                     directory: Path) -> tuple[list[Path], list[tuple[str, Path]], list[str]]:
    """(image map files left for the saliency grids, (label, figure) per text model, messages)."""
    rest, groups, skipped = [], {}, []
    for path in paths:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - the saliency grid reports unreadable files
            rest.append(path)
            continue
        if data.get("maps") is None or data["maps"].dim() != 2:
            rest.append(path)
            continue
        groups.setdefault((data["model"], data["dataset"]), []).append(data)
    written = []
    for (model, dataset), stored in groups.items():
        try:
            label = labels.get((model, dataset), f"{model} / {dataset}")
            written.append((label, _plot(stored, label, directory / f"token_maps_{slug(model, dataset)}.png", methods)))
        except Exception as error:  # noqa: BLE001 - one bad figure must not cost the report
            skipped.append(one_line(f"token maps of {model}/{dataset}: {type(error).__name__}: {error}"))
    return rest, written, skipped


def _plot(stored: list[dict], label: str, path: Path, methods: list[str]) -> Path:
    by_method = {s["method"]: s for s in stored}
    order = [m for m in methods if m in by_method] + sorted(set(by_method) - set(methods))
    first = by_method[order[0]]
    vocab = _vocabulary(first["model"])
    ids = first["images"]
    n = min(MAX_SENTENCES, len(ids))
    fig, axes = plt.subplots(n, 1, figsize=(0.55 * ids.shape[1] + 2, 0.32 * len(order) * n + 1.0 * n), squeeze=False)
    for r in range(n):
        keep = ids[r] != 0 if vocab is None else np.array([vocab[t] != "[PAD]" for t in ids[r].tolist()])
        tokens = [vocab[t] if vocab else str(t) for t in ids[r][keep].tolist()]
        rows = []
        for method in order:
            values = np.abs(by_method[method]["maps"][r].float().numpy())[keep]
            rows.append(values / values.max() if values.max() > 0 else values)
        ax = axes[r, 0]
        ax.imshow(np.stack(rows), cmap="magma", vmin=0, vmax=1, aspect="auto")
        ax.set_yticks(range(len(order)), order, fontsize=6)
        ax.set_xticks(range(len(tokens)), tokens, rotation=60, fontsize=6)
        masks = first.get("masks")
        if masks is not None:
            for tick, evidence in zip(ax.get_xticklabels(), masks[r][keep].tolist()):
                if evidence:
                    tick.set_color("red")
        target = int(first["targets"][r])
        ax.set_title(f"sentence {r}: target {target}, evidence in red", fontsize=7)
    fig.suptitle(f"{label}: token maps (|map| / its maximum per row)", fontsize=9)
    fig.tight_layout()
    return save(fig, path)
