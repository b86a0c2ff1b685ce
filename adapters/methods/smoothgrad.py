"""SmoothGrad (Smilkov et al. 2017): saliency averaged over noisy copies of the input."""
from __future__ import annotations

from ..base import Method
from ..budget import DEFAULT_MEMORY_MB
from ..checks import check_choice
from ..noise_tunnel import MAX_NOISE_LEVEL, MAX_SAMPLES, NT_TYPES, NoiseTunnelSaliency
from ..registry import register

__all__ = ["MAX_NOISE_LEVEL", "MAX_SAMPLES", "NT_TYPES", "SmoothGradMethod"]


@register("smoothgrad")
class SmoothGradMethod(NoiseTunnelSaliency):
    """Captum ``NoiseTunnel(Saliency)`` semantics, batched across images and samples
    (:class:`adapters.noise_tunnel.NoiseTunnelSaliency`): the mean of |gradient| over ``n_samples``
    noisy copies of each image, noise ``noise_level`` times the image's own range.

    ``nt_type`` picks NoiseTunnel's smoothing: ``"smoothgrad"`` (the mean), ``"smoothgrad_sq"``
    (the mean of squares) or ``"vargrad"`` (the variance); the last two are also registered on
    their own as ``smoothgrad_sq`` and ``vargrad``, with the same numbers.

    Cost: ``n_samples`` forwards + backwards per image. Memory knob: ``batch_size`` noisy rows per pass.
    """

    def __init__(self, n_samples: int = 50, noise_level: float = 0.15, nt_type: str = "smoothgrad",
                 reduction: str = "max_abs", seed: int = 0, batch_size: int | None = None,
                 memory_mb: float = DEFAULT_MEMORY_MB) -> None:
        checked = self.checked(n_samples, noise_level, reduction, seed, batch_size, memory_mb)
        # Same keys in the same order as before the family shared its sampling: recorded settings stay valid.
        Method.__init__(self, n_samples=checked["n_samples"], noise_level=checked["noise_level"],
                        nt_type=check_choice("nt_type", nt_type, NT_TYPES), reduction=checked["reduction"],
                        seed=checked["seed"], batch_size=checked["batch_size"], memory_mb=checked["memory_mb"])
