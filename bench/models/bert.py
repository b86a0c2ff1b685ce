"""BERT-style text classifiers: the zoo's small BERT over the synthetic vocabulary, and a user's
BERT from a local folder (``bert:<path>``), both wrapped as :class:`adapters.token_model.TokenClassifier`.

The zoo's configuration is built here, offline: 2 encoder layers, hidden size 64, 2 heads,
intermediate 128, 16 positions, eager attention (the attention methods read its probabilities).
Randomisation blocks, from the logits down: classifier, pooler, each encoder layer (last first),
embeddings.
"""
from __future__ import annotations

import os

from torch import nn

from adapters.token_model import TokenClassifier, from_pretrained

from ..datasets import text_vocab as tv
from .blocks import Block
from .registry import register_model, register_resolver
from .spec import ModelSpec

LAYERS = 2


def _bert_tiny(num_classes: int) -> nn.Module:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=len(tv.VOCAB), hidden_size=64, num_hidden_layers=LAYERS, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=tv.MAX_LENGTH, type_vocab_size=1,
                        num_labels=num_classes, pad_token_id=tv.VOCAB.index("[PAD]"), attn_implementation="eager")
    ids = {t: i for i, t in enumerate(tv.VOCAB)}
    return TokenClassifier(BertForSequenceClassification(config), tv.VOCAB, pad_id=ids["[PAD]"], cls_id=ids["[CLS]"],
                           sep_id=ids["[SEP]"], replacement_id=ids["[MASK]"], tokenizer=tv.tokenizer())


def bert_blocks(n_layers: int) -> tuple[Block, ...]:
    """Classifier, pooler, encoder layers from the last down, embeddings: every parameter once."""
    root = "hf_model"
    return (Block("classifier", (f"{root}.classifier",)), Block("pooler", (f"{root}.bert.pooler",)),
            *(Block(f"layer{i}", (f"{root}.bert.encoder.layer.{i}",)) for i in reversed(range(n_layers))),
            Block("embeddings", (f"{root}.bert.embeddings",)))


@register_model
def bert_tiny() -> ModelSpec:
    return ModelSpec(name="bert_tiny", builder=_bert_tiny, family="bert", modality="text",
                     num_classes=len(tv.CLASS_NAMES), input_size=(tv.MAX_LENGTH,), blocks=bert_blocks(LAYERS),
                     class_names=tv.CLASS_NAMES,
                     description="2-layer BERT (hidden 64, 2 heads) over the synthetic text vocabulary")


def _folder_spec(name: str) -> ModelSpec:
    path = name.split(":", 1)[1]
    model = from_pretrained(path)  # read once to learn its size; build() reads it again
    config = model.hf_model.config
    labels = getattr(config, "id2label", None) or {}
    return ModelSpec(name=name, builder=lambda _k: from_pretrained(path), family="bert", modality="text",
                     num_classes=int(config.num_labels), input_size=(model.max_length,),
                     blocks=bert_blocks(int(config.num_hidden_layers)),
                     class_names=tuple(labels[i] for i in sorted(labels)) if labels else (),
                     description=f"a local BERT-style classifier from {path}")


register_resolver("bert:", _folder_spec)
