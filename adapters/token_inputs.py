"""The checks of the text contract, next to the image checks of :func:`adapters.base.check_inputs`.

Token inputs are ids (N, L), long, on the model's device, each in [0, vocab_size), L at most the
model's position count, every row starting with [CLS] (the attention methods read its row). An
``attention_mask`` (N, L) of 0/1 may be given: positions where it is 0 are written as the pad id,
which is how a :class:`adapters.token_model.TokenClassifier` carries the mask (a 1 on a pad position
cannot be expressed, and is refused).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .errors import AttributionError
from .modality import WHAT, modality_of


def check_modality(model: nn.Module, x: object) -> str:
    """The model's modality; a tensor of the other modality's kind is one clear error."""
    modality = modality_of(model)
    if not isinstance(x, Tensor):
        raise AttributionError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if modality == "image" and not x.is_floating_point() and x.dim() == 2:
        raise AttributionError(f"x holds integer token ids of shape {tuple(x.shape)}, but the model takes "
                               f"{WHAT['image']}: give it images, or explain a text model")
    if modality == "text" and (x.is_floating_point() or x.dim() != 2):
        raise AttributionError(f"the model takes {WHAT['text']} (long), got a {x.dtype} tensor of shape "
                               f"{tuple(x.shape)}" + (": images go to an image model" if x.dim() == 4 else ""))
    return modality


def check_token_ids(model: nn.Module, x: Tensor) -> None:
    """Refuse ids the model cannot embed, in one line each (shape and dtype: :func:`check_modality`)."""
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise AttributionError(f"x is an empty batch of token ids, shape {tuple(x.shape)}")
    vocab_size = int(model.vocab_size)
    bad = (x < 0) | (x >= vocab_size)
    if bad.any():
        row, col = (int(v) for v in bad.nonzero()[0])
        raise AttributionError(f"token id {int(x[row, col])} at sentence {row}, position {col} is out of the "
                               f"vocabulary (ids 0..{vocab_size - 1})")
    if x.shape[1] > model.max_length:
        raise AttributionError(f"x has {x.shape[1]} tokens per sentence, more than the model's "
                               f"{model.max_length} positions")
    if (x[:, 0] != model.cls_id).any():
        row = int((x[:, 0] != model.cls_id).nonzero()[0, 0])
        raise AttributionError(f"sentence {row} does not start with [CLS] (id {model.cls_id}), got id {int(x[row, 0])}")


def apply_attention_mask(model: nn.Module, x: Tensor, attention_mask: object) -> Tensor:
    """``x`` with the positions where ``attention_mask`` is 0 written as the pad id (checked)."""
    if not isinstance(attention_mask, Tensor):
        raise AttributionError(f"attention_mask must be a torch.Tensor, got {type(attention_mask).__name__}")
    if tuple(attention_mask.shape) != tuple(x.shape):
        raise AttributionError(f"attention_mask has shape {tuple(attention_mask.shape)} but the token ids have "
                               f"{tuple(x.shape)}: one 0/1 per token")
    if not ((attention_mask == 0) | (attention_mask == 1)).all():
        raise AttributionError("attention_mask must hold only 0 and 1")
    keep = attention_mask.to(device=x.device) != 0
    if (keep & (x == model.pad_id)).any():
        raise AttributionError("attention_mask attends a [PAD] position; the pad id marks masked positions")
    return torch.where(keep, x, torch.full_like(x, model.pad_id))
