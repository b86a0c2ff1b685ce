"""Which torch functions a model's forward calls, from which module, on the way to the logits.

Captum's propagation methods (DeepLift, Deconvolution, Guided Backprop, LRP) change the backward
pass only at certain *modules*; a function called outside them (``F.relu`` in a ``forward``, a
residual ``out += identity``, the softmax inside ``nn.MultiheadAttention``) gets the plain gradient,
silently. :func:`forward_ops` finds those calls, so such a method can refuse the model with a
message naming the function and the module whose ``forward`` called it.

One forward of ``x[:1]`` under a :class:`torch.overrides.TorchFunctionMode` (it sees each torch
function, tensor method and operator once, at the outermost call: ``nn.ReLU`` shows as one
``relu``), with forward hooks that keep the stack of running modules. Calls whose output does not
reach the logits' autograd graph (a mask computed from ``x``, a shape) are dropped. The hooks are
removed afterwards and parameters, flags and buffers are not touched; the result depends on the
architecture and the input shape only, so it is cached like :func:`adapters.probe.probe`.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from .errors import AttributionError


@dataclass(frozen=True)
class OpCall:
    """One torch function on the gradient path to the logits, and the innermost module running it."""

    op: str  # the function's name as torch dispatches it: "relu", "add_", "gelu", "layer_norm"
    module: str  # dotted name ("" is the model's own forward)
    module_type: type
    leaf: bool  # whether that module has no submodules (its own code called the function)


_CACHE: "weakref.WeakKeyDictionary[nn.Module, dict[tuple, tuple[OpCall, ...]]]" = weakref.WeakKeyDictionary()


def forward_ops(model: nn.Module, x: Tensor) -> tuple[OpCall, ...]:
    """Distinct (op, module) calls of ``model``'s forward on ``x[:1]`` that reach the logits, in first-call order."""
    structure = tuple((name, type(module)) for name, module in model.named_modules())
    key = (tuple(x.shape[1:]), x.dtype, x.device, structure)
    per_model = _CACHE.setdefault(model, {})
    if key not in per_model:
        per_model[key] = _scan(model, x[:1].detach())
    return per_model[key]


class _Recorder(TorchFunctionMode):
    def __init__(self, stack: list[nn.Module]) -> None:
        super().__init__()
        self.stack = stack
        self.records: list[tuple[str, nn.Module, list[Any]]] = []

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        outputs = out if isinstance(out, (tuple, list)) else (out,)
        grad_fns = [t.grad_fn for t in outputs if isinstance(t, Tensor) and t.grad_fn is not None]
        if grad_fns:
            self.records.append((getattr(func, "__name__", repr(func)), self.stack[-1], grad_fns))
        return out


def _reachable(root: Any) -> set[Any]:
    seen, todo = {root}, [root]
    while todo:
        for parent, _ in todo.pop().next_functions:
            if parent is not None and parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return seen


def _scan(model: nn.Module, x1: Tensor) -> tuple[OpCall, ...]:
    names = {module: name for name, module in model.named_modules()}
    stack: list[nn.Module] = [model]
    handles = []

    def enter(module: nn.Module, _inputs: object) -> None:
        stack.append(module)

    def leave(_module: nn.Module, _inputs: object, _output: object) -> None:
        stack.pop()

    for module in model.modules():
        if module is not model:
            handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    recorder = _Recorder(stack)
    try:
        with torch.enable_grad(), recorder:
            logits = model(x1.requires_grad_())
    except Exception as error:  # noqa: BLE001 - the probe ran this model already: report, do not hide
        raise AttributionError(f"the model failed while its functions were listed: "
                               f"{type(error).__name__}: {error}") from error
    finally:
        for handle in handles:
            handle.remove()
    if not isinstance(logits, Tensor) or logits.grad_fn is None:
        return ()
    reachable = _reachable(logits.grad_fn)
    calls: dict[tuple[str, nn.Module], OpCall] = {}
    for op, module, grad_fns in recorder.records:
        if (op, module) not in calls and any(fn in reachable for fn in grad_fns):
            leaf = not any(True for _ in module.children())
            calls[(op, module)] = OpCall(op, names.get(module, "?"), type(module), leaf)
    return tuple(calls.values())


def where(call: OpCall) -> str:
    """How a message names the place of a call: "'layer1.0' (BasicBlock)" or "the model's forward (Net)"."""
    if call.module:
        return f"{call.module!r} ({call.module_type.__name__})"
    return f"the model's own forward ({call.module_type.__name__})"
