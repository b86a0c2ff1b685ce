"""Synthetic text classification with ground-truth evidence tokens, and its shortcut variant.

Each sentence holds two or three evidence words of its class (:data:`text_vocab.EVIDENCE`) at
random positions among distractors shared by all classes, and ends with ".". A model that
classifies well must read the evidence words; their positions are the ground truth.

The *shortcut* variant (``shortcut=True``, the text analogue of the image watermark) draws the
evidence words of a random class, independent of the label, and ends class k's sentences with the
marker ``MARKERS[k]`` instead of ".": only the marker predicts the class, and its position is the
ground truth. ``marker="none"`` ends with "." (the marker removed) and ``"shifted"`` with the next
class's marker, to show that the model leans on it.

``token_dropout`` (the training split of the zoo uses 0.15) replaces each word independently by
``[MASK]`` with that probability: the model then reads [MASK] as "no word here", the replacement
token of occlusion, KernelSHAP, LIME and the removal scores, instead of meeting it first when
explained. Labels and evidence positions are kept.

Every sentence is a pure function of ``(seed, split, index)``. ``batch`` returns the token ids
(N, L) as ``images``, the labels, and the evidence positions (N, L) bool as ``masks``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from . import text_vocab as tv
from .base import Batch, DatasetError

SPLITS = {"train": 0, "test": 1, "val": 2}
MARKER_VARIANTS = ("label", "none", "shifted")
MIN_WORDS, MAX_WORDS = 8, 13


class SyntheticText(Dataset):
    """``n`` sentences of ``split``; ``self[i]`` is ``(ids (L,), label, evidence (L,) bool)``."""

    name = "text"
    modality = "text"
    has_masks = True
    class_names = tv.CLASS_NAMES

    def __init__(self, n: int = 500, *, seed: int = 0, split: str = "test", shortcut: bool = False,
                 marker: str = "label", token_dropout: float = 0.0, num_classes: int = len(tv.CLASS_NAMES),
                 image_size: int | None = None) -> None:
        if split not in SPLITS:
            raise DatasetError(f"unknown split {split!r}; choose from {sorted(SPLITS)}")
        if marker not in MARKER_VARIANTS:
            raise DatasetError(f"marker must be one of {MARKER_VARIANTS}, got {marker!r}")
        if num_classes != len(tv.CLASS_NAMES):
            raise DatasetError(f"the text dataset has {len(tv.CLASS_NAMES)} classes, got num_classes={num_classes}")
        if not 0.0 <= token_dropout < 1.0:
            raise DatasetError(f"token_dropout must be in [0, 1), got {token_dropout}")
        self.n, self.seed, self.split, self.shortcut = int(n), int(seed), split, bool(shortcut)
        self.marker, self.token_dropout, self.num_classes = marker, float(token_dropout), num_classes
        self.name = "text_shortcut" if shortcut else "text"

    def config(self) -> dict:
        return {"dataset": self.name, "n": self.n, "seed": self.seed, "split": self.split, "marker": self.marker,
                "token_dropout": self.token_dropout, "max_length": tv.MAX_LENGTH, "vocab_size": len(tv.VOCAB)}

    def __len__(self) -> int:
        return self.n

    def sentence(self, index: int) -> tuple[list[str], int, list[int]]:
        """(words without [CLS]/[SEP], label, evidence word positions) of sentence ``index``."""
        if not 0 <= index < self.n:
            raise IndexError(f"index {index} out of range for {self.n} sentences")
        rng = np.random.default_rng([self.seed, SPLITS[self.split], index, 7])
        label = int(rng.integers(self.num_classes))
        n_words = int(rng.integers(MIN_WORDS, MAX_WORDS + 1))
        words = [tv.DISTRACTORS[i] for i in rng.integers(len(tv.DISTRACTORS), size=n_words)]
        group = int(rng.integers(self.num_classes)) if self.shortcut else label
        n_evidence = int(rng.integers(2, 4))
        positions = sorted(int(p) for p in rng.choice(n_words, size=n_evidence, replace=False))
        for p in positions:
            words[p] = tv.EVIDENCE[group][int(rng.integers(len(tv.EVIDENCE[group])))]
        dropped = rng.random(n_words) < self.token_dropout
        words = ["[MASK]" if drop else w for w, drop in zip(words, dropped)]
        if self.shortcut:
            shift = {"label": 0, "shifted": 1}.get(self.marker)
            words.append(tv.END if shift is None else tv.MARKERS[(label + shift) % self.num_classes])
            evidence = [n_words] if shift is not None else []
        else:
            words.append(tv.END)
            evidence = positions
        return words, label, evidence

    def texts(self, indices: Sequence[int] | range) -> list[str]:
        """The sentences as strings (words joined by spaces), for display and for the tokenizer."""
        return [" ".join(self.sentence(i)[0]) for i in indices]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        batch = self.batch([index])
        return batch.images[0], int(batch.labels[0]), batch.masks[0]

    def batch(self, indices: Sequence[int] | range) -> Batch:
        """Token ids (N, L) long (``[CLS] words [SEP] [PAD]...``), labels (N,), evidence (N, L) bool."""
        items = [self.sentence(i) for i in indices]
        if not items:
            raise DatasetError(f"empty selection from dataset {self.name!r}")
        encoded = tv.tokenizer().encode_batch([" ".join(words) for words, _, _ in items])
        ids = torch.tensor([e.ids for e in encoded], dtype=torch.long)
        evidence = torch.zeros(ids.shape, dtype=torch.bool)
        for row, (_, _, positions) in enumerate(items):
            evidence[row, [p + 1 for p in positions]] = True  # +1: [CLS] comes first
        labels = torch.tensor([label for _, label, _ in items], dtype=torch.long)
        return Batch(ids, labels, evidence)
