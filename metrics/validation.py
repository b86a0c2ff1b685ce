"""Input checks shared by every score: a wrong input is a clear error, never a silent wrong score.

Each check returns the input in the one canonical form the scores use, so a score body never has to
guess shapes: attributions (N, 1, H, W) float on ``x``'s device, masks (N, 1, H, W) bool, substrates
(N, C, H, W) on ``x``'s device.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from adapters import AttributionError, check_inputs


class MetricInputError(ValueError):
    """Bad input to a score (shape, device, dtype, non-finite values, bad parameter value)."""


def check_model_inputs(model: nn.Module, x: Tensor, target: Tensor | int | Sequence[int]) -> Tensor:
    """Validate ``model`` (eval mode), ``x`` (N, C, H, W) on the model's device and ``target``.

    Returns ``target`` as a LongTensor (N,) on ``x``'s device. Reuses the adapters' contract check so
    that methods and scores accept exactly the same inputs.
    """
    try:
        return check_inputs(model, x, target)
    except AttributionError as error:
        raise MetricInputError(str(error)) from None


def check_attributions(attributions: Any, x: Tensor) -> Tensor:
    """Attributions as (N, 1, H, W) float32 on ``x``'s device.

    Accepts (N, 1, H, W), (N, H, W) or (N, C, H, W) with ``x``'s C; a multi-channel map is reduced
    by summing channels, so that all channels of a pixel count as one feature (PROTOCOLS.md, section 2).
    """
    if not isinstance(attributions, Tensor):
        raise MetricInputError(f"attributions must be a torch.Tensor, got {type(attributions).__name__}")
    if attributions.device != x.device:
        raise MetricInputError(f"attributions are on {attributions.device} but x is on {x.device}")
    if not attributions.is_floating_point():
        raise MetricInputError(f"attributions must be floating point, got dtype {attributions.dtype}")
    n, c, h, w = x.shape
    if attributions.dim() == 3:
        attributions = attributions.unsqueeze(1)
    if attributions.dim() != 4 or attributions.shape[0] != n or attributions.shape[2:] != (h, w) \
            or attributions.shape[1] not in (1, c):
        raise MetricInputError(f"attributions must have shape {(n, 1, h, w)} (or {(n, c, h, w)}) to match x "
                               f"of shape {tuple(x.shape)}, got {tuple(attributions.shape)}")
    if not torch.isfinite(attributions).all():
        bad = (~torch.isfinite(attributions)).flatten(1).any(1).nonzero().flatten().tolist()
        raise MetricInputError(f"attributions contain NaN or infinite values (images {bad})")
    if attributions.shape[1] > 1:
        attributions = attributions.sum(1, keepdim=True)
    return attributions.to(torch.float32)


def check_mask(mask: Any, x: Tensor, name: str = "mask") -> Tensor:
    """Ground-truth masks as (N, 1, H, W) bool on ``x``'s device.

    Accepts bool, or numbers that are all 0 or 1, shaped (N, 1, H, W) or (N, H, W). An empty mask is
    allowed here; each localisation score turns it into a documented NaN ("no score").
    """
    if not isinstance(mask, Tensor):
        raise MetricInputError(f"{name} must be a torch.Tensor, got {type(mask).__name__}")
    n, _, h, w = x.shape
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    if mask.dim() != 4 or mask.shape != (n, 1, h, w):
        raise MetricInputError(f"{name} must have shape {(n, 1, h, w)} (or {(n, h, w)}) to match x of shape "
                               f"{tuple(x.shape)}, got {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        if not ((mask == 0) | (mask == 1)).all():
            raise MetricInputError(f"{name} must be boolean or hold only 0 and 1")
        mask = mask != 0
    return mask.to(x.device)


def check_substrate(substrate: Tensor, x: Tensor, name: str = "substrate") -> Tensor:
    """A substrate tensor broadcast to ``x``'s shape (N, C, H, W), on ``x``'s device and dtype.

    Accepts (C, H, W), (1, C, H, W) (one substrate for every image) or (N, C, H, W) (one per image).
    """
    n, c, h, w = x.shape
    if substrate.dim() == 3:
        substrate = substrate.unsqueeze(0)
    if substrate.dim() != 4 or substrate.shape[1:] != (c, h, w) or substrate.shape[0] not in (1, n):
        raise MetricInputError(f"{name} must have shape {(c, h, w)}, {(1, c, h, w)} or {(n, c, h, w)} to match "
                               f"x, got {tuple(substrate.shape)}")
    if substrate.device != x.device:
        raise MetricInputError(f"{name} is on {substrate.device} but x is on {x.device}")
    if not torch.isfinite(substrate).all():
        raise MetricInputError(f"{name} contains NaN or infinite values")
    return substrate.to(x.dtype).expand(n, c, h, w)


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    if value not in choices:
        raise MetricInputError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_logits(logits: Tensor) -> Tensor:
    """``logits`` (N, K) of the model on the clean input, refused if any is NaN or infinite.

    Every score that reads the model compares perturbed outputs with the clean ones; a model that is
    already non-finite on the clean images would turn every score into NaN ("no score") and hide
    the cause, so it is named here, before any perturbed pass.
    """
    bad = (~torch.isfinite(logits)).flatten(1).any(1).nonzero().flatten().tolist()
    if bad:
        # Worded as the adapters' check of the probe's image (adapters.logits), which may fire first.
        shown = ", ".join(str(i) for i in bad[:20]) + (", ..." if len(bad) > 20 else "")
        raise MetricInputError(f"the model's output (logits) is not finite (NaN or inf) for images [{shown}] of the "
                               f"clean input: the model, not the attributions, is at fault")
    return logits
