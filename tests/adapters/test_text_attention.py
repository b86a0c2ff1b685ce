"""The BERT attention capture (adapters/hf_attention.py) behind the one attention implementation."""
from __future__ import annotations

import pytest
import torch

import adapters
from adapters import AttributionError
from adapters.attention import attention_layers, capture_attention, forward_with_attention
from adapters.base import ModelState


def test_capture_reads_every_layer_and_leaves_the_model_untouched(tiny_bert, sentences):
    ids = sentences[0][:3]
    layers = attention_layers(tiny_bert)
    assert [layer.kind for layer in layers] == ["hf", "hf"] and layers[0].n_heads == 2
    before = ModelState.of(tiny_bert)
    with torch.no_grad():
        plain = tiny_bert(ids)
    for keep_graph in (False, True):
        logits, captured = forward_with_attention(tiny_bert, ids, keep_graph=keep_graph)
        assert torch.equal(logits.detach(), plain)  # bit for bit
        assert len(captured.probabilities) == 2 and captured.probabilities[0].shape == (3, 2, 16, 16)
    assert ModelState.of(tiny_bert) == before
    padded = ids == tiny_bert.pad_id
    assert (captured.probabilities[0].detach()[padded[:, None, None, :].expand(-1, 2, 16, -1)] == 0).all()


def test_gradient_through_the_captured_probabilities_is_the_models(tiny_bert, sentences):
    """d(logit)/dA from the capture equals autograd's gradient on the eager module's own A."""
    ids, labels = sentences[0][:2], sentences[1][:2]
    with torch.enable_grad():
        with capture_attention(tiny_bert, keep_graph=True) as captured:
            logits = tiny_bert(ids)
        ours = torch.autograd.grad(logits.gather(1, labels[:, None]).sum(), captured.probabilities)
        own = []
        handles = [module.register_forward_hook(lambda _m, _a, out: own.append(out[1]))
                   for module in (layer.module for layer in attention_layers(tiny_bert))]
        try:
            logits = tiny_bert(ids)
        finally:
            for handle in handles:
                handle.remove()
        reference = torch.autograd.grad(logits.gather(1, labels[:, None]).sum(), own)
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-8)


def test_raw_attention_is_the_last_layers_cls_row(tiny_bert, sentences):
    ids = sentences[0][:2]
    _, captured = forward_with_attention(tiny_bert, ids)
    expected = captured.probabilities[-1].mean(dim=1)[:, 0]
    expected = expected.masked_fill(~tiny_bert.editable(ids), 0)
    torch.testing.assert_close(adapters.get("raw_attention").attribute(tiny_bert, ids, 0), expected)


def test_sdpa_attention_is_refused_by_name(sentences):
    from bench.models import get_spec

    model = get_spec("bert_tiny").build(seed=0)
    model.hf_model.config._attn_implementation = "sdpa"
    with pytest.raises(AttributionError, match="attn_implementation='eager'"):
        adapters.get("raw_attention").attribute(model, sentences[0][:1], 0)
