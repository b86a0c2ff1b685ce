"""VarGrad (Adebayo et al. 2018): the variance of saliency over noisy copies of the input."""
from __future__ import annotations

from ..noise_tunnel import NoiseTunnelSaliency
from ..registry import register


@register("vargrad")
class VarGradMethod(NoiseTunnelSaliency):
    """Captum ``NoiseTunnel(Saliency)`` with ``nt_type="vargrad"``: E[a^2] - E[a]^2 over ``n_samples``
    noisy copies of each image (noise ``noise_level`` times the image's own range), with a = |gradient|
    as Captum's Saliency gives by default (where the gradient's sign flips between samples this is
    smaller than the variance of the signed gradient), then the channels reduced by ``reduction``
    (default ``max_abs``). Same sampling, seeds and batching as ``smoothgrad``
    (:class:`adapters.noise_tunnel.NoiseTunnelSaliency`).

    Cost: ``n_samples`` forwards + backwards per image. Memory knob: ``batch_size`` noisy rows per pass.
    """

    nt_type = "vargrad"
