"""Attention capture (adapters/attention.py) and the attention methods, against by-hand computations.

The by-hand references run the tiny torchvision ViT of conftest layer by layer: ``need_weights=True,
average_attn_weights=False`` for the probabilities, and an explicit re-implementation of each
attention (softmax(q k^T / sqrt(d)) from ``in_proj_weight``) whose probabilities keep their
gradients, for d(logit)/dA. The capture recomputes the same formula from the same tensors, so the
two agree to float rounding: PROBABILITY_TOLERANCE (1e-6 absolute on probabilities in [0, 1]) is
far below anything a map could show. Measured on this CPU: probabilities differ by 0 (torchvision)
and 7e-9 (timm), gradients d(logit)/dA by 9e-6 where they reach 26 (4e-7 relative).
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import adapters
from adapters import AttributionError
from adapters.attention import attention_layers, capture_attention, class_token_grid, forward_with_attention
from adapters.base import ModelState
from adapters.maps import upsample
from adapters.methods.attention_rollout import discard_smallest, rollout_matrices

ATTENTION_METHODS = ["raw_attention", "attention_rollout", "transformer_attribution"]
PROBABILITY_TOLERANCE = {"atol": 1e-6, "rtol": 1e-5}


def reference_probabilities(vit: nn.Module, x: Tensor) -> list[Tensor]:
    """Each layer's (N, heads, T, T) from ``need_weights=True, average_attn_weights=False``."""
    probabilities = []
    with torch.no_grad():
        tokens = _embed(vit, x)
        for block in vit.encoder.layers:
            normed = block.ln_1(tokens)
            probabilities.append(block.self_attention(normed, normed, normed, need_weights=True,
                                                      average_attn_weights=False)[1])
            tokens = block(tokens)
    return probabilities


def _embed(vit: nn.Module, x: Tensor) -> Tensor:
    tokens = vit._process_input(x)
    return torch.cat([vit.class_token.expand(len(x), -1, -1), tokens], dim=1) + vit.encoder.pos_embedding


def explicit_forward(vit: nn.Module, x: Tensor) -> tuple[Tensor, list[Tensor]]:
    """The torchvision ViT by hand with explicit attention: logits and each layer's A, whose
    ``.grad`` is filled by a backward (``retain_grad``)."""
    tokens = _embed(vit, x)
    probabilities = []
    for block in vit.encoder.layers:
        mha = block.self_attention
        n, t, e = tokens.shape
        heads, d = mha.num_heads, mha.head_dim
        q, k, v = (part.reshape(n, t, heads, d).transpose(1, 2)
                   for part in F.linear(block.ln_1(tokens), mha.in_proj_weight, mha.in_proj_bias).chunk(3, dim=-1))
        attention = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d), dim=-1)
        attention.retain_grad()
        probabilities.append(attention)
        merged = (attention @ v).transpose(1, 2).reshape(n, t, e)
        tokens = tokens + F.linear(merged, mha.out_proj.weight, mha.out_proj.bias)
        tokens = tokens + block.mlp(block.ln_2(tokens))
    return vit.heads(vit.encoder.ln(tokens)[:, 0]), probabilities


def by_hand_map(row: Tensor) -> Tensor:
    """(N, T) class-token rows -> the (N, 1, 32, 32) map: prefix token 0 dropped, 4x4, bilinear."""
    return upsample(row[:, 1:].reshape(len(row), 1, 4, 4), (32, 32), "bilinear")


# --- the capture ------------------------------------------------------------------------------

def test_capture_equals_need_weights_attention(vit, images):
    _, captured = forward_with_attention(vit, images)
    reference = reference_probabilities(vit, images)
    assert captured.names == ["encoder.layers.encoder_layer_0.self_attention",
                              "encoder.layers.encoder_layer_1.self_attention"]
    assert [tuple(p.shape) for p in captured.probabilities] == [(8, 2, 17, 17)] * 2
    for mine, theirs in zip(captured.probabilities, reference):
        torch.testing.assert_close(mine, theirs, **PROBABILITY_TOLERANCE)


@pytest.mark.parametrize("frozen", [False, True])
@pytest.mark.parametrize("keep_graph", [False, True])
def test_capture_keeps_the_logits_bit_identical_and_leaves_no_hooks(vit, images, keep_graph, frozen):
    # Within one mode: MultiheadAttention takes a fused no-grad fast path when nothing requires grad,
    # so the comparator of a capture with gradients is a forward whose input requires grad.
    vit.requires_grad_(not frozen)
    before = ModelState.of(vit)
    with torch.enable_grad() if keep_graph else torch.no_grad():
        plain = vit(images.clone().requires_grad_(keep_graph))
    logits, captured = forward_with_attention(vit, images, keep_graph=keep_graph)
    assert torch.equal(logits, plain)
    assert ModelState.of(vit) == before
    assert all(p.requires_grad == keep_graph for p in captured.probabilities)


def test_gradient_wrt_attention_equals_the_explicit_attention_gradient(vit, images, targets):
    explicit_logits, explicit_probabilities = explicit_forward(vit, images)
    explicit_logits.gather(1, targets[:, None]).sum().backward()
    logits, captured = forward_with_attention(vit, images, keep_graph=True)
    torch.testing.assert_close(logits, explicit_logits, atol=1e-5, rtol=1e-5)
    grads = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), captured.probabilities)
    for grad, explicit in zip(grads, explicit_probabilities):
        assert grad.abs().max() > 0
        torch.testing.assert_close(grad, explicit.grad, atol=1e-6, rtol=1e-4)


def test_capture_does_not_change_the_input_gradient(vit, images):
    x = images[:3].clone().requires_grad_()
    plain = torch.autograd.grad(vit(x)[:, 1].sum(), x)[0]
    with capture_attention(vit, keep_graph=True):
        captured = torch.autograd.grad(vit(x)[:, 1].sum(), x)[0]
    torch.testing.assert_close(captured, plain, atol=0, rtol=0)


class OneAttention(nn.Module):
    """One nn.MultiheadAttention called as torchvision calls it (need_weights=False), in either
    layout; with ``kdim`` it attends from tokens (N, T, 8) to other tokens (N, S, kdim)."""

    def __init__(self, batch_first: bool, kdim: int | None = None) -> None:
        super().__init__()
        self.batch_first, self.cross = batch_first, kdim is not None
        self.attention = nn.MultiheadAttention(8, 2, batch_first=batch_first, kdim=kdim, vdim=kdim)

    def forward(self, tokens: Tensor, other: Tensor | None = None, **options: object) -> tuple[Tensor, Tensor | None]:
        query = tokens if self.batch_first else tokens.transpose(0, 1)
        key = query if other is None else (other if self.batch_first else other.transpose(0, 1))
        out, weights = self.attention(query, key, key, **{"need_weights": False, **options})
        return (out if self.batch_first else out.transpose(0, 1)), weights


@pytest.mark.parametrize("batch_first, kdim", [(True, None), (False, None), (True, 6), (False, 6)],
                         ids=["batch_first", "sequence_first", "cross_batch_first", "cross_sequence_first"])
def test_multihead_attention_layouts(batch_first, kdim):
    torch.manual_seed(0)
    module = OneAttention(batch_first, kdim).eval()
    tokens = torch.randn(3, 5, 8)
    other = None if kdim is None else torch.randn(3, 7, kdim)
    with torch.no_grad():
        plain = module(tokens, other)[0]
        reference = module(tokens, other, need_weights=True, average_attn_weights=False)[1]
        with capture_attention(module) as captured:
            assert torch.equal(module(tokens, other)[0], plain)
    torch.testing.assert_close(captured.probabilities[0], reference, **PROBABILITY_TOLERANCE)

    # d(sum(out * weights))/dA against autograd through an explicit (A @ V) projection.
    projection = torch.randn(3, 5, 8)
    with capture_attention(module, keep_graph=True) as captured:
        out = module(tokens, other)[0]
    grad = torch.autograd.grad((out * projection).sum(), captured.probabilities)[0]
    mha = module.attention
    source = tokens if other is None else other
    w_v = mha.in_proj_weight.chunk(3)[2] if mha._qkv_same_embed_dim else mha.v_proj_weight
    v = F.linear(source, w_v, mha.in_proj_bias.chunk(3)[2]).reshape(3, -1, 2, 4).transpose(1, 2)
    leaf = reference.clone().requires_grad_()
    explicit = F.linear((leaf @ v).transpose(1, 2).reshape(3, 5, 8), mha.out_proj.weight, mha.out_proj.bias)
    expected = torch.autograd.grad((explicit * projection).sum(), leaf)[0]
    torch.testing.assert_close(grad, expected, atol=1e-6, rtol=1e-5)



@pytest.mark.parametrize("options", [{}, {"need_weights": True}, {"need_weights": True, "average_attn_weights": False}],
                         ids=["no_weights", "averaged_weights", "per_head_weights"])
@pytest.mark.parametrize("width, heads, tokens", [(8, 2, 5), (64, 4, 65), (96, 12, 197)])
def test_no_grad_capture_returns_what_the_caller_asked_for(options, width, heads, tokens):
    """Without gradients the capture reads the native fast path's own per-head weights: the caller
    still gets bit-identical outputs (and the weights it asked for, or None), and the capture equals
    need_weights=True attention exactly, at the zoo ViT's and ViT-B/16's token counts."""
    torch.manual_seed(0)
    module = nn.MultiheadAttention(width, heads, batch_first=True).eval()
    x = torch.randn(3, tokens, width)
    with torch.no_grad():
        plain = module(x, x, x, **{"need_weights": False, **options})
        reference = module(x, x, x, need_weights=True, average_attn_weights=False)[1]
        with capture_attention(module) as captured:
            out = module(x, x, x, **{"need_weights": False, **options})
    assert torch.equal(out[0], plain[0])
    assert (out[1] is None) == (plain[1] is None) and (plain[1] is None or torch.equal(out[1], plain[1]))
    assert torch.equal(captured.probabilities[0], reference)
    assert not module._forward_hooks and not module._forward_pre_hooks

def test_masked_attention_is_refused():
    module = OneAttention(True).eval()
    with pytest.raises(AttributionError, match="'attention' is called with attn_mask"):
        with torch.no_grad(), capture_attention(module):
            module(torch.randn(1, 5, 8), attn_mask=torch.zeros(5, 5, dtype=torch.bool))


def test_hooks_are_removed_when_the_forward_fails(vit, images):
    def fail(*_: object) -> None:
        raise RuntimeError("the head failed")

    handle = vit.heads.register_forward_pre_hook(fail)  # after both attention layers ran
    before = ModelState.of(vit)
    with pytest.raises(RuntimeError, match="the head failed"):
        forward_with_attention(vit, images[:2], keep_graph=True)
    assert ModelState.of(vit) == before
    handle.remove()


def test_keep_graph_without_gradients_is_refused(vit, images):
    before = ModelState.of(vit)
    with pytest.raises(AttributionError, match="keep_graph=True.*gradients enabled"):
        with torch.no_grad(), capture_attention(vit, keep_graph=True):
            vit(images[:1])
    assert ModelState.of(vit) == before


def test_a_model_without_attention_is_refused_by_name(make_model):
    with pytest.raises(AttributionError, match=r"has no supported attention module \(torch\.nn\.MultiheadAttention "
                                               r"\(torchvision ViT\), timm Attention .* BertSelfAttention"):
        attention_layers(make_model(0), "method 'x'")


class WindowAttention(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x


def test_attention_modules_the_capture_cannot_read_are_named(vit):
    vit.encoder.layers.encoder_layer_1.extra = WindowAttention()
    with pytest.raises(AttributionError, match=r"cannot read: encoder\.layers\.encoder_layer_1\.extra "
                                               r"\(WindowAttention\)"):
        attention_layers(vit)


def test_an_attention_module_that_never_runs_is_named(vit, images):
    vit.unused = nn.MultiheadAttention(16, 2, batch_first=True)
    with pytest.raises(AttributionError, match="attention module.* unused did not run during the forward"):
        forward_with_attention(vit, images[:1])


def test_a_model_without_class_token_is_refused():
    with pytest.raises(AttributionError, match="all patches .*no class token"):
        class_token_grid(16, 32, 32, "method 'x'")


# --- the methods against by-hand computations -------------------------------------------------

def test_raw_attention_is_the_last_layer_head_mean(vit, images):
    last = reference_probabilities(vit, images)[-1]
    expected = by_hand_map(last.mean(dim=1)[:, 0])
    method = adapters.get("raw_attention")
    torch.testing.assert_close(method.attribute(vit, images, 0), expected, atol=1e-6, rtol=1e-5)
    assert method.diagnostics["grid"] == {"prefix": 1, "h": 4, "w": 4}
    assert method.diagnostics["n_heads"] == [2, 2] and len(method.diagnostics["layers"]) == 2


def by_hand_rollout(probabilities: list[Tensor], fusion: str) -> Tensor:
    """Abnar & Zuidema with explicit matrix products: R = Ã_L ... Ã_1, class token's row."""
    fuse = {"mean": lambda a: a.mean(1), "max": lambda a: a.max(1).values, "min": lambda a: a.min(1).values}[fusion]
    rollout = torch.eye(probabilities[0].shape[-1]).expand(len(probabilities[0]), -1, -1)
    for layer in probabilities:
        with_residual = fuse(layer) + torch.eye(layer.shape[-1])
        rollout = torch.bmm(with_residual / with_residual.sum(-1, keepdim=True), rollout)
    return rollout[:, 0]


@pytest.mark.parametrize("head_fusion", ["mean", "max", "min"])
def test_rollout_equals_the_by_hand_product(vit, images, head_fusion):
    expected = by_hand_map(by_hand_rollout(reference_probabilities(vit, images), head_fusion))
    maps = adapters.get("attention_rollout", head_fusion=head_fusion).attribute(vit, images, 0)
    torch.testing.assert_close(maps, expected, atol=1e-6, rtol=1e-5)


def test_head_fusions_give_different_maps(vit, images):
    maps = [adapters.get("attention_rollout", head_fusion=f).attribute(vit, images, 0) for f in ("mean", "max", "min")]
    assert not torch.allclose(maps[0], maps[1]) and not torch.allclose(maps[0], maps[2])


def test_transformer_attribution_equals_the_by_hand_rules(vit, images, targets):
    logits, probabilities = explicit_forward(vit, images)
    logits.gather(1, targets[:, None]).sum().backward()
    relevance = torch.eye(17).repeat(len(images), 1, 1)
    for attention in probabilities:  # rules 5 and 6, forward order
        weighted = (attention.grad * attention.detach()).clamp(min=0).mean(dim=1)
        relevance = relevance + torch.bmm(weighted, relevance)
    expected = by_hand_map(relevance[:, 0])
    maps = adapters.get("transformer_attribution").attribute(vit, images, targets)
    assert expected.abs().max() > 0
    torch.testing.assert_close(maps, expected, atol=1e-6, rtol=1e-4)


def test_transformer_attribution_follows_the_target(vit, images):
    method = adapters.get("transformer_attribution")
    assert not torch.allclose(method.attribute(vit, images[:2], 0), method.attribute(vit, images[:2], 3))


@pytest.mark.parametrize("name", ATTENTION_METHODS)
def test_batch_invariance_1_3_8(name, vit, images, targets, maps_close):
    method = adapters.get(name, **({"discard_ratio": 0.5} if name == "attention_rollout" else {}))
    whole = method.attribute(vit, images, targets)
    for size in (1, 3):
        pieces = [method.attribute(vit, images[i:i + size], targets[i:i + size]) for i in range(0, 8, size)]
        maps_close(torch.cat(pieces), whole)


@pytest.mark.parametrize("name", ATTENTION_METHODS)
def test_model_untouched(name, vit, images, targets):
    with torch.no_grad():
        before_logits = vit(images)
    before = ModelState.of(vit)
    adapters.get(name).attribute(vit, images, targets)
    assert ModelState.of(vit) == before
    with torch.no_grad():
        assert torch.equal(vit(images), before_logits)
    assert all(p.grad is None for p in vit.parameters())


# --- discard -----------------------------------------------------------------------------------

def test_discard_ratio_zero_is_no_discard(vit, images):
    default = adapters.get("attention_rollout").attribute(vit, images, 0)
    assert torch.equal(adapters.get("attention_rollout", discard_ratio=0.0).attribute(vit, images, 0), default)
    assert not torch.allclose(adapters.get("attention_rollout", discard_ratio=0.9).attribute(vit, images, 0), default)


@pytest.mark.parametrize("head_fusion", ["mean", "max"])
def test_discard_keeps_rows_normalised_and_the_class_row(vit, images, head_fusion):
    probabilities = reference_probabilities(vit, images)
    fused = probabilities[0].mean(1) if head_fusion == "mean" else probabilities[0].amax(1)
    discarded = discard_smallest(fused, 0.7)
    assert torch.equal(discarded[:, 0], fused[:, 0]), "the class token's row is never discarded"
    zeros = (discarded[:, 1:] == 0).flatten(1).sum(1)
    assert (zeros == int(0.7 * 16 * 17)).all(), "per image, floor(ratio * (T*T - T)) entries"
    for matrix in rollout_matrices(probabilities, head_fusion, 0.7):
        torch.testing.assert_close(matrix.sum(-1), torch.ones(8, 17))


def test_discard_is_per_image(vit, images):
    fused = reference_probabilities(vit, images)[0].mean(1)
    together = discard_smallest(fused, 0.5)
    alone = torch.cat([discard_smallest(fused[i:i + 1], 0.5) for i in range(len(fused))])
    assert torch.equal(together, alone)


# --- parameters --------------------------------------------------------------------------------

@pytest.mark.parametrize("name, params, parameter", [
    ("attention_rollout", {"head_fusion": "median"}, "head_fusion"),
    ("attention_rollout", {"head_fusion": None}, "head_fusion"),
    ("attention_rollout", {"discard_ratio": 1.0}, "discard_ratio"),
    ("attention_rollout", {"discard_ratio": -0.1}, "discard_ratio"),
    ("attention_rollout", {"discard_ratio": float("nan")}, "discard_ratio"),
    ("attention_rollout", {"discard_ratio": "0.9"}, "discard_ratio"),
    ("raw_attention", {"upsample": "sinc"}, "upsample"),
    ("transformer_attribution", {"batch_size": 0}, "batch_size"),
    ("transformer_attribution", {"memory_mb": 0}, "memory_mb"),
])
def test_bad_parameters_are_named(name, params, parameter):
    with pytest.raises(AttributionError, match=parameter):
        adapters.get(name, **params)


@pytest.mark.parametrize("name, forward, backward", [
    ("raw_attention", 1, 0), ("attention_rollout", 1, 0), ("transformer_attribution", 1, 1)])
def test_cost(name, forward, backward):
    assert adapters.get(name).cost() == adapters.Cost(forward=forward, backward=backward)


# --- timm ---------------------------------------------------------------------------------------

def tiny_timm_vit(**options: object) -> nn.Module:
    """A random-init timm ViT (never downloaded): 32 px, 8-px patches, 2 layers of 2 heads."""
    timm_vision_transformer = pytest.importorskip("timm.models.vision_transformer",
                                                  reason="timm is an optional dependency")
    torch.manual_seed(0)
    model = timm_vision_transformer.VisionTransformer(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2,
                                                      num_classes=5, **options)
    nn.init.normal_(model.head.weight, std=0.5)
    return model.eval()


def timm_reference(model: nn.Module, x: Tensor, target: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    """The reference recipe (methods-and-scores-2.md 1.6): explicit attention (fused_attn=False) on
    a copy, A read at ``attn_drop``'s output with ``retain_grad`` for d(target logit)/dA."""
    import copy
    explicit = copy.deepcopy(model)
    probabilities: list[Tensor] = []

    def keep(_module: nn.Module, _inputs: tuple, output: Tensor) -> None:
        output.retain_grad()
        probabilities.append(output)

    for block in explicit.blocks:
        block.attn.fused_attn = False
        block.attn.attn_drop.register_forward_hook(keep)
    explicit(x).gather(1, target[:, None]).sum().backward()
    return [p.detach() for p in probabilities], [p.grad for p in probabilities]


@pytest.mark.parametrize("options, explicit_first_block", [({}, False), ({"qk_norm": True, "reg_tokens": 2}, False),
                                                           ({}, True)],
                         ids=["fused", "qk_norm+registers", "first_block_explicit"])
def test_timm_capture_is_exact_and_leaves_the_model_as_found(images, targets, options, explicit_first_block):
    model = tiny_timm_vit(**options)
    if explicit_first_block:
        model.blocks[0].attn.fused_attn = False  # timm's non-fused path, which calls attn_drop
    fused = [block.attn.fused_attn for block in model.blocks]
    before = ModelState.of(model)
    plain = model(images)
    logits, captured = forward_with_attention(model, images, keep_graph=True)
    assert torch.equal(logits, plain)
    assert [block.attn.fused_attn for block in model.blocks] == fused
    assert ModelState.of(model) == before
    assert captured.names == ["blocks.0.attn", "blocks.1.attn"]
    reference, reference_grads = timm_reference(model, images, targets)
    grads = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), captured.probabilities)
    for mine, theirs, grad, their_grad in zip(captured.probabilities, reference, grads, reference_grads):
        torch.testing.assert_close(mine.detach(), theirs, **PROBABILITY_TOLERANCE)
        torch.testing.assert_close(grad, their_grad, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("name", ATTENTION_METHODS)
def test_timm_vit_through_every_attention_method(name, images, targets, maps_close):
    model = tiny_timm_vit(reg_tokens=2)
    before, fused = ModelState.of(model), [block.attn.fused_attn for block in model.blocks]
    method = adapters.get(name)
    maps = method.attribute(model, images, targets)
    assert maps.shape == (8, 1, 32, 32) and torch.isfinite(maps).all()
    assert ModelState.of(model) == before and [block.attn.fused_attn for block in model.blocks] == fused
    assert method.diagnostics["grid"] == {"prefix": 3, "h": 4, "w": 4}, "class token and 2 registers dropped"
    maps_close(torch.cat([method.attribute(model, images[i:i + 3], targets[i:i + 3]) for i in range(0, 8, 3)]), maps)


def test_timm_raw_attention_drops_every_prefix_token(images):
    model = tiny_timm_vit(reg_tokens=2)
    reference, _ = timm_reference(model, images, torch.zeros(8, dtype=torch.long))
    expected = upsample(reference[-1].mean(1)[:, 0, 3:].reshape(8, 1, 4, 4), (32, 32), "bilinear")
    torch.testing.assert_close(adapters.get("raw_attention").attribute(model, images, 0), expected,
                               atol=1e-6, rtol=1e-5)


def test_timm_attention_mask_is_refused(images):
    model = tiny_timm_vit()
    tokens = model.patch_embed(images[:1])
    tokens = model._pos_embed(tokens)
    mask = torch.zeros(1, 1, tokens.shape[1], tokens.shape[1])
    before = ModelState.of(model)
    with pytest.raises(AttributionError, match="'blocks.0.attn' is called with attn_mask"):
        with torch.no_grad(), capture_attention(model):
            model.blocks[0](tokens, attn_mask=mask)
    assert ModelState.of(model) == before
