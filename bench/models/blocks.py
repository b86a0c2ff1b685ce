"""Randomisation blocks: groups of modules re-initialised together by the sanity checks.

Blocks follow the paper's granularity (a ResNet stage, a VGG conv group, the classifier), not every
module. For architectures built as a sequence of stages, :func:`stage_blocks` derives them from
the module tree: consecutive top-level modules (with a ``features`` container expanded) that
produce the same spatial resolution form one block; modules after the last spatial output form
the head. Parameter-free modules are dropped.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Block:
    name: str
    modules: tuple[str, ...]


def _top_level(model: nn.Module) -> list[tuple[str, nn.Module]]:
    units: list[tuple[str, nn.Module]] = []
    for name, child in model.named_children():
        if name == "features" and isinstance(child, nn.Sequential):
            units.extend((f"features.{sub}", grandchild) for sub, grandchild in child.named_children())
        else:
            units.append((name, child))
    return units


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


@torch.no_grad()
def stage_blocks(model: nn.Module, input_size: tuple[int, int]) -> tuple[Block, ...]:
    """Derive blocks from the order of execution and the resolution of each top-level unit's output."""
    units = _top_level(model)
    resolution: dict[str, tuple[int, ...]] = {}
    order: list[str] = []
    handles = []
    for name, module in units:
        def hook(_m, _inp, out, name=name):
            if name not in resolution:
                resolution[name] = tuple(out.shape[2:]) if out.dim() == 4 else ()
                order.append(name)
        handles.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        model(torch.zeros(1, 3, *input_size, device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    groups: list[tuple[tuple[int, ...], list[str]]] = []
    for name in order:
        res = resolution[name]
        if groups and groups[-1][0] == res:
            groups[-1][1].append(name)
        else:
            groups.append((res, [name]))
    modules = dict(units)
    blocks = []
    for res, names in groups:
        with_params = [n for n in names if _has_params(modules[n])]
        if not with_params:
            continue
        label = "head" if res == () else (with_params[0] if len(with_params) == 1 else f"{with_params[0]}..{with_params[-1]}")
        blocks.append(Block(label, tuple(with_params)))
    # Units that never ran in forward (none in the zoo) would escape the checks: fail loudly.
    covered = {n for b in blocks for n in b.modules}
    missed = [n for n, m in units if _has_params(m) and n not in covered]
    if missed:
        raise ValueError(f"modules with parameters were not executed in forward and have no block: {missed}")
    return tuple(reversed(blocks))
