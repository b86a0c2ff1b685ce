"""Attention rollout (Abnar & Zuidema 2020): attention propagated through the residual layers."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from ..attention import class_token_maps, class_token_product
from ..base import Cost, Method
from ..budget import DEFAULT_MEMORY_MB, check_batch, check_memory_mb
from ..checks import check_choice, check_float
from ..maps import check_upsampling
from ..registry import register

#: Head fusions (n, heads, T, T) -> (n, T, T).
HEAD_FUSIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "mean": lambda a: a.mean(dim=1),
    "max": lambda a: a.amax(dim=1),
    "min": lambda a: a.amin(dim=1),
}


def discard_smallest(fused: Tensor, ratio: float) -> Tensor:
    """``fused`` (n, T, T) with, per image, the ``floor(ratio * (T*T - T))`` smallest entries outside
    the class token's row (row 0) set to 0; ties go to the lower flat index (stable sort), so
    the result does not depend on the batch."""
    n, t, _ = fused.shape
    rest = fused[:, 1:].reshape(n, -1)
    k = int(ratio * rest.shape[1])
    if k == 0:
        return fused
    smallest = rest.argsort(dim=1, stable=True)[:, :k]
    kept = rest.scatter(1, smallest, 0.0)
    return torch.cat([fused[:, :1], kept.reshape(n, t - 1, t)], dim=1)


def rollout_matrix(layer: Tensor, head_fusion: str, discard_ratio: float) -> Tensor:
    """One layer's (n, heads, T, T) probabilities -> its rollout factor (n, T, T): heads fused,
    smallest entries discarded, identity added (the residual), rows renormalised to 1."""
    fused = HEAD_FUSIONS[head_fusion](layer.float())
    if discard_ratio > 0:
        fused = discard_smallest(fused, discard_ratio)
    # In place: every head fusion is a reduction, so ``fused`` is a new tensor, never the
    # captured probabilities. The identity on the diagonal, then the rows renormalised.
    fused.diagonal(dim1=-2, dim2=-1).add_(1.0)
    return fused.div_(fused.sum(dim=-1, keepdim=True))


def rollout_matrices(probabilities: list[Tensor], head_fusion: str, discard_ratio: float) -> list[Tensor]:
    """The (n, T, T) matrices whose product is the rollout, one per layer (:func:`rollout_matrix`)."""
    return [rollout_matrix(layer, head_fusion, discard_ratio) for layer in probabilities]


@register("attention_rollout")
class AttentionRolloutMethod(Method):
    """Attention rollout (Abnar & Zuidema, "Quantifying attention flow in transformers", ACL 2020):
    per layer l, Ã_l = rownorm(fuse_h(A_l) + I), R = Ã_L ... Ã_1, and the map is the class token's
    row of R over the patches (prefix tokens dropped), reshaped to the patch grid and upsampled to
    the input with ``upsample`` (default bilinear, as Grad-CAM). A_l are the model's own attention
    probabilities (:mod:`adapters.attention`). Target-independent: the map ignores ``target``.

    ``head_fusion``: "mean" (the paper's, default), "max" or "min" over the heads.
    ``discard_ratio`` in [0, 1): per image and layer, that fraction of the fused matrix's entries
    outside the class token's row, the smallest, are set to 0 before the identity is added (as in
    jacobgil/vit-explain); 0 (default) discards nothing.

    Differences from jacobgil/vit-explain ``vit_rollout.py``, whose defects these are: the discard
    is per image (it pools the batch's indices and writes them into image 0), never touches the
    class token's row (it ranks all T*T entries and exempts only [CLS, CLS], so the row the map is
    read from can be emptied), and ranks ties stably; rows are renormalised with keepdim (it divides
    column j by row j's sum, which is wrong once rows do not sum to 1: max/min fusion, discard).
    (A + I) / 2 then renormalised is rownorm(A + I), so the paper's and vit-explain's identity
    agree. The map is not divided by its max (vit-explain) nor min-max scaled. The product is
    evaluated as row 0 from the last layer down (same value up to rounding).

    Cost: 1 forward per image. Memory knob: ``batch_size`` images per forward (default: what
    ``memory_mb`` holds, the captured attention included). ``diagnostics``: ``layers``,
    ``n_heads``, ``grid``, ``batch_size``.
    """

    needs_attention = True
    modalities = ("image", "text")  # text: [CLS]'s row over the tokens is the (N, L) map (no upsampling)
    memory_knobs = ("batch_size",)

    def __init__(self, head_fusion: str = "mean", discard_ratio: float = 0.0, upsample: str = "bilinear",
                 batch_size: int | None = None, memory_mb: float = DEFAULT_MEMORY_MB) -> None:
        super().__init__(head_fusion=check_choice("head_fusion", head_fusion, tuple(HEAD_FUSIONS), what="head fusion"),
                         discard_ratio=check_float("discard_ratio", discard_ratio, 0.0, 1.0, high_open=True),
                         upsample=check_upsampling(upsample), batch_size=check_batch("batch_size", batch_size),
                         memory_mb=check_memory_mb(memory_mb))

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        # Each layer becomes its (n, T, T) factor as it is captured: the heads' tensors do not outlive it.
        def factor(layer: Tensor) -> Tensor:
            return rollout_matrix(layer, self.params["head_fusion"], self.params["discard_ratio"])

        return class_token_maps(self, model, x, target, lambda matrices, _logits, _target:
                                class_token_product(matrices, lambda r, m: r @ m), gradients=False, reduce=factor)

    def cost(self, **context: object) -> Cost:
        return Cost(forward=1)
