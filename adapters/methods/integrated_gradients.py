"""Integrated Gradients (Sundararajan et al. 2017) from a constant baseline."""
from __future__ import annotations

import torch
from captum.attr import IntegratedGradients
from torch import Tensor, nn

from ..base import Cost, Method
from ..budget import DEFAULT_MEMORY_MB, check_batch, check_memory_mb, rows_for_budget, spans
from ..checks import check_bool, check_choice, check_float, check_int
from ..maps import check_reduction, reduce_channels
from ..modality import is_token_model
from ..registry import register
from ..token_gradients import integrated_gradient_maps

INTEGRATION = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")
#: The paper finds 20 to 300 steps enough; Captum's Gauss-Legendre nodes come from numpy's
#: ``leggauss``, a dense n x n eigenproblem (2048: 32 MiB and under a second; 10**6 would be 7 TiB).
MAX_STEPS = 2048


@register("integrated_gradients")
class IntegratedGradientsMethod(Method):
    """Captum ``IntegratedGradients`` (multiplied by inputs) from the constant ``baseline`` (default 0,
    i.e. the dataset mean for mean/std-normalised inputs), ``n_steps`` points of ``integration``.

    Channels are reduced with ``reduction`` (default ``sum``: signed, so the map sums to the
    target logit's change, the completeness property). With ``convergence_delta`` the per-image
    completeness error is in ``diagnostics["convergence_delta"]`` (N,), at 2 extra forwards per image.

    Cost: ``n_steps`` forwards + backwards (+2 forwards for the delta) per image. Memory knob:
    ``internal_batch_size`` rows (image x step) per pass, Captum's own knob.

    Text: Captum ``LayerIntegratedGradients`` on the word-embedding layer from the embeddings of the
    sentence with every editable token replaced by [MASK] (``baseline`` is then unused), summed over
    the embedding dimension by default (:mod:`adapters.token_gradients`).
    """

    modalities = ("image", "text")
    memory_knobs = ("internal_batch_size",)

    def __init__(self, n_steps: int = 50, baseline: float = 0.0, integration: str = "gausslegendre",
                 reduction: str = "sum", convergence_delta: bool = True, internal_batch_size: int | None = None,
                 memory_mb: float = DEFAULT_MEMORY_MB) -> None:
        super().__init__(n_steps=check_int("n_steps", n_steps, 1, MAX_STEPS, why="the paper uses 20 to 300"),
                         baseline=check_float("baseline", baseline),
                         integration=check_choice("integration", integration, INTEGRATION),
                         reduction=check_reduction(reduction),
                         convergence_delta=check_bool("convergence_delta", convergence_delta),
                         internal_batch_size=check_batch("internal_batch_size", internal_batch_size),
                         memory_mb=check_memory_mb(memory_mb))

    @classmethod
    def quick_params(cls) -> dict[str, object]:
        return {"n_steps": 4}

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        if is_token_model(model):
            maps, deltas = integrated_gradient_maps(self, model, x, target)
            if deltas is not None:
                self.diagnostics["convergence_delta"] = deltas
            return maps
        rows = self.params["internal_batch_size"] or rows_for_budget(model, x, self.params["memory_mb"], backward=True)
        self.diagnostics["internal_batch_size"] = rows
        ig = IntegratedGradients(model)
        maps, deltas = [], []
        # Captum batches (image, step) rows step-major over the images it is given; giving it at most
        # `rows` images keeps every pass within the budget.
        for s in spans(len(x), rows):
            out = ig.attribute(x[s], baselines=self.params["baseline"], target=target[s], n_steps=self.params["n_steps"],
                               method=self.params["integration"], internal_batch_size=rows,
                               return_convergence_delta=self.params["convergence_delta"])
            attributions, delta = out if self.params["convergence_delta"] else (out, None)
            maps.append(reduce_channels(attributions, self.params["reduction"]))
            if delta is not None:
                deltas.append(delta.detach().float())
        if deltas:
            self.diagnostics["convergence_delta"] = torch.cat(deltas)
        return torch.cat(maps)

    def cost(self, **context: object) -> Cost:
        extra = 2 if self.params["convergence_delta"] else 0
        return Cost(forward=self.params["n_steps"] + extra, backward=self.params["n_steps"])
