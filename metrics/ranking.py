"""Rank pixel positions of attribution maps, with seeded tie-breaking.

A pixel position (all channels together) is one feature. Maps full of ties (Grad-CAM zeros, LIME
segments, constant maps) are common, and ``argsort`` orders ties by memory layout or by an unstable
algorithm, so a score could depend on the sort implementation. Here ties are ordered by a random
permutation drawn from ``seed``: a defined, reproducible order. The permutation is the same for every
image, so an image's order never depends on which other images share the batch.
"""
from __future__ import annotations

import torch
from torch import Tensor


def tie_break_permutation(n_positions: int, seed: int, device: torch.device | str = "cpu") -> Tensor:
    """A permutation of ``range(n_positions)`` drawn from ``seed`` (LongTensor (n_positions,)).

    Drawn on the CPU so that the order is the same whatever the device.
    """
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randperm(n_positions, generator=generator).to(device)


def rank_pixels(attributions: Tensor, seed: int = 0, descending: bool = True) -> Tensor:
    """Pixel positions ordered by attribution, highest first (``descending``), ties by ``seed``.

    attributions: (N, 1, H, W) (or (N, H*W)). Returns a LongTensor (N, H*W) of flat positions
    ``h * W + w``: ``order[i, 0]`` is the most relevant position of image ``i``.
    """
    flat = attributions.reshape(attributions.shape[0], -1)
    permutation = tie_break_permutation(flat.shape[1], seed, flat.device)
    # A stable sort of the permuted values keeps tied values in permutation order.
    _, sorted_in_permuted = torch.sort(flat[:, permutation], dim=1, descending=descending, stable=True)
    return permutation[sorted_in_permuted]


def rank_positions(order: Tensor) -> Tensor:
    """Inverse of :func:`rank_pixels`: ``rank[i, p]`` is the place of position ``p`` in ``order[i]``.

    order: LongTensor (N, P). Returns LongTensor (N, P) with values 0..P-1 (0 = most relevant).
    """
    rank = torch.empty_like(order)
    places = torch.arange(order.shape[1], device=order.device).expand_as(order)
    return rank.scatter_(1, order, places)


def pixel_ranks(attributions: Tensor, seed: int = 0) -> Tensor:
    """Rank of every pixel (0 = most relevant) as (N, 1, H, W), for building perturbation masks."""
    n, _, h, w = attributions.shape
    return rank_positions(rank_pixels(attributions, seed)).view(n, 1, h, w)
