"""Sentences for a text model by name: a zoo entry's held-out split, or the synthetic sentences
encoded with a registered model's own tokenizer (``bert:<folder>``)."""
from __future__ import annotations

from torch import Tensor, nn

from .datasets.base import Batch
from .datasets.text import SyntheticText
from .models.spec import ModelSpec


def text_model_and_sentences(name: str, n: int, seed: int = 0) -> tuple[nn.Module, ModelSpec, Tensor, Tensor]:
    """(model in eval mode, spec, ids (n, L), labels (n,)); a model that does not take text is refused."""
    from . import zoo
    from .models import get_spec

    if name in zoo.ENTRIES:
        trained = zoo.load(name)
        if trained.spec.modality != "text":
            raise ValueError(f"{name} takes images; the embedding analysis is for text models")
        ids, labels, _ = trained.batch(n)
        return trained.model, trained.spec, ids, labels
    spec = get_spec(name)
    if spec.modality != "text":
        raise ValueError(f"{name} takes images; the embedding analysis is for text models")
    model = spec.build(seed=seed)
    data = SyntheticText(n, seed=seed)
    return model, spec, model.encode_text(data.texts(range(n))), data.batch(range(n)).labels


def retokenised(model: nn.Module, data: SyntheticText, batch: Batch) -> Batch:
    """``batch`` of ``data`` with the ids of ``model``'s own tokenizer. The evidence positions are
    kept only when that tokenizer gives the dataset's own ids (the same word-level vocabulary);
    otherwise word pieces move them, and the batch has no ground truth (localisation and the oracle
    are then not run, as on photographs)."""
    ids = model.encode_text(data.texts(range(len(batch.labels))))
    same = ids.shape == batch.images.shape and bool((ids == batch.images).all())
    return Batch(ids, batch.labels, batch.masks if same else None)
