"""A sequence classifier over token ids: the one object the text contract is written against.

``TokenClassifier(hf_model, vocab, ...)`` wraps a Hugging Face ``*ForSequenceClassification``
(BERT in the zoo) so that it maps token ids (N, L) to logits (N, K), like an image model maps
(N, C, H, W). The attention mask is carried by the ids: every position that holds ``pad_id`` is
masked out (``attention_mask = ids != pad_id``), so every method, score and perturbation passes one
tensor, and removing a token from attention is writing ``pad_id`` there. (The cost: a pad token
that should be attended cannot be expressed; BERT never attends its padding.)

What the adapters need from it: ``embeddings`` (the word-embedding layer, where the gradient
methods attribute), ``vocab`` (id -> token, for LIME's text explainer and the figures),
``special_ids`` (positions holding them are never perturbed and get 0 in every map) and
``replacement_id`` (``[MASK]``: what occlusion, KernelSHAP, LIME, the integrated-gradients
baseline and the removal scores put in place of a removed token).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn


class TokenClassifier(nn.Module):
    """(N, L) long token ids -> (N, K) logits through ``hf_model(input_ids, attention_mask).logits``."""

    modality = "text"

    def __init__(self, hf_model: nn.Module, vocab: Sequence[str], *, pad_id: int, cls_id: int, sep_id: int,
                 replacement_id: int, tokenizer: Any = None) -> None:
        super().__init__()
        self.hf_model = hf_model
        #: A ``tokenizers.Tokenizer`` that turns raw text into this model's ids (optional: without it,
        #: :meth:`encode_text` splits on whitespace and looks the words up).
        self.tokenizer = tokenizer
        self.vocab: tuple[str, ...] = tuple(vocab)
        self.pad_id, self.cls_id, self.sep_id = int(pad_id), int(cls_id), int(sep_id)
        self.replacement_id = int(replacement_id)
        self.token_ids = {token: i for i, token in enumerate(self.vocab)}

    @property
    def vocab_size(self) -> int:
        return int(self.embeddings.num_embeddings)

    @property
    def max_length(self) -> int:
        return int(self.hf_model.config.max_position_embeddings)

    @property
    def special_ids(self) -> tuple[int, int, int]:
        return (self.pad_id, self.cls_id, self.sep_id)

    @property
    def embeddings(self) -> nn.Embedding:
        """The word-embedding layer (Captum's layer methods attribute to its output)."""
        return self.hf_model.get_input_embeddings()

    def editable(self, ids: Tensor) -> Tensor:
        """(N, L) bool: the positions a method may perturb and a map may weigh (not [CLS], [SEP], [PAD])."""
        return ~torch.isin(ids, torch.tensor(self.special_ids, device=ids.device))

    def forward(self, ids: Tensor) -> Tensor:
        return self.hf_model(input_ids=ids, attention_mask=(ids != self.pad_id).long()).logits

    def encode(self, tokens: Sequence[Sequence[str]]) -> Tensor:
        """Token strings (already split, no specials) -> ids by vocabulary lookup, unknowns as [UNK]
        when the vocabulary has it. Inverse of reading ``vocab`` at the ids: no re-tokenisation."""
        unk = self.token_ids.get("[UNK]")
        rows = []
        for sentence in tokens:
            row = []
            for token in sentence:
                if token not in self.token_ids and unk is None:
                    raise KeyError(f"token {token!r} is not in the vocabulary")
                row.append(self.token_ids.get(token, unk))
            rows.append(row)
        return torch.tensor(rows, dtype=torch.long)

    def encode_text(self, texts: Sequence[str]) -> Tensor:
        """Raw sentences -> ids (N, L): ``[CLS] tokens [SEP]`` padded with [PAD] to the longest (or the
        tokenizer's own padding), at most ``max_length`` tokens."""
        if self.tokenizer is not None:
            rows = [e.ids for e in self.tokenizer.encode_batch(list(texts))]
        else:
            rows = [[self.cls_id, *self.encode([text.lower().split()]).tolist()[0], self.sep_id] for text in texts]
        rows = [row[:self.max_length - 1] + [self.sep_id] if len(row) > self.max_length else row for row in rows]
        width = max(len(row) for row in rows)
        return torch.tensor([row + [self.pad_id] * (width - len(row)) for row in rows], dtype=torch.long)

    def tokens(self, ids: Tensor) -> list[list[str]]:
        return [[self.vocab[i] for i in row] for row in ids.tolist()]


def from_pretrained(path: str | Path) -> TokenClassifier:
    """A user's BERT-style classifier from a local folder (``save_pretrained`` layout with a
    ``tokenizer.json`` or ``vocab.txt``), hub access off: never a download. Loaded with eager
    attention, which the attention methods read."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForSequenceClassification

    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"no model folder at {folder}")
    model = AutoModelForSequenceClassification.from_pretrained(str(folder), local_files_only=True,
                                                               attn_implementation="eager").eval()
    vocab = _vocabulary(folder)
    tokenizer = None
    if (folder / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))

    def special(token: str) -> int:
        if token not in vocab:
            raise ValueError(f"{folder}: the vocabulary has no {token} token")
        return vocab.index(token)

    replacement = "[MASK]" if "[MASK]" in vocab else "[UNK]"
    return TokenClassifier(model, vocab, pad_id=special("[PAD]"), cls_id=special("[CLS]"), sep_id=special("[SEP]"),
                           replacement_id=special(replacement), tokenizer=tokenizer).eval()


def _vocabulary(folder: Path) -> list[str]:
    if (folder / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        mapping = Tokenizer.from_file(str(folder / "tokenizer.json")).get_vocab(with_added_tokens=True)
        vocab = [""] * (max(mapping.values()) + 1)
        for token, i in mapping.items():
            vocab[i] = token
        return vocab
    if (folder / "vocab.txt").is_file():
        return (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
    raise FileNotFoundError(f"{folder} has neither tokenizer.json nor vocab.txt")
