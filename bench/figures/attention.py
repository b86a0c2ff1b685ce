"""The attention page of a transformer: for a few images, the class token's attention to the
patches in every layer and head, the head mean, and the attention rollout, as one figure.

It is the exBERT view for images: one row per (image, layer), one column per head, then the
mean over heads; under each image, the rollout of all layers over it. Every panel is the
class token's row of a (T, T) attention matrix with the prefix tokens dropped, on the patch grid.
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
from adapters.modality import is_token_model  # noqa: E402
from adapters.tokens import require_grid  # noqa: E402


@torch.no_grad()
def class_token_attention(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor, list[str], Tensor]:
    """(N, L, heads, h, w) class-token attention per layer and head, (N, 1, H, W) rollout, layer
    names, and the predicted classes (N,)."""
    logits, captured = forward_with_attention(model, x, what="the attention figure")
    probabilities = torch.stack(captured.probabilities, dim=1)  # (N, L, heads, T, T)
    grid = require_grid(probabilities.shape[-1], *x.shape[-2:], "the attention")
    rows = probabilities[:, :, :, 0, grid.prefix:]
    per_head = rows.reshape(*rows.shape[:3], grid.h, grid.w)
    rollout = adapters.get("attention_rollout").attribute(model, x, 0)  # the target does not enter rollout
    return per_head, rollout, list(captured.names), logits.argmax(1)


def attention_figure(model: nn.Module, images: Tensor, x: Tensor, out: Path, *,
                     class_names: list[str] | None = None) -> dict[str, Any]:
    """Draw the attention page of ``model`` on ``x`` (model inputs) shown over ``images`` (N, 3, H, W)
    in [0, 1]; write ``out`` (PNG) and return a summary for the JSON sidecar. A text model's page
    (token ids ``x``; ``images`` unused) is :mod:`bench.figures.token_attention`'s."""
    if is_token_model(model):
        from .token_attention import token_attention_figure

        return token_attention_figure(model, x, out, class_names=class_names)
    per_head, rollout, names, predictions = class_token_attention(model, x)
    n, layers, heads = per_head.shape[:3]
    columns = 1 + heads + 1  # image (and rollout under it), heads, head mean
    figure, axes = plt.subplots(n * layers, columns, figsize=(1.4 * columns, 1.4 * n * layers), squeeze=False)
    for i in range(n):
        picture = images[i].permute(1, 2, 0).clamp(0, 1).cpu().numpy()
        for layer in range(layers):
            row = axes[i * layers + layer]
            if layer == 0:
                row[0].imshow(picture)
            elif layer == 1:  # under the image: the rollout of all layers, over the image
                row[0].imshow(picture)
                row[0].imshow(rollout[i, 0].cpu().numpy(), cmap="magma", alpha=0.6)
                row[0].set_title("rollout", fontsize=7)
            else:
                row[0].axis("off")
            if layer == 0:
                predicted = int(predictions[i])
                row[0].set_title(f"image {i}\npredicted {class_names[predicted] if class_names else predicted}",
                                 fontsize=7)
            maps = list(per_head[i, layer]) + [per_head[i, layer].mean(0)]
            for column, panel in enumerate(maps, start=1):
                row[column].imshow(panel.cpu().numpy(), cmap="viridis")
                if i == 0 and layer == 0:
                    row[column].set_title("mean" if column == heads + 1 else f"head {column - 1}", fontsize=7)
            row[1].set_ylabel(f"layer {layer}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    figure.suptitle("class token's attention to the patches, per layer and head", fontsize=9)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return {"layers": names, "heads": heads, "grid": list(per_head.shape[-2:]), "images": n,
            "predicted": predictions.tolist(), "class_token_attention_max": float(per_head.max())}
