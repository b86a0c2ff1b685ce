"""Loading weights: a local state-dict file, a file a spec names (``named_weights``, e.g. shipped in
an installed package), or a torchvision weights member from the torch cache.

Nothing is downloaded: without the cached file the error says where the file was expected.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from .spec import ModelSpec


class WeightsError(ValueError):
    """Weights that cannot be found or do not fit the architecture."""


def load_state_dict_file(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling errors come in many types
        raise WeightsError(f"could not read weights file {path}: {error}") from error
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"weights file {path} does not hold a state dict (got {type(state).__name__})")
    return state


def apply_state_dict(model: nn.Module, state: dict, *, source: str, architecture: str) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or mismatched:
        details = []
        if missing:
            details.append(f"{len(missing)} missing keys (e.g. {missing[:3]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
        if mismatched:
            k = mismatched[0]
            details.append(f"{len(mismatched)} shape mismatches (e.g. {k}: file {tuple(state[k].shape)} "
                           f"vs model {tuple(own[k].shape)})")
        raise WeightsError(f"weights from {source} do not fit architecture {architecture!r}: " + "; ".join(details))
    model.load_state_dict(state, strict=True)


def cached_torchvision_weights(spec: "ModelSpec", member: str) -> Path:
    """Path of a torchvision weights file in the torch cache; a clear error if it is not there."""
    import torchvision

    if spec.torchvision_weights is None:
        raise WeightsError(f"model {spec.name!r} has no torchvision weights; pass a local state-dict file")
    try:
        weights = torchvision.models.get_weight(f"{spec.torchvision_weights}.{member}")
    except (ValueError, KeyError, AttributeError) as error:
        raise WeightsError(f"unknown weights {member!r} for {spec.name} ({spec.torchvision_weights}): {error}") from error
    filename = os.path.basename(weights.url)
    path = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if not path.is_file():
        raise WeightsError(f"torchvision weights {spec.torchvision_weights}.{member} are not in the torch cache "
                           f"(expected {path}); this harness never downloads: copy the file there or pass a "
                           f"local state-dict path")
    return path


def resolve_weights_path(spec: "ModelSpec", weights: str | os.PathLike) -> Path:
    """The file that ``weights`` (a local state-dict path, a name of the spec's ``named_weights`` or a
    torchvision weights member) names."""
    text = str(weights)
    if text in spec.named_weights:
        return Path(spec.named_weights[text]())
    looks_like_path = os.sep in text or text.endswith((".pt", ".pth", ".bin", ".ckpt")) or Path(text).exists()
    path = Path(text) if looks_like_path else cached_torchvision_weights(spec, text)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    return path


def load_weights(model: nn.Module, spec: "ModelSpec", weights: str | os.PathLike) -> None:
    path = resolve_weights_path(spec, weights)
    state = load_state_dict_file(path)
    apply_state_dict(model, state, source=str(path), architecture=spec.name)
