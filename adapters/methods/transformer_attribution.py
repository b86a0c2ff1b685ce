"""Chefer, Gur & Wolf (ICCV 2021): gradient-weighted attention accumulated over the layers."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..attention import class_token_maps, class_token_product
from ..base import Cost, Method
from ..budget import DEFAULT_MEMORY_MB, check_batch, check_memory_mb
from ..maps import check_upsampling
from ..registry import register


def relevance_matrices(probabilities: list[Tensor], logits: Tensor, target: Tensor) -> list[Tensor]:
    """Per layer Ā = mean_h((dy/dA ⊙ A)^+), (n, T, T), y the target logit of each image.

    One backward of the sum of the images' target logits: the images do not interact in a
    transformer, so each image's A gets the gradient of its own target logit only.
    """
    target_logits = logits.gather(1, target[:, None]).sum()
    grads = torch.autograd.grad(target_logits, probabilities, allow_unused=True, materialize_grads=True)
    return [(grad.float() * layer.detach().float()).clamp(min=0).mean(dim=1)
            for grad, layer in zip(grads, probabilities)]


@register("transformer_attribution")
class TransformerAttributionMethod(Method):
    """Generic attention-model explainability (Chefer, Gur, Wolf, "Generic Attention-model
    Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers", ICCV 2021), the
    self-attention rules: per layer in forward order Ā_l = mean_h((∇A_l ⊙ A_l)^+) (rule 5) and
    R <- R + Ā_l R from R = I (rule 6), ∇A_l = d y_target / d A_l; the map is the class token's row
    of R over the patches (prefix tokens dropped), reshaped to the patch grid and upsampled to the
    input with ``upsample`` (default bilinear, as Grad-CAM). A_l are the model's own attention
    probabilities, their gradients taken through them (:mod:`adapters.attention`).

    Reference code: hila-chefer/Transformer-MM-Explainability, ``Transformer_MM_explainability_ViT.ipynb``
    (``avg_heads``, ``apply_self_attention_rules``, ``generate_relevance``). Same rules and
    read-out; it explains one image (batch element 0) with a 14x14 grid and min-max scales the
    upsampled map for display. Here: batched (one backward of the sum of the images' target logits),
    the grid derived from the token count and input size, no min-max scaling, and the product
    evaluated as row 0 from the last layer down (R = Π(I + Ā_l), same value up to rounding). The
    target is the given class, not the argmax.

    Cost: 1 forward + 1 backward per image (the backward reaches the attention probabilities, not
    the weights). Memory knob: ``batch_size`` images per pass (default: what ``memory_mb`` holds,
    the captured attention and its gradient included). ``diagnostics``: ``layers``, ``n_heads``,
    ``grid``, ``batch_size``.
    """

    needs_attention = True
    modalities = ("image", "text")  # text: [CLS]'s row over the tokens is the (N, L) map (no upsampling)
    memory_knobs = ("batch_size",)

    def __init__(self, upsample: str = "bilinear", batch_size: int | None = None,
                 memory_mb: float = DEFAULT_MEMORY_MB) -> None:
        super().__init__(upsample=check_upsampling(upsample), batch_size=check_batch("batch_size", batch_size),
                         memory_mb=check_memory_mb(memory_mb))

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        def row(probabilities: list[Tensor], logits: Tensor, target: Tensor) -> Tensor:
            return class_token_product(relevance_matrices(probabilities, logits, target), lambda r, m: r + r @ m)

        return class_token_maps(self, model, x, target, row, gradients=True)

    def cost(self, **context: object) -> Cost:
        return Cost(forward=1, backward=1)
