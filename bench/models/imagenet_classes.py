"""ImageNet-1k class names, read from torchvision's weights metadata (shipped in its code: nothing
is downloaded), in the class-index order every ImageNet classifier of the zoo uses."""
from __future__ import annotations

import functools


@functools.lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 names, index = class ("tench", "goldfish", ..., "toilet tissue")."""
    from torchvision.models import ResNet50_Weights

    return tuple(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])
