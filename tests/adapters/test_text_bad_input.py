"""Bad input on the text contract: one clear line each, before any work."""
from __future__ import annotations

import pytest
import torch

import adapters
from adapters import AttributionError


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_ids_out_of_the_vocabulary(tiny_bert, sentences):
    ids = sentences[0][:2].clone()
    ids[1, 3] = tiny_bert.vocab_size + 7
    with pytest.raises(AttributionError, match="out of the vocabulary") as error:
        adapters.get("saliency").attribute(tiny_bert, ids, 0)
    assert "sentence 1, position 3" in _one_line(error)
    ids[1, 3] = -1
    with pytest.raises(AttributionError, match="out of the vocabulary"):
        adapters.get("saliency").attribute(tiny_bert, ids, 0)


def test_attention_mask_of_the_wrong_length(tiny_bert, sentences):
    ids = sentences[0][:2]
    with pytest.raises(AttributionError, match=r"attention_mask has shape \(2, 15\)") as error:
        adapters.get("saliency").attribute(tiny_bert, ids, 0, attention_mask=torch.ones(2, 15))
    _one_line(error)


def test_image_model_given_tokens(sentences):
    cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 2)).eval()
    with pytest.raises(AttributionError, match="integer token ids .* the model takes images") as error:
        adapters.get("saliency").attribute(cnn, sentences[0][:2], 0)
    _one_line(error)


def test_text_model_given_images(tiny_bert):
    with pytest.raises(AttributionError, match="takes token ids .* images go to an image model") as error:
        adapters.get("saliency").attribute(tiny_bert, torch.zeros(2, 3, 16, 16), 0)
    _one_line(error)


def test_too_long_and_missing_cls(tiny_bert, sentences):
    ids = sentences[0][:1]
    with pytest.raises(AttributionError, match="more than the model's 16 positions"):
        adapters.get("saliency").attribute(tiny_bert, torch.cat([ids, ids[:, 1:3]], dim=1), 0)
    with pytest.raises(AttributionError, match=r"does not start with \[CLS\]"):
        adapters.get("saliency").attribute(tiny_bert, ids.roll(1, dims=1), 0)


def test_attention_mask_on_an_image_model_and_bad_evidence(tiny_bert, sentences):
    cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    with pytest.raises(AttributionError, match="attention_mask is for text models"):
        adapters.get("saliency").attribute(cnn, torch.zeros(1, 3, 8, 8), 0, attention_mask=torch.ones(1, 8))
    with pytest.raises(AttributionError, match="token ids' shape"):
        adapters.get("oracle").attribute(tiny_bert, sentences[0][:2], 0, mask=torch.ones(2, 15))
