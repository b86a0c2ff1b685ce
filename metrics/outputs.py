"""Which model output a score reads: the class (predicted or given) and the quantity (probability or
logit)."""
from __future__ import annotations

from torch import Tensor

from .params import Choice
from .validation import check_choice

SCORES = ("probability", "logit")
CLASSES = ("predicted", "target")


def score_param(default: str) -> Choice:
    """The declaration of a score's ``score`` parameter (which output it reads)."""
    return Choice(default, SCORES)


def target_class_param(default: str) -> Choice:
    """The declaration of a score's ``target_class`` parameter (which class it reads)."""
    return Choice(default, CLASSES)


def score_classes(clean_logits: Tensor, target: Tensor, target_class: str) -> Tensor:
    """The class each image is scored on (N,): the clean prediction (RISE) or the given target."""
    check_choice("target_class", target_class, CLASSES)
    return clean_logits.argmax(1) if target_class == "predicted" else target


def class_score(logits: Tensor, classes: Tensor, score: str) -> Tensor:
    """The ``score`` of class ``classes[m]`` in row ``m`` of ``logits`` (M, K): (M,)."""
    check_choice("score", score, SCORES)
    values = logits.float().softmax(1) if score == "probability" else logits.float()
    return values.gather(1, classes.view(-1, 1)).squeeze(1)
