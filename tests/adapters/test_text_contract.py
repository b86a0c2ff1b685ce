"""The method contract on tokens: every method that declares the text modality, walked from the
registry, gives (N, L) float32 maps, zero on [CLS]/[SEP]/[PAD], batch-invariant, deterministic,
and leaves the model as it found it; image-only methods refuse a text model in one line."""
from __future__ import annotations

import pytest
import torch

import adapters
from adapters import AttributionError

TEXT = [name for name in adapters.names() if "text" in adapters.get_class(name).modalities]
IMAGE_ONLY = [name for name in adapters.names() if "text" not in adapters.get_class(name).modalities]
ISSUE = {"saliency", "input_x_gradient", "integrated_gradients", "occlusion", "lime", "kernel_shap", "raw_attention",
         "attention_rollout", "transformer_attribution", "random", "oracle"}


def build(name: str) -> adapters.Method:
    params = dict(adapters.get_class(name).quick_params())
    if name == "lime":
        params["n_samples"] = 64
    params.pop("segmentation_kwargs", None)
    return adapters.get(name, **params)


def explain(method, model, ids, target, evidence):
    return method.attribute(model, ids, target, **({"mask": evidence} if method.needs_mask else {}))


def test_the_issue_methods_declare_text():
    assert set(TEXT) == ISSUE


@pytest.mark.parametrize("name", TEXT)
def test_token_maps_shape_zero_on_specials_and_batch_invariant(name, tiny_bert, sentences):
    ids, labels, evidence = sentences
    method = build(name)
    maps = explain(method, tiny_bert, ids[:4], labels[:4], evidence[:4])
    assert maps.shape == ids[:4].shape and maps.dtype == torch.float32 and torch.isfinite(maps).all()
    assert (maps[~tiny_bert.editable(ids[:4])] == 0).all()
    assert not maps.requires_grad
    alone = explain(build(name), tiny_bert, ids[1:3], labels[1:3], evidence[1:3])
    torch.testing.assert_close(alone, maps[1:3], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", [n for n in TEXT if adapters.get_class(n).stochastic])
def test_token_maps_deterministic_for_a_seed(name, tiny_bert, sentences):
    ids, labels, evidence = sentences
    first = explain(build(name), tiny_bert, ids[:2], labels[:2], evidence[:2])
    torch.testing.assert_close(explain(build(name), tiny_bert, ids[:2], labels[:2], evidence[:2]), first)


@pytest.mark.parametrize("name", IMAGE_ONLY)
def test_image_only_methods_refuse_tokens_in_one_line(name, tiny_bert, sentences):
    ids, labels, _ = sentences
    with pytest.raises(AttributionError, match="this model takes token ids") as error:
        adapters.get(name).attribute(tiny_bert, ids[:1], labels[:1])
    assert "\n" not in str(error.value)


def test_attention_mask_is_folded_into_the_ids(tiny_bert, sentences):
    ids, labels, _ = sentences
    mask = (ids[:2] != tiny_bert.pad_id).long()
    mask[:, 5] = 0  # masking a word = writing [PAD] there
    method = adapters.get("saliency")
    masked = method.attribute(tiny_bert, ids[:2], labels[:2], attention_mask=mask)
    padded = ids[:2].clone()
    padded[:, 5] = tiny_bert.pad_id
    torch.testing.assert_close(masked, adapters.get("saliency").attribute(tiny_bert, padded, labels[:2]))
    assert (masked[:, 5] == 0).all()


@pytest.mark.parametrize("name", TEXT)
def test_token_cost_from_the_sentence_length(name):
    cost = build(name).cost(length=16, n_classes=4)
    assert cost.forward >= cost.backward >= 0
    if name == "occlusion":
        assert cost.forward == 17  # the sentence, then one forward per token position
