"""Seeded re-initialisation of model blocks, with exact restoration, for the sanity checks.

Blocks come from the model spec: ``[(block name, [qualified module names]), ...]`` ordered from the
logits down (an entry may also name a parameter owned directly by a container, such as a ViT's
``class_token``) (e.g. ``fc``, ``layer4``, ..., ``stem``). A block's parameters and buffers are those of
its modules, recursively; no parameter may belong to two blocks. Parameters outside every block
keep their trained values.

Re-initialisation calls each module's own ``reset_parameters`` (PyTorch's default initialisers,
the analogue of the TF-slim variables' own initialisers Adebayo et al. used), under a seed derived
from ``(seed, block name)``: a block gets the same random weights in the cascading and the
independent check, and the global RNG is left untouched. Parameters owned by a module without
``reset_parameters`` are drawn from N(0, std of the trained tensor).

Batch-norm (any ``_NormBase``: BatchNorm*, SyncBatchNorm, InstanceNorm*) is a choice, ``batchnorm``:

``"reset"`` (default)
    affine weight 1, bias 0, running mean 0, running variance 1 (``reset_parameters``): the block
    is exactly a freshly initialised one, as Quantus does. In eval mode such a BN is the identity
    up to ``1/sqrt(1 + eps)``.
``"keep_stats"``
    affine reset to (1, 0), running statistics kept: what re-initialising TF-slim's trainable
    variables did in the paper (moving averages are not trainable there).
``"keep"``
    batch-norm untouched; only convolutions, linear layers and other parameters are re-drawn.

Other normalisation layers with their own ``reset_parameters`` (LayerNorm, GroupNorm) are reset
to weight 1, bias 0 in every mode: they hold no statistics.

Randomisation works on the model in place and restores every saved tensor bit for bit on exit
(``copy=True`` works on a deep copy instead, leaving the caller's model untouched).
"""
from __future__ import annotations

import copy as _copy
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _NormBase

Blocks = Sequence[tuple[str, Sequence[str]]]
BatchNormMode = Literal["reset", "keep_stats", "keep"]
Mode = Literal["cascading", "independent"]
Order = Literal["top_down", "bottom_up"]

BATCHNORM_MODES: tuple[str, ...] = ("reset", "keep_stats", "keep")
ORDERS: tuple[str, ...] = ("top_down", "bottom_up")


class BlockError(ValueError):
    """Blocks that do not describe the model: missing, unknown module names, overlaps."""


def check_blocks(model: nn.Module, blocks: Blocks | None) -> list[tuple[str, list[nn.Module]]]:
    """Resolve ``blocks`` to modules of ``model``; raise :class:`BlockError` on anything inconsistent."""
    if not blocks:
        raise BlockError("no randomisation blocks: the model spec must list its blocks, ordered from the "
                         "logits down, e.g. [('fc', ['fc']), ('layer4', ['layer4']), ...]")
    modules = dict(model.named_modules())
    parameters: dict[str, nn.Parameter] | None = None  # only for entries that name a parameter, not a module
    owner: dict[int, str] = {}
    seen: set[str] = set()
    resolved: list[tuple[str, list[nn.Module]]] = []
    for entry in blocks:
        if hasattr(entry, "name") and hasattr(entry, "modules"):  # a spec's Block(name, modules) object
            entry = (entry.name, list(entry.modules))
        if not (isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[0], str)
                and isinstance(entry[1], (list, tuple))):
            raise BlockError(f"a block is (name, [module names]), got {entry!r}")
        name, module_names = entry
        if name in seen:
            raise BlockError(f"block name {name!r} appears twice")
        seen.add(name)
        if not module_names:
            raise BlockError(f"block {name!r} lists no modules")
        if parameters is None and any(m not in modules for m in module_names):
            parameters = dict(model.named_parameters())
        unknown = [m for m in module_names if m not in modules and m not in (parameters or {})]
        if unknown:
            raise BlockError(f"block {name!r} names module(s) {unknown} that the model does not have; "
                             f"top-level modules: {[n for n, _ in model.named_children()]}")
        block_modules = [modules[m] if m in modules else _ParameterHolder(parameters[m]) for m in module_names]
        for module in block_modules:
            for pname, param in module.named_parameters():
                if owner.setdefault(id(param), name) != name:
                    raise BlockError(f"parameter {pname!r} of block {name!r} also belongs to block {owner[id(param)]!r}")
        resolved.append((name, block_modules))
    return resolved


class _ParameterHolder(nn.Module):
    """A block entry that names a parameter rather than a module (a ViT's class token, owned by the
    model itself): holds that very tensor, so re-initialising and restoring act on the model's own."""

    def __init__(self, parameter: nn.Parameter) -> None:
        super().__init__()
        self.register_parameter("parameter", parameter)


def block_seed(seed: int, name: str) -> int:
    """The seed a block is re-initialised with: depends on the block, not on the step it is reached at."""
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2**63)


def _tensor_devices(modules: list[nn.Module]) -> set[torch.device]:
    return {t.device for m in modules for t in [*m.parameters(), *m.buffers()]}


def _seed_global_rng(seed: int, devices: set[torch.device]) -> None:
    """``torch.manual_seed(seed)``, but only the CPU generator when every tensor is on the CPU:
    ``manual_seed`` also queues the seeding of CUDA with a captured stack trace when CUDA is not
    initialised, ~1.5 ms a call under pytest, and a cascade seeds once per block."""
    if all(d.type == "cpu" for d in devices):
        torch.default_generator.manual_seed(seed)
    else:
        torch.manual_seed(seed)


def reinitialise(modules: list[nn.Module], seed: int, batchnorm: BatchNormMode = "reset") -> None:
    """Re-draw the parameters (and batch-norm state, per ``batchnorm``) of ``modules`` in place, seeded."""
    if batchnorm not in BATCHNORM_MODES:
        raise ValueError(f"batchnorm must be one of {BATCHNORM_MODES}, got {batchnorm!r}")
    handled: set[int] = set()
    unique: dict[int, nn.Module] = {}
    for module in modules:
        for sub in module.modules():
            unique.setdefault(id(sub), sub)
    devices = _tensor_devices(modules)
    with torch.no_grad(), torch.random.fork_rng(devices=sorted({d.index or 0 for d in devices if d.type == "cuda"})):
        _seed_global_rng(seed, devices)
        for sub in unique.values():
            if isinstance(sub, _NormBase):
                if batchnorm == "reset":
                    sub.reset_parameters()
                elif batchnorm == "keep_stats" and sub.affine:
                    nn.init.ones_(sub.weight)
                    nn.init.zeros_(sub.bias)
                handled.update(id(p) for p in sub.parameters(recurse=False))
            elif callable(getattr(sub, "reset_parameters", None)):
                sub.reset_parameters()
                handled.update(id(p) for p in sub.parameters(recurse=False))
        for sub in unique.values():
            for param in sub.parameters(recurse=False):
                if id(param) not in handled:
                    # No initialiser of its own (e.g. a class token): keep the trained scale, lose the values.
                    std = param.float().std().item() if param.numel() > 1 else 0.0
                    param.normal_(0.0, std if std > 0 else 0.02)
                    handled.add(id(param))


class Snapshot:
    """Saved copies of every parameter and buffer of some modules, restorable bit for bit.

    Entries are keyed by (module, slot, attribute name), so a ``reset_parameters`` that replaces a
    tensor object instead of writing into it is undone too: the original object is put back.
    """

    def __init__(self, modules: list[nn.Module]) -> None:
        self._saved: list[tuple[nn.Module, str, str, Tensor, Tensor]] = []
        seen: set[int] = set()
        for module in modules:
            for sub in module.modules():
                if id(sub) in seen:
                    continue
                seen.add(id(sub))
                for slot in ("_parameters", "_buffers"):
                    for attr, tensor in getattr(sub, slot).items():
                        if tensor is not None:
                            self._saved.append((sub, slot, attr, tensor, tensor.detach().clone()))

    def restore(self) -> None:
        with torch.no_grad():
            for sub, slot, attr, original, saved in self._saved:
                getattr(sub, slot)[attr] = original
                original.copy_(saved)


@contextmanager
def randomised(model: nn.Module, blocks: Blocks, names: Sequence[str] | None = None, *, seed: int = 0,
               batchnorm: BatchNormMode = "reset") -> Iterator[nn.Module]:
    """Context in which the blocks ``names`` (default: all) of ``model`` are re-initialised; restored on exit."""
    resolved = dict(check_blocks(model, blocks))
    names = list(resolved) if names is None else list(names)
    unknown = [n for n in names if n not in resolved]
    if unknown:
        raise BlockError(f"unknown block(s) {unknown}; blocks: {list(resolved)}")
    snapshot = Snapshot([m for n in names for m in resolved[n]])
    try:
        for name in names:
            reinitialise(resolved[name], block_seed(seed, name), batchnorm)
        yield model
    finally:
        snapshot.restore()


def check_options(*, mode: str = "cascading", order: str = "top_down", batchnorm: str = "reset") -> None:
    """Raise ValueError for an unknown mode, order or batch-norm treatment."""
    if mode not in ("cascading", "independent"):
        raise ValueError(f"mode must be 'cascading' or 'independent', got {mode!r}")
    if order not in ORDERS:
        raise ValueError(f"order must be 'top_down' or 'bottom_up', got {order!r}")
    if batchnorm not in BATCHNORM_MODES:
        raise ValueError(f"batchnorm must be one of {BATCHNORM_MODES}, got {batchnorm!r}")


def randomisation_steps(model: nn.Module, blocks: Blocks, *, mode: Mode = "cascading", order: Order = "top_down",
                        seed: int = 0, batchnorm: BatchNormMode = "reset", copy: bool = False
                        ) -> Iterator[tuple[str, nn.Module]]:
    """Yield ``(block name, model)`` once per block, the model randomised for that step.

    ``mode="cascading"``: step k has the first k blocks (in ``order``) randomised, cumulatively.
    ``mode="independent"``: step k has only block k randomised, all others trained.
    ``order="top_down"`` walks the blocks as listed (from the logits down); ``"bottom_up"`` reverses.
    The model is restored exactly when the generator finishes or is closed (use
    ``contextlib.closing`` when breaking out early); with ``copy=True`` a deep copy is randomised.
    """
    check_options(mode=mode, order=order, batchnorm=batchnorm)
    resolved = check_blocks(model, blocks)  # fail before copying anything
    work = _copy.deepcopy(model) if copy else model
    if copy:
        resolved = check_blocks(work, blocks)
    if order == "bottom_up":
        resolved = resolved[::-1]
    snapshot = Snapshot([m for _, modules in resolved for m in modules])
    try:
        for name, modules in resolved:
            if mode == "independent":
                snapshot.restore()
            reinitialise(modules, block_seed(seed, name), batchnorm)
            yield name, work
    finally:
        snapshot.restore()
