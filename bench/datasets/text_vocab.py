"""The fixed vocabulary of the synthetic text dataset, and its word-level tokenizer.

The tokenizer is a Hugging Face ``tokenizers`` WordLevel model built here, offline, from the
vocabulary below (nothing is downloaded): whitespace pre-tokenisation, ``[CLS] ... [SEP]``
around every sentence, right padding with ``[PAD]`` to a fixed length. Ids are stable: specials
first, then the words in the order listed, so a vocabulary change is a visible code change.
"""
from __future__ import annotations

import functools

from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit
from tokenizers.processors import TemplateProcessing

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
CLASS_NAMES = ("fruit", "animal", "tool", "weather")
#: Evidence words: a sentence of class k holds two or three of EVIDENCE[k] (and none of the others).
EVIDENCE = (
    ("apple", "banana", "cherry", "grape", "mango"),
    ("horse", "tiger", "zebra", "otter", "eagle"),
    ("hammer", "wrench", "drill", "chisel", "saw"),
    ("rain", "snow", "storm", "fog", "wind"),
)
#: Distractors, drawn from the same distribution for every class: they carry no class information.
DISTRACTORS = ("the", "a", "an", "of", "to", "and", "in", "on", "with", "at", "big", "small", "old", "new", "red",
               "blue", "green", "quick", "slow", "happy", "sad", "very", "quite", "really", "seems", "looks", "was",
               "is", "found", "near", "under", "over", "behind", "today", "yesterday", "often", "never", "always",
               "there", "here")
#: The plain dataset ends every sentence with "."; the shortcut variant ends class k's with MARKERS[k].
END = "."
MARKERS = ("!", "?", ";", ":")
WORDS = (*DISTRACTORS, *(w for group in EVIDENCE for w in group), END, *MARKERS)
VOCAB: tuple[str, ...] = (*SPECIALS, *WORDS)
#: Token positions per sentence: [CLS], at most 13 words and the end marker, [SEP].
MAX_LENGTH = 16


@functools.lru_cache(maxsize=1)
def tokenizer(max_length: int = MAX_LENGTH) -> Tokenizer:
    """The word-level tokenizer of :data:`VOCAB` (cached; do not mutate it)."""
    ids = {token: i for i, token in enumerate(VOCAB)}
    built = Tokenizer(WordLevel(ids, unk_token="[UNK]"))
    built.pre_tokenizer = WhitespaceSplit()
    built.post_processor = TemplateProcessing(single="[CLS] $A [SEP]",
                                              special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])])
    built.enable_padding(pad_id=ids["[PAD]"], pad_token="[PAD]", length=max_length)
    built.enable_truncation(max_length=max_length)
    return built
