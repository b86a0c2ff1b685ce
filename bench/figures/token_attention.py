"""The attention page of a text transformer (the exBERT view): for one or two sentences, the
token-to-token attention of every layer and head, the head mean, and [CLS]'s attention rollout.

Each panel is one (T, T) attention matrix over the sentence's real tokens ([PAD] dropped): row =
the attending token, column = the attended one, both labelled with the tokens. The last row of
each sentence shows [CLS]'s rollout over the tokens (the attention_rollout map) as a bar chart.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: the harness runs headless

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

import adapters  # noqa: E402
from adapters.attention import forward_with_attention  # noqa: E402


@torch.no_grad()
def token_attention(model: nn.Module, ids: Tensor) -> tuple[Tensor, list[str], Tensor, Tensor]:
    """(N, layers, heads, T, T) attention, layer names, (N, L) rollout map, predicted classes (N,)."""
    logits, captured = forward_with_attention(model, ids, what="the attention figure")
    rollout = adapters.get("attention_rollout").attribute(model, ids, 0)  # the target does not enter rollout
    return torch.stack(captured.probabilities, dim=1), list(captured.names), rollout, logits.argmax(1)


def token_attention_figure(model: nn.Module, ids: Tensor, out: Path, *,
                           class_names: list[str] | None = None) -> dict[str, Any]:
    """Draw the page for token ids ``ids`` (N, L) of a text model; write ``out`` (PNG) and return a
    summary for the JSON sidecar."""
    attention, names, rollout, predictions = token_attention(model, ids)
    n, layers, heads = attention.shape[:3]
    columns = heads + 1
    figure, axes = plt.subplots(n * (layers + 1), columns, figsize=(2.6 * columns, 2.6 * n * (layers + 1)),
                                squeeze=False)
    sentences = []
    for i in range(n):
        real = (ids[i] != model.pad_id).nonzero()[:, 0]
        tokens = [model.vocab[t] for t in ids[i, real].tolist()]
        sentences.append(" ".join(tokens))
        predicted = int(predictions[i])
        label = class_names[predicted] if class_names and predicted < len(class_names) else str(predicted)
        for layer in range(layers):
            row = axes[i * (layers + 1) + layer]
            panels = list(attention[i, layer]) + [attention[i, layer].mean(0)]
            for column, panel in enumerate(panels):
                ax = row[column]
                ax.imshow(panel[real][:, real].cpu().numpy(), cmap="viridis", vmin=0)
                ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=5)
                ax.set_yticks(range(len(tokens)), tokens, fontsize=5)
                ax.set_title(f"sentence {i} (predicted {label}) layer {layer} "
                             f"{'mean' if column == heads else f'head {column}'}", fontsize=6)
        bar = axes[i * (layers + 1) + layers]
        bar[0].bar(range(len(tokens)), rollout[i, real].cpu().numpy(), color="tab:purple")
        bar[0].set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=5)
        bar[0].set_title("[CLS] attention rollout", fontsize=6)
        for ax in bar[1:]:
            ax.axis("off")
    figure.suptitle("token-to-token attention per layer and head (row attends to column)", fontsize=9)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return {"layers": names, "heads": heads, "sentences": sentences, "predicted": predictions.tolist(),
            "rollout": [rollout[i, ids[i] != model.pad_id].tolist() for i in range(n)]}
