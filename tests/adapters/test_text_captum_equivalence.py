"""Our token methods are Captum's layer methods on the embedding layer (and lime's text explainer),
reduced over the embedding dimension as documented."""
from __future__ import annotations

import numpy as np
import torch
from captum.attr import LayerGradientXActivation, LayerIntegratedGradients
from lime.lime_text import LimeTextExplainer

import adapters
from adapters.token_gradients import baseline_ids


def _zero_specials(model, ids, maps):
    return maps.masked_fill(~model.editable(ids), 0)


def test_integrated_gradients_is_layer_integrated_gradients(tiny_bert, sentences):
    ids, labels = sentences[0][:3], sentences[1][:3]
    ours = adapters.get("integrated_gradients", n_steps=8).attribute(tiny_bert, ids, labels)
    reference = LayerIntegratedGradients(tiny_bert, tiny_bert.embeddings).attribute(
        ids, baselines=baseline_ids(tiny_bert, ids), target=labels, n_steps=8, method="gausslegendre")
    torch.testing.assert_close(ours, _zero_specials(tiny_bert, ids, reference.sum(-1).float()), rtol=1e-4, atol=1e-8)


def test_saliency_and_input_x_gradient_are_layer_gradients(tiny_bert, sentences):
    ids, labels = sentences[0][:3], sentences[1][:3]
    layer = LayerGradientXActivation(tiny_bert, tiny_bert.embeddings, multiply_by_inputs=False)
    grad = layer.attribute(ids, target=labels)
    gxa = LayerGradientXActivation(tiny_bert, tiny_bert.embeddings).attribute(ids, target=labels)
    torch.testing.assert_close(adapters.get("saliency").attribute(tiny_bert, ids, labels),
                               _zero_specials(tiny_bert, ids, grad.abs().amax(-1)))
    torch.testing.assert_close(adapters.get("input_x_gradient").attribute(tiny_bert, ids, labels),
                               _zero_specials(tiny_bert, ids, gxa.sum(-1)))


def test_lime_is_the_lime_text_explainer(tiny_bert, sentences):
    ids, labels = sentences[0][:1], sentences[1][:1]
    method = adapters.get("lime", n_samples=64, seed=3)
    ours = method.attribute(tiny_bert, ids, labels)
    positions = tiny_bert.editable(ids)[0].nonzero()[:, 0]
    tokens = [tiny_bert.vocab[t] for t in ids[0, positions].tolist()]
    from adapters.seeding import image_seeds

    def classifier_fn(texts):
        rows = ids.repeat(len(texts), 1)
        rows[:, positions] = tiny_bert.encode([t.split(" ") for t in texts])
        with torch.no_grad():
            return torch.softmax(tiny_bert(rows), 1).double().numpy()

    explainer = LimeTextExplainer(kernel_width=25, bow=False, split_expression=" ", mask_string="[MASK]",
                                  random_state=image_seeds(ids, 3)[0] % 2**32)
    explanation = explainer.explain_instance(" ".join(tokens), classifier_fn, labels=(int(labels[0]),),
                                             num_features=len(tokens), num_samples=64)
    expected = np.zeros(len(tokens))
    for feature, weight in explanation.local_exp[int(labels[0])]:
        expected[feature] = weight
    torch.testing.assert_close(ours[0, positions].double(), torch.from_numpy(expected), rtol=1e-4, atol=1e-6)
