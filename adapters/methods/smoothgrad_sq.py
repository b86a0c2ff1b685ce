"""SmoothGrad-Squared (Hooker et al. 2019): the mean of squared saliency over noisy copies."""
from __future__ import annotations

from ..noise_tunnel import NoiseTunnelSaliency
from ..registry import register


@register("smoothgrad_sq")
class SmoothGradSqMethod(NoiseTunnelSaliency):
    """Captum ``NoiseTunnel(Saliency)`` with ``nt_type="smoothgrad_sq"``: the mean of |gradient|^2 over
    ``n_samples`` noisy copies of each image (noise ``noise_level`` times the image's own range), then
    the channels reduced by ``reduction`` (default ``max_abs``). Same sampling, seeds and batching as
    ``smoothgrad`` (:class:`adapters.noise_tunnel.NoiseTunnelSaliency`), so with the same seed the
    map is the square-mean of exactly the gradients SmoothGrad averages.

    Cost: ``n_samples`` forwards + backwards per image. Memory knob: ``batch_size`` noisy rows per pass.
    """

    nt_type = "smoothgrad_sq"
