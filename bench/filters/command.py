"""``python -m bench filters MODEL``: load a zoo entry or build a registered model, write the figure."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from torch import Tensor, nn

from ..models.spec import ModelSpec
from .figure import filters_figure
from .layers import FilterError


def parse_filters(text: str | None) -> list[int] | None:
    """``"0,1,2"`` -> ``[0, 1, 2]``; None stays None (the figure picks the most active filters)."""
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise FilterError(f"--filters expects comma-separated integers such as 0,1,2, got {text!r}") from None


def load_model(name: str, weights: str | None, n_images: int, seed: int) -> tuple[nn.Module, ModelSpec, Tensor]:
    """``(model, spec, images_x)`` for a zoo entry (trained on first use) or a registered model spec.

    A registered spec is built from ``seed`` (random init) unless ``weights`` is given; its images
    are synthetic shapes, resized by the spec's preprocessing.
    """
    from .. import zoo
    from ..datasets import SyntheticShapes
    from ..models import get_spec, list_models

    if name in zoo.ENTRIES:
        if weights is not None:
            raise FilterError(f"{name} is a zoo entry with its own trained weights; --weights is for registered models")
        entry = zoo.load(name)
        return entry.model, entry.spec, entry.batch(n_images)[0]
    try:
        spec = get_spec(name)
    except KeyError as error:
        raise FilterError(f"unknown model {name!r}: neither a zoo entry ({', '.join(zoo.ENTRIES)}) nor a "
                          f"registered model ({', '.join(list_models())}) ({error.args[0]})") from None
    model = spec.build(weights, seed=seed)
    if spec.modality == "text":  # a user's BERT: the synthetic sentences in its own tokenizer
        from ..text_data import text_model_and_sentences

        return model, spec, text_model_and_sentences(name, n_images, seed)[2]
    images = SyntheticShapes(n_images, image_size=max(32, spec.input_size[0]), seed=seed).batch(range(n_images)).images
    return model, spec, spec.preprocess(images)


def run(args: argparse.Namespace) -> Path:
    """Write the figure (and its JSON sidecar) for the parsed command line; return the PNG's path."""
    from ..device import resolve_device

    filters = parse_filters(args.filters)
    if args.n_images < 1 or args.steps < 0:
        raise FilterError("--n-images must be at least 1 and --steps at least 0")
    device = resolve_device(args.device).torch_device
    model, spec, images_x = load_model(args.model, args.weights, args.n_images, args.seed)
    if spec.modality == "text":
        raise FilterError(f"filters are views of an image model's convolutions; {args.model} takes text "
                          "(see the attention and embeddings commands)")
    model = model.to(device)
    out = Path(args.out) if args.out else Path("results") / "filters" / f"{args.model}.png"
    summary = filters_figure(model, spec, images_x.to(device), out, layer=args.layer, filters=filters,
                             n_filters=args.n_filters, n_images=args.n_images, steps=args.steps, seed=args.seed)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return out
