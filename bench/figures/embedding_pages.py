"""The embedding figures a run writes for each text model of its grid (``figures/embedding_*``)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import RunConfig

#: Sentences the embedding analyses read (held-out), and the words they show.
SENTENCES = 300
PROJECTION_WORDS = ("the", "very", "apple", "tiger", "hammer", "rain")
DISTANCE_WORDS = ("apple", "the")


def write_embedding_pages(config: "RunConfig", run_dir: Path) -> list[str]:
    """Projection and distance figures per text model of the grid; failures are returned (for the
    driver to print), not raised."""
    from ..grid import plan
    from ..settings import model_spec
    from ..text_data import text_model_and_sentences
    from .embeddings import embedding_distance_figure, embedding_projection_figure

    failures = []
    for model_name in sorted({g.model for g in plan(config)}):
        if model_spec(model_name).modality != "text":
            continue
        stem = model_name.replace("/", "_").replace(":", "_")
        try:
            model, spec, ids, labels = text_model_and_sentences(model_name, SENTENCES, config.seed)
            figures = run_dir / "figures"
            embedding_projection_figure(model, ids, labels, PROJECTION_WORDS,
                                        figures / f"embedding_projection_{stem}.png", class_names=spec.class_names,
                                        seed=config.seed)
            for word in DISTANCE_WORDS:
                if word in model.token_ids:
                    embedding_distance_figure(model, ids, word, figures / f"embedding_distances_{stem}_{word}.png",
                                              seed=config.seed)
        except Exception as error:  # a view is a nice-to-have: never lose the run for it
            failures.append(f"embedding figures for {model_name} failed: {type(error).__name__}: {error}")
    return failures
