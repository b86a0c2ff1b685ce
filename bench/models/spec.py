"""Model specs in the spirit of torchvision's weights API: everything needed to build, feed and
probe one architecture travels with its builder."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from .blocks import Block, stage_blocks
from .weights import load_weights


@dataclass(frozen=True)
class ModelSpec:
    """One architecture.

    ``builder(num_classes)`` returns an untrained model. ``gradcam_layer`` names the module whose
    output Grad-CAM explains; ``blocks`` (if None, derived from the module tree, see
    :func:`bench.models.blocks.stage_blocks`) lists the groups of modules that the randomisation
    checks re-initialise, from the logits down, covering every parameter exactly once.
    ``torchvision_weights`` names the torchvision weights enum (e.g. ``ResNet18_Weights``) whose
    members can be loaded from the user's torch cache. ``named_weights`` maps other weights names
    (``"imagenet"``) to a function returning the file's path, e.g. a file shipped inside an installed
    package; it raises :class:`~bench.models.weights.WeightsError` naming the package when absent.
    ``class_names`` names the output classes (index = class; empty when unknown).
    ``modality``: ``"image"`` (x is (N, C, H, W), ``input_size`` is (H, W)) or ``"text"`` (x is token
    ids (N, L) whose padding is the mask, ``input_size`` is (L,); preprocessing is the identity, the
    tokenizer having made the ids), see :mod:`adapters.modality`.
    """

    name: str
    builder: Callable[[int], nn.Module]
    family: str
    num_classes: int = 1000
    modality: str = "image"
    input_size: tuple[int, ...] = (224, 224)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    gradcam_layer: str = ""
    #: How ``gradcam_layer``'s output is laid out when its shape alone is ambiguous (``"nhwc"`` for
    #: Swin's channels-last grid); None lets the method detect it (adapters/tokens.py).
    gradcam_layout: str | None = None
    blocks: tuple[Block, ...] | None = None
    torchvision_weights: str | None = None
    named_weights: dict[str, Callable[[], Path]] = field(default_factory=dict, compare=False)
    class_names: tuple[str, ...] = field(default=(), repr=False)
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    def with_overrides(self, **changes: Any) -> "ModelSpec":
        """A copy with some fields changed (e.g. ``num_classes=4, input_size=(64, 64)`` for the zoo)."""
        return replace(self, **changes)

    def class_name(self, index: int) -> str:
        """The name of class ``index``, or ``"class <index>"`` when the spec has no names."""
        index = int(index)
        return self.class_names[index] if 0 <= index < len(self.class_names) else f"class {index}"

    def build(self, weights: str | None = None, *, seed: int = 0, device: str | torch.device = "cpu") -> nn.Module:
        """Build the model in eval mode on ``device``.

        ``weights``: None (random init from ``seed``), a path to a local state-dict file, a name of
        ``named_weights`` (``"imagenet"``), or the name of a torchvision weights member (``"DEFAULT"``,
        ``"IMAGENET1K_V1"``) loaded from the torch cache.
        """
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = self.builder(self.num_classes)
        if weights is not None:
            load_weights(model, self, weights)
        return model.eval().to(device)

    def preprocess(self, images: Tensor) -> Tensor:
        """Images in [0, 1], (N, 3, H, W) -> normalised model input at ``input_size``; token ids
        (N, L) of a text model unchanged (checked)."""
        if self.modality == "text":
            if images.dim() != 2 or images.is_floating_point():
                raise ValueError(f"{self.name} takes token ids (N, L), got {images.dtype} of shape "
                                 f"{tuple(images.shape)}")
            return images
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"{self.name} expects RGB images (N, 3, H, W), got shape {tuple(images.shape)}")
        if tuple(images.shape[-2:]) != tuple(self.input_size):
            images = nn.functional.interpolate(images, size=self.input_size, mode="bilinear", align_corners=False,
                                               antialias=True)
        mean = torch.tensor(self.mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        return (images - mean) / std

    def unpreprocess(self, x: Tensor) -> Tensor:
        """Inverse of the normalisation: model input -> images in [0, 1] (clamped); token ids unchanged."""
        if self.modality == "text":
            return x
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * std + mean).clamp(0, 1)

    def randomisation_blocks(self, model: nn.Module) -> list[tuple[str, list[str]]]:
        """Blocks from the logits down as (block name, qualified module names)."""
        blocks = self.blocks if self.blocks is not None else stage_blocks(model, self.input_size)
        return [(b.name, list(b.modules)) for b in blocks]
