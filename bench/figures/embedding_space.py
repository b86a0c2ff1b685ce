"""Contextual embeddings of a text model, and the distances the course report's analysis reads.

``hidden_states(model, ids)``: the output of the embedding layer and of every encoder layer,
(layers + 1, N, L, E), from the Hugging Face model's own ``output_hidden_states``. The same word
in different sentences gets a different vector in every layer but the first (the embeddings add
only its position); how far apart those vectors are, against the vectors of different words, is
what :func:`word_distances` measures per layer: mean Euclidean and cosine distances over pairs of
occurrences from *different* sentences (the same word twice in one sentence is not a pair),
at most ``max_occurrences`` occurrences of each side drawn with a seeded generator.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@torch.no_grad()
def hidden_states(model: nn.Module, ids: Tensor, batch_size: int = 128) -> Tensor:
    """(layers + 1, N, L, E) float32: the embeddings' output, then each encoder layer's."""
    parts = []
    for start in range(0, len(ids), batch_size):
        chunk = ids[start:start + batch_size]
        out = model.hf_model(input_ids=chunk, attention_mask=(chunk != model.pad_id).long(), output_hidden_states=True)
        parts.append(torch.stack(out.hidden_states).float())
    return torch.cat(parts, dim=1)


def occurrences(ids: Tensor, token_id: int, limit: int, seed: int) -> Tensor:
    """(M, 2) (sentence, position) of ``token_id`` in ``ids``, at most ``limit``, a seeded sample."""
    found = (ids == token_id).nonzero()
    if len(found) > limit:
        found = found[torch.randperm(len(found), generator=torch.Generator().manual_seed(seed))[:limit]]
    return found


def other_tokens(model: nn.Module, ids: Tensor, token_id: int, limit: int, seed: int) -> Tensor:
    """(M, 2) occurrences of any other editable token (different words), a seeded sample."""
    found = (model.editable(ids) & (ids != token_id) & (ids != model.replacement_id)).nonzero()
    order = torch.randperm(len(found), generator=torch.Generator().manual_seed(seed + 1))[:limit]
    return found[order]


@dataclass
class LayerDistances:
    layer: int
    same_euclidean: float
    different_euclidean: float
    same_cosine: float
    different_cosine: float
    same_pairs: int
    different_pairs: int


def _pair_distances(a: Tensor, b: Tensor, a_rows: Tensor, b_rows: Tensor) -> tuple[float, float, int]:
    """Mean Euclidean and cosine distance over the pairs (a_i, b_j) from different sentences."""
    different = a_rows[:, None] != b_rows[None, :]
    euclidean = torch.cdist(a[None].double(), b[None].double())[0]
    cosine = 1 - torch.nn.functional.normalize(a.double(), dim=1) @ torch.nn.functional.normalize(b.double(), dim=1).T
    count = int(different.sum())
    if count == 0:
        return float("nan"), float("nan"), 0
    return float(euclidean[different].mean()), float(cosine[different].mean()), count


def word_distances(model: nn.Module, ids: Tensor, word: str, *, max_occurrences: int = 200,
                   seed: int = 0) -> list[LayerDistances]:
    """Per layer (0 = the embeddings' output): distances between the contextual embeddings of
    ``word`` in different sentences, and between ``word`` and other words."""
    if word not in model.token_ids:
        raise KeyError(f"word {word!r} is not in the model's vocabulary")
    token_id = model.token_ids[word]
    same = occurrences(ids, token_id, max_occurrences, seed)
    if len(same) < 2 or len(set(same[:, 0].tolist())) < 2:
        raise ValueError(f"word {word!r} occurs in fewer than two of the {len(ids)} sentences: nothing to compare")
    others = other_tokens(model, ids, token_id, max_occurrences, seed)
    states = hidden_states(model, ids)
    rows = []
    for layer, state in enumerate(states):
        a = state[same[:, 0], same[:, 1]]
        b = state[others[:, 0], others[:, 1]]
        same_e, same_c, same_n = _pair_distances(a, a, same[:, 0], same[:, 0])
        diff_e, diff_c, diff_n = _pair_distances(a, b, same[:, 0], others[:, 0])
        rows.append(LayerDistances(layer, same_e, diff_e, same_c, diff_c, same_n, diff_n))
    return rows


def pca_2d(points: Tensor) -> Tensor:
    """(M, E) -> (M, 2): the projection on the first two principal components (centred, by SVD),
    signs fixed so the largest loading of each component is positive (deterministic)."""
    centred = points.double() - points.double().mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    components = v[:2]
    signs = torch.sign(components.gather(1, components.abs().argmax(1, keepdim=True)))
    return (centred @ (components * signs).T).float()
