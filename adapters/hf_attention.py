"""The attention probabilities of a Hugging Face BERT, captured during the model's own forward.

``BertSelfAttention`` is not ``torch.nn.MultiheadAttention``: with ``attn_implementation="eager"``
(what :func:`adapters.token_model.from_pretrained` and the zoo's BERT use) it computes
``A = softmax(q k^T / sqrt(d) + mask)`` explicitly and returns ``(merged(A @ V), A)``; a forward
hook reads A there (dropout is the identity in eval mode, so it is the probability tensor itself).
SDPA and flash attention return no probabilities: such a model is refused, by name.

With ``keep_graph`` the recorded A is a leaf that requires grad, and the module's output becomes
``output + merged((A - A.detach()) @ V)``: exactly the output (the added term is 0), whose
gradient with respect to A is ``split_heads(grad) @ V^T``, V held fixed, i.e. d(logit)/dA; the
gradients with respect to the input and the weights are those of the plain forward. Padding keys
have probability 0 (the mask is added before the softmax), so rows and columns of [PAD] carry no
attention. Every hook is removed on exit, also on error.

:mod:`adapters.attention` dispatches here; this module does not import it.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn

from .errors import AttributionError

#: Module classes whose forward returns (merged attention output, probabilities) under eager attention.
SELF_ATTENTION_TYPES = ("BertSelfAttention", "RobertaSelfAttention")
SUPPORTED = "transformers' BertSelfAttention with attn_implementation='eager'"


def is_hf_attention(module: nn.Module) -> bool:
    """Whether ``module`` is a Hugging Face self-attention module this capture reads."""
    return type(module).__name__ in SELF_ATTENTION_TYPES and type(module).__module__.startswith("transformers.")


def hf_heads(module: nn.Module) -> int:
    return int(module.num_attention_heads)


def check_eager(name: str, module: nn.Module, what: str) -> None:
    implementation = getattr(getattr(module, "config", None), "_attn_implementation", None)
    if implementation != "eager":
        raise AttributionError(f"{what} needs the attention probabilities, but attention module {name!r} runs "
                               f"attn_implementation={implementation!r}, which returns none; load the model with "
                               "attn_implementation='eager'")


@contextmanager
def capture_hf_attention(layers: list[tuple[str, nn.Module]], keep_graph: bool,
                         record: Callable[[str, Tensor], None], what: str = "this method") -> Iterator[None]:
    """Call ``record(name, probabilities)``, per self-attention call in forward order, with its
    (N, heads, T, T) probabilities (leaves with gradient when ``keep_graph``)."""
    for name, module in layers:
        check_eager(name, module, what)
    handles: list[Any] = []
    values: dict[str, Tensor] = {}

    def keep_values(name: str):
        def hook(_module: nn.Module, _inputs: tuple, output: Tensor) -> None:
            values[name] = output
        return hook

    def read(name: str, module: nn.Module):
        def hook(_module: nn.Module, _args: tuple, output: Any) -> Any:
            attended, weights = output[0], output[1]
            if weights is None:
                raise AttributionError(f"attention module {name!r} returned no probabilities; the capture reads "
                                       f"{SUPPORTED}")
            if not keep_graph:
                record(name, weights.detach())
                return None
            if not torch.is_grad_enabled():
                raise AttributionError("capture_attention(keep_graph=True) needs the forward to run with gradients "
                                       "enabled")
            leaf = weights.detach().requires_grad_()
            record(name, leaf)
            value = values.pop(name).detach()
            n, t, e = value.shape
            heads = hf_heads(module)
            split = value.reshape(n, t, heads, e // heads).transpose(1, 2)
            zero = ((leaf - leaf.detach()).to(split.dtype) @ split).transpose(1, 2).reshape(n, t, e)
            return (attended + zero.to(attended.dtype), *output[1:])
        return hook

    try:
        for name, module in layers:
            if keep_graph:
                handles.append(module.value.register_forward_hook(keep_values(name)))
            handles.append(module.register_forward_hook(read(name, module)))
        yield
    finally:
        for handle in handles:
            handle.remove()
