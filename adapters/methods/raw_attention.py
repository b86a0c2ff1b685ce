"""Raw attention: the class token's attention to the patches in the last layer, heads averaged."""
from __future__ import annotations

from torch import Tensor, nn

from ..attention import class_token_maps
from ..base import Cost, Method
from ..budget import DEFAULT_MEMORY_MB, check_batch, check_memory_mb
from ..maps import check_upsampling
from ..registry import register


@register("raw_attention")
class RawAttentionMethod(Method):
    """mean_h A_L[h, 0, prefix:]: the last attention layer's probabilities (the model's own,
    captured by :mod:`adapters.attention`), class token's row, heads averaged, prefix tokens (class,
    distillation, registers) dropped, reshaped to the patch grid and upsampled to the input with
    ``upsample`` (default bilinear, as Grad-CAM).

    The baseline ``last_layer_attn`` of Chefer et al. (hila-chefer/Transformer-Explainability,
    ``baselines/ViT/ViT_LRP.py``) is the same map; it clamps at 0, a no-op on probabilities, and
    hard-codes a 14x14 grid, derived here from the token count and the input size
    (:func:`adapters.tokens.token_grid`). Target-independent: the map ignores ``target``.

    Cost: 1 forward per image. Memory knob: ``batch_size`` images per forward (default: what
    ``memory_mb`` holds, the captured attention included). ``diagnostics``: ``layers``,
    ``n_heads``, ``grid``, ``batch_size``.
    """

    needs_attention = True
    modalities = ("image", "text")  # text: [CLS]'s row over the tokens is the (N, L) map (no upsampling)
    memory_knobs = ("batch_size",)

    def __init__(self, upsample: str = "bilinear", batch_size: int | None = None,
                 memory_mb: float = DEFAULT_MEMORY_MB) -> None:
        super().__init__(upsample=check_upsampling(upsample), batch_size=check_batch("batch_size", batch_size),
                         memory_mb=check_memory_mb(memory_mb))

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        # Each layer reduced to its class-token row, heads averaged, as it is captured: the last is the map.
        return class_token_maps(self, model, x, target, lambda rows, _logits, _target: rows[-1], gradients=False,
                                reduce=lambda probabilities: probabilities[:, :, 0].float().mean(dim=1))

    def cost(self, **context: object) -> Cost:
        return Cost(forward=1)
