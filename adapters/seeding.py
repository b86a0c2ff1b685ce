"""Per-image seeds, so a stochastic map depends on (seed, image) only.

A method that drew from one stream for the whole batch would give an image different noise
depending on which images share its batch and where it sits. Instead every image gets its own
generator, seeded from the method's ``seed`` and the image's bytes: the same image gives the same
map in any batch, at any position, with any chunking; two different images get independent noise.
"""
from __future__ import annotations

import hashlib

import torch
from torch import Tensor

from .checks import check_int


def image_seeds(x: Tensor, seed: int) -> list[int]:
    """One 63-bit seed per image of ``x`` (N, C, H, W), from ``seed`` and the image's float32 bytes."""
    images = x.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy()
    seeds = []
    for image in images:
        digest = hashlib.blake2b(image.tobytes(), digest_size=8, key=int(seed).to_bytes(8, "little", signed=True))
        seeds.append(int.from_bytes(digest.digest(), "little") >> 1)
    return seeds


def generator(seed: int, device: torch.device | str) -> torch.Generator:
    """A generator on ``device`` seeded with ``seed``; its stream equals ``torch.manual_seed(seed)``'s there."""
    return torch.Generator(device=device).manual_seed(seed)


def check_seed(seed: int) -> int:
    # The seed keys a 64-bit hash (``image_seeds``): it must fit a signed 64-bit integer.
    return check_int("seed", seed, -2**63, 2**63 - 1, why="the seed must fit a signed 64-bit integer")
