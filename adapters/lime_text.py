"""LIME on token models through the ``lime`` package's own ``LimeTextExplainer``.

Per sentence: the editable tokens (not [CLS], [SEP], [PAD]) read from the model's vocabulary and
joined by single spaces are the explainer's text; ``split_expression=" "`` and ``bow=False`` make
every token occurrence its own feature, and a removed token becomes ``mask_string``, the model's
replacement token ([MASK]); ``classifier_fn`` maps the perturbed strings back to ids by vocabulary
lookup (no re-tokenisation, so word pieces stay the model's own) into the sentence's template and
returns the softmax on the model's device. The feature weights of the target class are the map.

``kernel_width`` is the image adapter's, on the cosine distance; lime_text measures that distance
in percent, so it is given ``100 * kernel_width``: the default 0.25 is lime_text's own default 25.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from lime.lime_text import LimeTextExplainer
from torch import Tensor, nn

from .base import Method
from .budget import rows_for_budget, spans
from .lime_common import numpy_seed, probabilities
from .seeding import image_seeds


def lime_text_maps(method: Method, model: nn.Module, ids: Tensor, target: Tensor) -> Tensor:
    """(N, L) LIME weights of the tokens for the target class, ``n_samples`` perturbations each."""
    batch = method.params["batch_size"] or max(64, rows_for_budget(model, ids, method.params["memory_mb"],
                                                                   backward=False))
    method.diagnostics["batch_size"] = batch
    editable = model.editable(ids)
    maps = torch.zeros(ids.shape, dtype=torch.float32, device=ids.device)
    weights = []
    for i, seed in enumerate(image_seeds(ids, method.params["seed"])):
        positions = editable[i].nonzero()[:, 0]
        tokens = [model.vocab[t] for t in ids[i, positions].tolist()]
        label = int(target[i])
        explainer = LimeTextExplainer(kernel_width=100 * method.params["kernel_width"], bow=False, split_expression=" ",
                                      mask_string=model.vocab[model.replacement_id], random_state=numpy_seed(seed))
        explanation = explainer.explain_instance(" ".join(tokens), _classifier_fn(model, ids[i], positions, batch),
                                                 labels=(label,), num_features=len(tokens),
                                                 num_samples=method.params["n_samples"])
        w = torch.zeros(len(tokens), dtype=torch.float64)
        for feature, value in explanation.local_exp[label]:
            w[feature] = value
        weights.append(w)
        maps[i, positions] = w.to(device=ids.device, dtype=torch.float32)
    method.diagnostics["token_weights"] = weights
    return maps


def _classifier_fn(model: nn.Module, template: Tensor, positions: Tensor,
                   batch: int) -> Callable[[list[str]], np.ndarray]:
    def classifier_fn(texts: list[str]) -> np.ndarray:
        rows = template.repeat(len(texts), 1)
        rows[:, positions] = model.encode([text.split(" ") for text in texts]).to(template.device)
        return torch.cat([probabilities(model, rows[s]) for s in spans(len(rows), batch)]).double().cpu().numpy()

    return classifier_fn
