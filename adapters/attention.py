"""The attention probabilities of a vision transformer, captured during the model's own forward.

Neither common implementation hands them out: torchvision's ``EncoderBlock`` calls its
``nn.MultiheadAttention`` with ``need_weights=False``, and timm's ``Attention`` runs fused
scaled-dot-product attention, which returns none. Switching either to its explicit path would
change how the model computes its outputs. Instead, hooks read each attention module's own inputs
(torchvision: the query/key/value it is called with, projected by its ``in_proj_weight``/``bias``;
timm: the outputs of its ``qkv``, ``q_norm`` and ``k_norm``) and recompute

    A = softmax(q k^T * scale)          (N, heads, T, T), per call, in forward order

with the formula of the module's explicit path, while the module itself runs untouched: the logits
are bit-for-bit those of the plain forward.

With ``keep_graph=True`` each A is a leaf that requires grad, and the module's output (for timm,
the merged (A @ V) before its ``norm`` and ``proj``) passes through an identity autograd function
whose backward also gives A its gradient, split_heads(grad [W_out]) @ V^T, so d(logit)/dA is
exact while the value of every tensor is untouched (a copy of the output) and so is the gradient
with respect to the input and the weights (V and W_out are held fixed in A's gradient). This
costs nothing in the forward beyond A itself (and V for torchvision), and one (T, E) x (E, E)
and one (T, d) x (d, T) product per head in the backward.

Which kernels PyTorch runs depends on whether anything requires grad (``nn.MultiheadAttention``
takes a fused fast path only when nothing does), so the comparison is within one mode: without
gradients, with the plain no-grad forward; with gradients, :func:`forward_with_attention` feeds an
input that requires grad (as every gradient method does; nothing is computed for it) and matches
the plain forward of such an input, for frozen models too.

Every hook is removed on exit, also on error; no flag of the model (timm's ``fused_attn``
included) is touched.
"""
from __future__ import annotations

import inspect
import math
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

from .base import Method
from .budget import rows_for_budget, spans
from .hf_attention import capture_hf_attention, hf_heads, is_hf_attention
from .errors import AttributionError, NotApplicable
from .maps import upsample
from .modality import is_token_model
from .probe import probe
from .tokens import TokenGrid, require_grid

#: What the capture reads, as the error for an unsupported model says it.
SUPPORTED = ("torch.nn.MultiheadAttention (torchvision ViT), timm Attention (timm ViT, DeiT) or transformers' "
             "BertSelfAttention (eager attention; adapters/hf_attention.py)")

_MHA_SIGNATURE = inspect.signature(nn.MultiheadAttention.forward)
_MHA_PARAMETERS = [p for p in _MHA_SIGNATURE.parameters.values() if p.name != "self"]
_MHA_NAMES = tuple(p.name for p in _MHA_PARAMETERS)
_MHA_DEFAULTS = {p.name: p.default for p in _MHA_PARAMETERS if p.default is not inspect.Parameter.empty}


def _mha_arguments(args: tuple, kwargs: dict) -> dict[str, Any]:
    """``nn.MultiheadAttention.forward``'s arguments by name, defaults filled in (a plain-dict
    ``Signature.bind``: this runs on every attention call)."""
    if len(args) > len(_MHA_NAMES) or not set(kwargs) <= set(_MHA_NAMES) or set(_MHA_NAMES[:len(args)]) & set(kwargs):
        call = _MHA_SIGNATURE.bind(None, *args, **kwargs)  # raises the TypeError the call would
        call.apply_defaults()
        return {name: call.arguments[name] for name in _MHA_NAMES}
    arguments = {**_MHA_DEFAULTS, **dict(zip(_MHA_NAMES, args)), **kwargs}
    missing = [name for name in _MHA_NAMES if name not in arguments]
    if missing:
        raise TypeError(f"MultiheadAttention.forward() missing arguments: {', '.join(missing)}")
    return arguments


@dataclass(frozen=True)
class AttentionLayer:
    """A supported attention module of a model: its name in ``named_modules()``, and its kind."""

    name: str
    module: nn.Module
    kind: str  # "torch" (nn.MultiheadAttention), "timm" (timm.layers.Attention) or "hf" (BertSelfAttention)

    @property
    def n_heads(self) -> int:
        return hf_heads(self.module) if self.kind == "hf" else int(self.module.num_heads)


#: What a method keeps of one layer's (N, heads, T, T) probabilities, applied as each is captured.
LayerReduction = Callable[[Tensor], Tensor]


@dataclass
class CapturedAttention:
    """One forward's attention: ``probabilities[i]`` (N, heads, T_query, T_key) was computed by the
    call ``names[i]`` (a module called twice appears twice), in forward order; with ``reduce``,
    ``reduce`` of it, computed as soon as the layer has run, so that only what a method needs of
    each layer stays alive through the forward (the heads fused, one row) and not every layer's
    full tensor."""

    names: list[str] = field(default_factory=list)
    probabilities: list[Tensor] = field(default_factory=list)
    reduce: LayerReduction | None = None
    #: (heads, T_query, T_key) of each call, as computed (before ``reduce``).
    shapes: list[tuple[int, int, int]] = field(default_factory=list)

    def record(self, name: str, probabilities: Tensor) -> None:
        self.names.append(name)
        self.shapes.append(tuple(probabilities.shape[1:]))
        self.probabilities.append(probabilities if self.reduce is None else self.reduce(probabilities))


def _timm_attention_type() -> type | None:
    # timm is optional and never imported here: a timm model means timm is already imported.
    module = sys.modules.get("timm.layers.attention")
    return getattr(module, "Attention", None) if module is not None else None


def _looks_like_attention(module: nn.Module) -> bool:
    return "attention" in type(module).__name__.lower()


def attention_layers(model: nn.Module, what: str = "this method") -> list[AttentionLayer]:
    """The supported attention modules of ``model`` in definition order.

    Raises an AttributionError when there are none, or when attention modules the capture cannot
    read (Swin's windowed attention, attention pooling, ...) sit next to them: a map over only some
    of the model's attention would silently mean something else.
    """
    timm_type = _timm_attention_type()
    # One walk (this runs on every call of an attention method): the supported modules, and the
    # other attention-looking modules, kept by name to be checked against them.
    layers: list[AttentionLayer] = []
    suspects: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if isinstance(module, nn.MultiheadAttention):
            layers.append(AttentionLayer(name, module, "torch"))
        elif timm_type is not None and type(module) is timm_type:  # a subclass may compute otherwise
            layers.append(AttentionLayer(name, module, "timm"))
        elif is_hf_attention(module):
            layers.append(AttentionLayer(name, module, "hf"))
        elif _looks_like_attention(module):
            suspects.append((name, module))

    def inside_supported(name: str) -> bool:
        return any(name.startswith(layer.name + ".") for layer in layers)

    def holds_supported(name: str) -> bool:  # a block or a whole model wrapping supported modules
        return not name or any(layer.name.startswith(name + ".") for layer in layers)

    unsupported = [f"{name} ({type(module).__name__})" for name, module in suspects
                   if not inside_supported(name) and not holds_supported(name)]
    if unsupported:
        shown = ", ".join(unsupported[:3]) + (", ..." if len(unsupported) > 3 else "")
        raise NotApplicable(f"{what} needs the attention probabilities of every attention layer, but "
                            f"{type(model).__name__} has attention modules the capture cannot read: {shown}; "
                            f"supported: {SUPPORTED}")
    if not layers:
        raise NotApplicable(f"{what} needs a transformer's attention probabilities, but {type(model).__name__} "
                            f"has no supported attention module ({SUPPORTED})")
    return layers


def _probabilities(q: Tensor, k: Tensor, scale: float, keep_graph: bool) -> Tensor:
    """softmax(q k^T * scale) over (N, heads, T, d) queries and keys, as the explicit paths of
    torch's and timm's attention compute it (queries scaled first)."""
    with torch.no_grad():
        probabilities = ((q.detach() * scale) @ k.detach().transpose(-2, -1)).softmax(dim=-1)
    return probabilities.requires_grad_() if keep_graph else probabilities


class _ThroughAttention(torch.autograd.Function):
    """Identity on an attention module's output ``merge_heads(A @ V) [W^T]`` (a copy, not a single
    bit changed), whose backward also hands the probabilities their gradient
    d/dA = split_heads(grad [W]) @ V^T, V and W held fixed: the one place A enters the output.
    The gradient the output passes on (to the input and the weights) is untouched."""

    @staticmethod
    def forward(ctx: Any, output: Tensor, probabilities: Tensor, values: Tensor,
                weight: Tensor | None) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(probabilities, values, weight)
        # A copy, not a view: a model may modify its attention output in place (views returned by
        # an autograd function may not be), and (T, E) per layer is small next to (heads, T, T).
        return output.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        probabilities, values, weight = ctx.saved_tensors
        grad_merged = grad if weight is None else grad @ weight.to(grad.dtype)
        grad_probabilities = _split_heads(grad_merged, values.shape[1]) @ values.transpose(-2, -1)
        return grad, grad_probabilities.to(probabilities.dtype), None, None


def _through_attention(output: Tensor, probabilities: Tensor, values: Tensor, weight: Tensor | None) -> Tensor:
    """``output`` (N, T, E), unchanged, with d(output)/d(probabilities) for (N, heads, T, T) A and
    (N, heads, T, d) V; ``weight`` (E_out, E) the projection applied after merging heads, if any."""
    return _ThroughAttention.apply(output, probabilities, values.detach(),
                                   None if weight is None else weight.detach())


def _split_heads(tokens: Tensor, heads: int) -> Tensor:
    """(N, T, E) -> (N, heads, T, E / heads)."""
    n, t, e = tokens.shape
    return tokens.reshape(n, t, heads, e // heads).transpose(1, 2)



def _runs_native_cpu_path(mha: nn.MultiheadAttention, query: Tensor, key: Tensor, value: Tensor) -> bool:
    """Whether ``mha(query, key, value)`` (unmasked) will run ``torch._native_multi_head_attention``
    on the CPU: the checks of ``nn.MultiheadAttention.forward`` (torch 2.14), conservatively (any
    dispatch mode, any non-CPU tensor: no). That kernel computes softmax(q k^T * scale) explicitly
    whether or not the weights are asked for, so asking for them leaves the output bit-identical
    (tests/adapters/test_attention.py checks it); on CUDA it may run fused attention instead."""
    tensors = (query, key, value, mha.in_proj_weight, mha.in_proj_bias, mha.out_proj.weight, mha.out_proj.bias)
    present = [t for t in tensors if t is not None]
    return (torch.backends.mha.get_fastpath_enabled() and query.dim() == 3 and query is key and key is value
            and not query.is_nested and mha.in_proj_weight is not None and mha.in_proj_bias is not None
            and query.dtype == mha.in_proj_weight.dtype == mha.in_proj_bias.dtype
            and not mha.training and mha.num_heads % 2 == 0 and mha.batch_first and mha._qkv_same_embed_dim
            and mha.bias_k is None and mha.bias_v is None and not mha.add_zero_attn
            and not torch.is_autocast_enabled() and not torch.overrides.has_torch_function(present)
            and all(t.device.type == "cpu" for t in present)
            and not (torch.is_grad_enabled() and any(t.requires_grad for t in present))
            and not _get_current_dispatch_mode_stack())


class _Capture:
    """The hooks of one ``capture_attention`` block."""

    def __init__(self, layers: list[AttentionLayer], keep_graph: bool, reduce: LayerReduction | None) -> None:
        self.layers, self.keep_graph = layers, keep_graph
        self.result = CapturedAttention(reduce=reduce)
        self.handles: list[Any] = []
        self.timm_state: dict[str, dict[str, Tensor]] = {}

    def install(self) -> None:
        for layer in self.layers:
            if layer.kind == "torch":
                self._install_torch(layer)
            else:
                self._install_timm(layer)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        self.timm_state.clear()

    def _record(self, layer: AttentionLayer, probabilities: Tensor) -> None:
        if self.keep_graph and not torch.is_grad_enabled():
            # The output would pass on no graph: d(logit)/dA would silently be missing.
            raise AttributionError("capture_attention(keep_graph=True) needs the forward to run with gradients "
                                   "enabled")
        self.result.record(layer.name, probabilities)

    # torch.nn.MultiheadAttention ---------------------------------------------------------------
    def _install_torch(self, layer: AttentionLayer) -> None:
        """Checked before the module runs; without a graph, where the module will run PyTorch's
        native fast path on the CPU (:func:`_runs_native_cpu_path`), the call asks that kernel for
        its per-head weights (``need_weights=True, average_attn_weights=False``), which it computes
        anyway, and the caller gets back exactly the output it asked for. Otherwise q and k are
        recomputed from the module's inputs and weights after it ran."""
        mha: nn.MultiheadAttention = layer.module  # type: ignore[assignment]
        state: dict[str, Any] = {}

        def before(_module: nn.Module, args: tuple, kwargs: dict) -> Any:
            arguments = _mha_arguments(args, kwargs)
            query, key, value = arguments["query"], arguments["key"], arguments["value"]
            for option in ("key_padding_mask", "attn_mask"):
                if arguments[option] is not None:
                    raise NotApplicable(f"attention module {layer.name!r} is called with {option}; the "
                                        "attention capture reads unmasked self-attention only")
            if arguments["is_causal"] or mha.bias_k is not None or mha.add_zero_attn:
                raise NotApplicable(f"attention module {layer.name!r} uses a causal mask, bias_k/bias_v or "
                                    "add_zero_attn; the attention capture reads plain self-attention only")
            if query.dim() != 3:
                raise AttributionError(f"attention module {layer.name!r} got an unbatched {query.dim()}-D query; "
                                       "the attention capture reads batched calls only")
            state.clear()
            weights_asked = bool(arguments["need_weights"])
            if (not self.keep_graph and (not weights_asked or not arguments["average_attn_weights"])
                    and _runs_native_cpu_path(mha, query, key, value)):
                state["native"] = weights_asked
                if weights_asked:
                    return None  # per-head weights are already asked for
                arguments.update(need_weights=True, average_attn_weights=False)
                return (), arguments
            state["inputs"] = (query, key, value)
            return None

        def after(_module: nn.Module, _args: tuple, _kwargs: dict, output: Any) -> Any:
            if "native" in state:
                weights_asked = state.pop("native")
                self._record(layer, output[1])
                return None if weights_asked else (output[0], None)
            query, key, value = state.pop("inputs")
            q, k, v = self._torch_projections(mha, query, key, value)
            # The same scale as torch.nn.functional.multi_head_attention_forward's explicit path.
            probabilities = _probabilities(q, k, math.sqrt(1.0 / float(mha.head_dim)), self.keep_graph)
            self._record(layer, probabilities)
            if not self.keep_graph:
                return None  # the output stays the module's own object
            attended = output[0] if mha.batch_first else output[0].transpose(0, 1)
            attended = _through_attention(attended, probabilities, v, mha.out_proj.weight)
            return (attended if mha.batch_first else attended.transpose(0, 1), *output[1:])

        self.handles += [mha.register_forward_pre_hook(before, with_kwargs=True),
                         mha.register_forward_hook(after, with_kwargs=True)]

    def _torch_projections(self, mha: nn.MultiheadAttention, query: Tensor, key: Tensor,
                           value: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """q, k (and v when the graph is kept), (N, heads, T, d), from the module's own weights;
        self-attention's projections in one product, as the module packs them itself."""
        needed = 3 if self.keep_graph else 2
        with torch.no_grad():
            if mha._qkv_same_embed_dim and query is key and (key is value or needed == 2):
                rows = needed * mha.embed_dim
                bias = mha.in_proj_bias[:rows] if mha.in_proj_bias is not None else None
                projected = F.linear(query, mha.in_proj_weight[:rows], bias).chunk(needed, dim=-1)
            else:
                if mha._qkv_same_embed_dim:
                    weights = mha.in_proj_weight.chunk(3)
                else:
                    weights = (mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight)
                biases = mha.in_proj_bias.chunk(3) if mha.in_proj_bias is not None else (None,) * 3
                projected = [F.linear(t, w, b) for t, w, b in zip((query, key, value)[:needed], weights, biases)]
            if not mha.batch_first:
                projected = [t.transpose(0, 1) for t in projected]
            q, k, *v = (_split_heads(t, mha.num_heads) for t in projected)
        return q, k, (v[0] if v else None)

    # timm Attention ---------------------------------------------------------------------------
    def _install_timm(self, layer: AttentionLayer) -> None:
        """q and k are read where the module produces them (after q_norm / k_norm), v from qkv's
        output; A is recorded, and routed into the graph, at the input of the module's ``norm``
        (an Identity unless scale_norm), which receives (A @ V) with heads merged on both the
        fused and the explicit path."""
        attention = layer.module
        state = self.timm_state.setdefault(layer.name, {})

        def refuse_masks(_module: nn.Module, args: tuple, kwargs: dict) -> None:
            mask = kwargs.get("attn_mask", args[1] if len(args) > 1 else None)
            if mask is not None:
                raise NotApplicable(f"attention module {layer.name!r} is called with attn_mask; the attention "
                                    "capture reads unmasked self-attention only")
            state.clear()

        def keep(slot: str) -> Callable[..., None]:
            def hook(_module: nn.Module, _inputs: tuple, output: Tensor) -> None:
                state[slot] = output
            return hook

        def at_merged_output(_module: nn.Module, args: tuple) -> Any:
            if not {"qkv", "q", "k"} <= set(state):
                raise AttributionError(f"attention module {layer.name!r} did not compute q, k and v through its "
                                       "qkv, q_norm and k_norm modules; the attention capture cannot read it")
            probabilities = _probabilities(state["q"], state["k"], float(attention.scale), self.keep_graph)
            self._record(layer, probabilities)
            qkv = state.pop("qkv")
            state.clear()
            if not self.keep_graph:
                return None
            n, t, _ = qkv.shape
            v = qkv.reshape(n, t, 3, attention.num_heads, attention.head_dim).permute(2, 0, 3, 1, 4)[2]
            return (_through_attention(args[0], probabilities, v, None), *args[1:])

        self.handles += [
            attention.register_forward_pre_hook(refuse_masks, with_kwargs=True),
            attention.qkv.register_forward_hook(keep("qkv")),
            attention.q_norm.register_forward_hook(keep("q")),
            attention.k_norm.register_forward_hook(keep("k")),
            attention.norm.register_forward_pre_hook(at_merged_output),
        ]


@contextmanager
def capture_attention(model: nn.Module, *, keep_graph: bool = False, layers: list[AttentionLayer] | None = None,
                      reduce: LayerReduction | None = None) -> Iterator[CapturedAttention]:
    """``with capture_attention(model) as captured: logits = model(x)``; then
    ``captured.probabilities`` holds one (N, heads, T, T) tensor per attention call, in forward order.

    ``keep_graph``: each probability tensor is a leaf that requires grad and that the logits depend
    on, so ``torch.autograd.grad(logits[...].sum(), captured.probabilities)`` is d(logit)/dA (run the
    forward with gradients enabled). Otherwise the tensors are computed without a graph and the
    forward is not touched at all. ``layers``: capture only these (default: all of
    :func:`attention_layers`); ``reduce``: keep ``reduce(A)`` of each layer instead of A
    (:class:`CapturedAttention`). The hooks are removed on exit, also on error.
    """
    layers = layers if layers is not None else attention_layers(model)
    if any(layer.kind == "hf" for layer in layers):  # Hugging Face BERT: adapters/hf_attention.py
        captured = CapturedAttention(reduce=reduce)
        with capture_hf_attention([(layer.name, layer.module) for layer in layers], keep_graph, captured.record):
            yield captured
        return
    capture = _Capture(layers, keep_graph, reduce)
    try:
        capture.install()
        yield capture.result
    finally:
        capture.remove()


def forward_with_attention(model: nn.Module, x: Tensor, *, keep_graph: bool = False, what: str = "this method",
                           layers: list[AttentionLayer] | None = None,
                           reduce: LayerReduction | None = None) -> tuple[Tensor, CapturedAttention]:
    """``model(x)`` and its attention (:func:`capture_attention`), checked: every supported
    attention module ran and every probability tensor is square over the same tokens. The forward
    runs without gradients, or with ``keep_graph`` with gradients on a detached copy of ``x`` that
    requires grad (the logits are then bit-identical to ``model(x.requires_grad_())``). ``layers``:
    :func:`attention_layers` of ``model``, when the caller has them already; ``reduce``: what to
    keep of each layer (:class:`CapturedAttention`)."""
    layers = attention_layers(model, what) if layers is None else layers
    if keep_graph and x.is_floating_point():  # token ids cannot require grad; the BERT capture needs none
        # Every layer then runs its gradient path, whether the weights are frozen or not.
        x = x.detach().requires_grad_()
    with torch.enable_grad() if keep_graph else torch.no_grad():
        with capture_attention(model, keep_graph=keep_graph, layers=layers, reduce=reduce) as captured:
            logits = model(x)
    silent = [layer.name for layer in layers if layer.name not in captured.names]
    if silent:
        raise AttributionError(f"attention module(s) {', '.join(silent)} did not run during the forward (a fused "
                               "path such as nn.TransformerEncoderLayer's fast path bypasses them); their "
                               "attention cannot be captured")
    shapes = sorted({shape[-2:] for shape in captured.shapes})
    if len(shapes) != 1 or shapes[0][0] != shapes[0][1]:
        raise AttributionError(f"{what} needs self-attention over the same tokens in every layer, got attention "
                               f"of shapes (T_query, T_key) {shapes}")
    return logits, captured


def attention_bytes_per_image(model: nn.Module, x: Tensor, *, keep_graph: bool,
                              layers: list[AttentionLayer] | None = None) -> int:
    """Bytes one image's attention probabilities take during :func:`forward_with_attention`:
    every layer's (heads, T, T) is kept until the forward ends, with a gradient of the same size
    (and autograd's saved copies) when ``keep_graph``. T is the longest token axis the probe saw."""
    model_probe = probe(model, x)
    tokens = max((max(call.output_shape[:2]) for call in model_probe.order
                  if call.output_shape is not None and len(call.output_shape) == 3), default=0)
    calls = {call.name: call.calls for call in model_probe.order}
    layers = attention_layers(model) if layers is None else layers
    heads = sum(layer.n_heads * calls.get(layer.name, 1) for layer in layers)
    return heads * tokens * tokens * x.element_size() * (4 if keep_graph else 2)


def class_token_grid(n_tokens: int, height: int, width: int, what: str) -> TokenGrid:
    """The patch grid of ``n_tokens`` tokens (:func:`adapters.tokens.require_grid`); the read-out
    row, token 0, must be a prefix (class) token, not a patch."""
    grid = require_grid(n_tokens, height, width, f"{what}'s attention")
    if grid.prefix == 0:
        raise AttributionError(f"{what} reads the class token's row, but the {n_tokens} tokens are all patches "
                               f"({grid.h}x{grid.w}) of the {height}x{width} input: the model has no class token")
    return grid


#: (probabilities of one forward, its logits, the targets) -> the class token's row (n, T).
ClassTokenRow = Callable[[list[Tensor], Tensor, Tensor], Tensor]


def class_token_maps(method: Method, model: nn.Module, x: Tensor, target: Tensor, row: ClassTokenRow, *,
                     gradients: bool, reduce: LayerReduction | None = None) -> Tensor:
    """The loop the attention methods share: ``method.params["batch_size"]`` images per forward
    (None: what ``memory_mb`` holds, attention included), ``row`` of each batch's attention (each
    layer's ``reduce``-d as it is captured, when given) reshaped to the patch grid (prefix tokens
    dropped) and upsampled to the input with ``method.params["upsample"]``. Records layers, heads,
    grid and batch size in ``method.diagnostics``.
    """
    what = f"method {method.name!r}"
    layers = attention_layers(model, what)  # a model without attention is refused before any pass
    height, width = x.shape[-2:]
    size = method.params["batch_size"] or rows_for_budget(
        model, x, method.params["memory_mb"], backward=gradients,
        extra_bytes_per_row=attention_bytes_per_image(model, x, keep_graph=gradients, layers=layers))
    maps, grid = [], None
    for s in spans(len(x), size):
        logits, captured = forward_with_attention(model, x[s], keep_graph=gradients, what=what, layers=layers,
                                                  reduce=reduce)
        tokens = row(captured.probabilities, logits, target[s]).detach().float()
        if is_token_model(model):  # text: the class token's row over the tokens is the (n, L) map itself
            method.diagnostics.update(layers=captured.names, n_heads=[shape[0] for shape in captured.shapes],
                                      batch_size=size)
            maps.append(tokens)
            continue
        if grid is None:
            grid = class_token_grid(tokens.shape[-1], height, width, what)
            method.diagnostics.update(layers=captured.names, n_heads=[shape[0] for shape in captured.shapes],
                                      grid={"prefix": grid.prefix, "h": grid.h, "w": grid.w}, batch_size=size)
        maps.append(tokens[:, grid.prefix:].reshape(len(tokens), 1, grid.h, grid.w))
    if is_token_model(model):
        return torch.cat(maps)
    return upsample(torch.cat(maps), (height, width), method.params["upsample"])


def class_token_product(matrices: list[Tensor], step: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """Row 0 of a product of per-layer (n, T, T) matrices, later layers on the left, as a row
    vector: r <- step(r, M) over the layers from last to first, starting from e_0. L vector-matrix
    products instead of L matrix products; the same value up to float rounding."""
    n, t = matrices[0].shape[0], matrices[0].shape[-1]
    r = torch.zeros(n, 1, t, dtype=matrices[0].dtype, device=matrices[0].device)
    r[:, 0, 0] = 1
    for matrix in reversed(matrices):
        r = step(r, matrix)
    return r[:, 0]
