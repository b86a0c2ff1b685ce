"""The token scores: registered for text only, per-sentence (batch-invariant), the bounds hold on
the controls, and the protocol's fixed points (oracle localisation 1, ERASER counts)."""
from __future__ import annotations

import math

import pytest
import torch

import adapters
import metrics

TEXT = [name for name in metrics.names() if "text" in metrics.get(name).modalities]


def test_token_scores_are_registered_for_text():
    assert set(TEXT) == {"token_deletion", "token_insertion", "eraser_comprehensiveness", "eraser_sufficiency",
                         "token_localisation_auc", "token_top_k_precision", "token_randomisation_cascading",
                         "token_random_logit"}
    assert metrics.get("token_localisation_auc").category == "localisation"
    assert all(metrics.get(name).modalities == ("image",) for name in metrics.names() if name not in TEXT)


def _inputs(spec, model, evidence, method):
    from bench.models import get_spec

    available = {"mask": evidence, "method": method, "blocks": get_spec("bert_tiny").randomisation_blocks(model)}
    return {name: available[name] for name in spec.inputs}


@pytest.mark.parametrize("name", TEXT)
def test_token_score_is_batch_invariant_and_bounded(name, tiny_bert, sentences):
    ids, labels, evidence = sentences
    spec = metrics.get(name)
    method = adapters.get("saliency")
    maps = method.attribute(tiny_bert, ids, labels)
    full = spec.compute(model=tiny_bert, x=ids, target=labels, attributions=maps,
                        **_inputs(spec, tiny_bert, evidence, method))
    part = spec.compute(model=tiny_bert, x=ids[2:4], target=labels[2:4], attributions=maps[2:4],
                        **_inputs(spec, tiny_bert, evidence[2:4], method))
    torch.testing.assert_close(part.scores, full.scores[2:4], rtol=1e-5, atol=1e-6, equal_nan=True)
    low, high = spec.bounds
    finite = full.scores[~torch.isnan(full.scores)]
    assert ((finite >= low - 1e-6) & (finite <= high + 1e-6)).all()


def test_oracle_localisation_is_perfect_and_random_is_near_chance(tiny_bert, sentences):
    ids, labels, evidence = sentences
    oracle = adapters.get("oracle").attribute(tiny_bert, ids, labels, mask=evidence)
    for name in ("token_localisation_auc", "token_top_k_precision"):
        assert (metrics.get(name).compute(model=tiny_bert, x=ids, target=labels, attributions=oracle,
                                          mask=evidence).scores == 1).all()


def test_eraser_rationale_sizes_follow_the_fractions(tiny_bert, sentences):
    ids, labels, _ = sentences
    maps = adapters.get("random").attribute(tiny_bert, ids, labels)
    result = metrics.get("eraser_comprehensiveness").compute(model=tiny_bert, x=ids, target=labels, attributions=maps)
    n = tiny_bert.editable(ids).sum(1)
    expected = torch.stack([torch.clamp(torch.tensor([math.ceil(q * int(k) - 1e-9) for k in n]), min=1)
                            for q in (0.01, 0.05, 0.1, 0.2, 0.5)], dim=1)
    assert torch.equal(result.extras["rationale_tokens"], expected)


def test_deletion_curve_endpoints(tiny_bert, sentences):
    """Step 0 is the clean sentence; the last step has every editable token masked."""
    ids, labels, _ = sentences
    maps = adapters.get("random").attribute(tiny_bert, ids, labels)
    curves = metrics.get("token_deletion").compute(model=tiny_bert, x=ids, target=labels, attributions=maps).curves
    inserted = metrics.get("token_insertion").compute(model=tiny_bert, x=ids, target=labels, attributions=maps).curves
    with torch.no_grad():
        probabilities = tiny_bert(ids).softmax(1)
    predicted = probabilities.argmax(1)
    torch.testing.assert_close(curves[:, 0], probabilities.gather(1, predicted[:, None])[:, 0])
    torch.testing.assert_close(curves[:, -1], inserted[:, 0])
    torch.testing.assert_close(inserted[:, -1], curves[:, 0])


def test_image_scores_refuse_tokens_and_token_scores_refuse_images(tiny_bert, sentences):
    ids, labels, _ = sentences
    maps = torch.zeros(ids.shape)
    with pytest.raises(ValueError, match="this model takes token ids"):
        metrics.get("deletion").compute(model=tiny_bert, x=ids, target=labels, attributions=maps)
    cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    cnn(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="scores token ids"):
        metrics.get("token_deletion").compute(model=cnn.eval(), x=torch.zeros(2, 3, 8, 8), target=0,
                                              attributions=torch.zeros(2, 1, 8, 8))
