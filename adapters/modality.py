"""Which kind of input a model takes: the one switch between the image and the text contracts.

Images: x is float (N, C, H, W), maps are (N, 1, H, W). Text: x is token ids (N, L), long, with
the attention mask carried by the ids themselves (a position holding the model's pad id is masked
out, see :class:`adapters.token_model.TokenClassifier`), and maps are (N, L). A model says it takes
tokens with a ``modality = "text"`` attribute; every other model takes images.
"""
from __future__ import annotations

from torch import nn

MODALITIES: tuple[str, ...] = ("image", "text")
WHAT = {"image": "images (N, C, H, W)", "text": "token ids (N, L)"}


def modality_of(model: nn.Module) -> str:
    """``"text"`` for a token model (``model.modality == "text"``), else ``"image"``."""
    return "text" if getattr(model, "modality", "image") == "text" else "image"


def is_token_model(model: nn.Module) -> bool:
    return modality_of(model) == "text"
