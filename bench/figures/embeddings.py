"""The course report's embedding figures for a text model (files ``embedding_*``).

- :func:`embedding_projection_figure`: contextual embeddings of chosen words across many sentences,
  projected to 2-D by PCA per layer (one column per layer), coloured by word (top row) and by the
  sentence's class (bottom row).
- :func:`embedding_distance_figure`: per layer, the mean Euclidean and cosine distance between the
  embeddings of one word in different sentences, against the distance to other words
  (:func:`bench.figures.embedding_space.word_distances`); the table is returned (and written as CSV).
"""
from __future__ import annotations

import csv
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")  # files only: the harness runs headless

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from .embedding_space import hidden_states, occurrences, pca_2d, word_distances  # noqa: E402


def embedding_projection_figure(model: nn.Module, ids: Tensor, labels: Tensor, words: Sequence[str], out: Path, *,
                                class_names: Sequence[str] = (), per_word: int = 60, seed: int = 0) -> dict[str, Any]:
    """Scatter of the PCA projections per layer; returns how many occurrences each word had."""
    known = [w for w in words if w in model.token_ids]
    if not known:
        raise KeyError(f"none of the words {list(words)} is in the model's vocabulary")
    found = {w: occurrences(ids, model.token_ids[w], per_word, seed) for w in known}
    found = {w: f for w, f in found.items() if len(f)}
    states = hidden_states(model, ids)
    where = torch.cat(list(found.values()))
    word_of = torch.cat([torch.full((len(f),), k) for k, f in enumerate(found.values())])
    class_of = labels[where[:, 0]]
    layers = states.shape[0]
    figure, axes = plt.subplots(2, layers, figsize=(3.0 * layers, 6.0), squeeze=False)
    palette = plt.get_cmap("tab10")
    for layer in range(layers):
        points = pca_2d(states[layer][where[:, 0], where[:, 1]]).numpy()
        for k, word in enumerate(found):
            pick = (word_of == k).numpy()
            axes[0, layer].scatter(points[pick, 0], points[pick, 1], s=6, color=palette(k % 10), label=word)
        for c in sorted(set(class_of.tolist())):
            pick = (class_of == c).numpy()
            name = class_names[c] if c < len(class_names) else f"class {c}"
            axes[1, layer].scatter(points[pick, 0], points[pick, 1], s=6, color=palette(c % 10), label=name)
        title = "embeddings" if layer == 0 else f"layer {layer - 1}"
        axes[0, layer].set_title(f"{title}: by word", fontsize=8)
        axes[1, layer].set_title(f"{title}: by class", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    axes[0, -1].legend(fontsize=6, markerscale=2, loc="best")
    axes[1, -1].legend(fontsize=6, markerscale=2, loc="best")
    figure.suptitle("contextual embeddings of chosen words, PCA to 2-D per layer", fontsize=9)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return {"words": {w: len(f) for w, f in found.items()}, "layers": layers, "sentences": len(ids)}


def embedding_distance_figure(model: nn.Module, ids: Tensor, word: str, out: Path, *, seed: int = 0) -> list[dict]:
    """Lines over the layers: same word vs different words, Euclidean and cosine; writes ``out``
    (PNG) and ``out`` with suffix .csv (the table), returns the table's rows."""
    rows = [asdict(r) for r in word_distances(model, ids, word, seed=seed)]
    layers = [r["layer"] for r in rows]
    names = ["embeddings" if layer == 0 else f"layer {layer - 1}" for layer in layers]
    figure, axes = plt.subplots(1, 2, figsize=(8.0, 3.2))
    for ax, kind in zip(axes, ("euclidean", "cosine")):
        ax.plot(layers, [r[f"same_{kind}"] for r in rows], marker="o", label=f"{word!r} in different sentences")
        ax.plot(layers, [r[f"different_{kind}"] for r in rows], marker="s", label=f"{word!r} vs other words")
        ax.set_xticks(layers, names, fontsize=7)
        ax.set_ylabel(f"mean {kind} distance", fontsize=8)
        ax.legend(fontsize=7)
    figure.suptitle(f"contextual embeddings of {word!r}: distances per layer", fontsize=9)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    with open(out.with_suffix(".csv"), "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows
