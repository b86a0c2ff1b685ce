"""DeepLIFT (Shrikumar et al. 2017), rescale rule, against a constant baseline."""
from __future__ import annotations

import warnings

import torch
from captum.attr import DeepLift
from torch import Tensor, nn

from ..base import Cost, Method
from ..budget import DEFAULT_MEMORY_MB, check_batch, check_memory_mb, rows_for_budget, spans
from ..checks import check_bool, check_float
from ..maps import check_reduction, reduce_channels
from ..module_attributes import attributes_restored
from ..model_support import check_rescale_rule
from ..registry import register


@register("deeplift")
class DeepLiftMethod(Method):
    """Captum ``DeepLift(model, multiply_by_inputs=True, eps=1e-10)`` from the constant ``baseline``
    (default 0, Captum's default: the dataset mean for mean/std-normalised inputs); channels reduced
    with ``reduction`` (default ``sum``: signed, so a map sums to the target logit's change from the
    baseline, DeepLift's summation-to-delta; with ``convergence_delta`` the per-image error of that
    is in ``diagnostics["convergence_delta"]``, at 2 extra forwards per image).

    Refused with an AttributionError naming the module (:func:`adapters.model_support.check_rescale_rule`):
    nonlinear functions outside the module types Captum rescales (ReLU, ELU, LeakyReLU, Sigmoid, Tanh,
    Softplus, MaxPool1/2/3d; GELU, SiLU, ReLU6, layer norm, attention and ``F.relu`` would get the
    plain gradient without a warning), a rescaled module reused within one forward (torchvision
    ResNet's shared ``relu``: Captum raises "used more than once"), and ``nn.Softmax`` (Captum's rule
    mixes the images of a batch). In-place ReLUs are handled by Captum itself (it clones their input).
    Modules created inside ``forward`` are not hooked by Captum; their functions are caught the
    same way as ``F.relu``.

    Cost: 2 forwards + 2 backwards per image (Captum runs the image and its baseline in one
    batch); +2 forwards with ``convergence_delta``. Memory knob: ``batch_size`` images per pass.
    """

    memory_knobs = ("batch_size",)

    def __init__(self, baseline: float = 0.0, reduction: str = "sum", convergence_delta: bool = False,
                 batch_size: int | None = None, memory_mb: float = DEFAULT_MEMORY_MB) -> None:
        super().__init__(baseline=check_float("baseline", baseline), reduction=check_reduction(reduction),
                         convergence_delta=check_bool("convergence_delta", convergence_delta),
                         batch_size=check_batch("batch_size", batch_size), memory_mb=check_memory_mb(memory_mb))

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        self.diagnostics["rescaled_modules"] = check_rescale_rule(model, x, self.name)
        # Each image is two rows (itself and its baseline) in Captum's pass.
        rows = rows_for_budget(model, x, self.params["memory_mb"], backward=True)
        size = self.params["batch_size"] or max(1, rows // 2)
        self.diagnostics["batch_size"] = size
        deeplift = DeepLift(model)
        maps, deltas = [], []
        with warnings.catch_warnings(), attributes_restored(model):
            warnings.filterwarnings("ignore", message="Setting forward, backward hooks and attributes")
            for s in spans(len(x), size):
                out = deeplift.attribute(x[s].detach().requires_grad_(), baselines=self.params["baseline"],
                                         target=target[s], return_convergence_delta=self.params["convergence_delta"])
                attributions, delta = out if self.params["convergence_delta"] else (out, None)
                maps.append(reduce_channels(attributions.detach(), self.params["reduction"]))
                if delta is not None:
                    deltas.append(delta.detach().float())
        if deltas:
            self.diagnostics["convergence_delta"] = torch.cat(deltas)
        return torch.cat(maps)

    def cost(self, **context: object) -> Cost:
        return Cost(forward=2 + (2 if self.params["convergence_delta"] else 0), backward=2)
