"""The registered scores of this family (all but the sanity checks) with cheap protocol settings, and
the keyword arguments each needs: the registry walks in the invariance and bad-input tests use it."""
from __future__ import annotations

from typing import Any

import torch
from score_helpers import GradientMethod, box_masks, images, maps, tiny_cnn

import metrics

CHEAP = {
    "deletion": {"n_steps": 8}, "insertion": {"n_steps": 8},
    "road": {"fractions": [0.3, 0.7]}, "road_morf": {"fractions": [0.3, 0.7]}, "road_lerf": {"fractions": [0.3, 0.7]},
    "faithfulness_correlation": {"n_runs": 12}, "infidelity": {"n_samples": 6}, "sensitivity": {"n_samples": 3},
}
# Issue 18, faithfulness (faithfulness_curves.py, faithfulness_subsets.py) and robustness (robustness.py).
CHEAP.update({
    "faithfulness_estimate": {"n_steps": 16}, "monotonicity": {"n_steps": 8},
    "monotonicity_correlation": {"n_steps": 8, "n_samples": 2}, "pixel_flipping": {"n_steps": 8},
    "irof": {"n_segments": 16}, "sufficiency": {"n_samples": 2},
    "avg_sensitivity": {"n_samples": 3}, "local_lipschitz": {"n_samples": 3}, "continuity": {"max_shift": 2},
    "relative_input_stability": {"n_samples": 3}, "relative_output_stability": {"n_samples": 3},
    "relative_representation_stability": {"n_samples": 3},
})
# Issue 18, axiomatic (axiomatic.py): one forward per 4x4 patch instead of per pixel.
CHEAP.update({"non_sensitivity": {"patch": 4}})


def score_names() -> list[str]:
    # Image scores (these cases are images); the token scores have their own tests (test_text_scores.py).
    return [name for name in metrics.names()
            if metrics.get(name).category != "sanity" and "image" in metrics.get(name).modalities]


def case(name: str, n: int = 5, size: int = 16) -> dict[str, Any]:
    """Keyword arguments for ``metrics.get(name).compute`` on a tiny CNN."""
    spec = metrics.get(name)
    model, x = tiny_cnn(), images(n, size=size)
    target = torch.arange(n) % 3
    kwargs: dict[str, Any] = {"model": model, "x": x, "target": target, "attributions": maps(n, size), **CHEAP.get(name, {})}
    if "mask" in spec.inputs:
        kwargs["mask"] = box_masks(n, size)
    if "method" in spec.inputs:
        kwargs["method"] = GradientMethod()
        kwargs["attributions"] = GradientMethod().attribute(model, x, target)
    return kwargs


def take(kwargs: dict[str, Any], rows: slice | torch.Tensor) -> dict[str, Any]:
    """The same case restricted to some images."""
    return {k: (v[rows] if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == kwargs["x"].shape[0]
                else v) for k, v in kwargs.items()}
