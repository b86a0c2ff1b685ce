"""What the optimiser maximises, per row: the target's score on the perturbed input(s).

The model's output y (B, K) (or (B, K, ...) for dense outputs, averaged over the trailing
dimensions) is read at each row's own target, so rows of different images and classes share one
batch. ``logit`` is y_t; ``contrastive`` is y_t - max_{k != t} y_k, computed per row (TorchRay's
version broadcasts to a rows x rows matrix and mixes rows in its logged values; its gradient of
the summed energy is the per-row one, which is what we compute). Variants: ``preserve`` scores the
input perturbed outside the mask (+score), ``delete`` the input perturbed inside it (-score),
``dual`` both (score of the preserved minus score of the deleted).
"""
from __future__ import annotations

import torch
from torch import Tensor

REWARDS: tuple[str, ...] = ("logit", "contrastive")
VARIANTS: tuple[str, ...] = ("preserve", "delete", "dual")


def target_score(output: Tensor, target: Tensor, reward: str) -> Tensor:
    """output (B, K, ...), target (B,) -> score (B,)."""
    picked = output.gather(1, target.reshape(-1, *([1] * (output.dim() - 1))).expand(-1, 1, *output.shape[2:]))
    picked = picked.squeeze(1)
    if reward == "contrastive":
        is_target = torch.zeros_like(output, dtype=torch.bool).scatter_(
            1, target.reshape(-1, *([1] * (output.dim() - 1))).expand(-1, 1, *output.shape[2:]), True)
        others = output.masked_fill(is_target, float("-inf")).amax(dim=1)
        picked = picked - others
    elif reward != "logit":
        raise ValueError(f"unknown reward {reward!r}; choose one of {list(REWARDS)}")
    return picked.reshape(picked.shape[0], -1).mean(dim=1)


def variant_reward(output: Tensor, target: Tensor, reward: str, variant: str) -> Tensor:
    """Reward per row (R,) from the model's output on the variant's batch.

    ``preserve`` and ``delete``: output (R, K, ...) on the R perturbed inputs. ``dual``: output
    (2R, K, ...), the R preserved inputs first, then the R deleted ones.
    """
    if variant == "preserve":
        return target_score(output, target, reward)
    if variant == "delete":
        return -target_score(output, target, reward)
    if variant == "dual":
        rows = target.shape[0]
        return target_score(output[:rows], target, reward) - target_score(output[rows:], target, reward)
    raise ValueError(f"unknown variant {variant!r}; choose one of {list(VARIANTS)}")


def model_rows(variant: str) -> int:
    """Model inputs per optimisation row: 2 for ``dual`` (preserved and deleted), else 1."""
    return 2 if variant == "dual" else 1
