"""Extremal perturbations (Fong, Patrick and Vedaldi, ICCV 2019): a batched optimiser of our own.

Many images x targets x areas share one optimisation batch; TorchRay (CC-BY-NC) is only the test
oracle. Files: :mod:`.mask_generator` and :mod:`.smooth_max` (compact smooth-max masks),
:mod:`.pyramid` (blur pyramid and interpolation), :mod:`.area` (area penalty), :mod:`.rewards`,
:mod:`.backend` (eager or ``torch.compile``-fused kernels), :mod:`.settings`, :mod:`.optimiser`
(the loop), :mod:`.explain` (entry point), :mod:`.channel` (the same optimiser on an intermediate
layer's channels). The registered method is ``adapters.get("extremal")``.
"""
from .channel import ChannelMasks, channel_masks
from .explain import DEFAULT_AREAS, ExtremalMasks, extremal_masks, frozen_parameters
from .mask_generator import MaskGenerator, MaskGeometry
from .optimiser import ExtremalHistory
from .pyramid import apply_mask, gaussian_blur, perturbation_pyramid
from .settings import FAST_ITERATIONS, ExtremalSettings

__all__ = ["ChannelMasks", "DEFAULT_AREAS", "ExtremalHistory", "ExtremalMasks", "ExtremalSettings", "FAST_ITERATIONS",
           "MaskGenerator", "MaskGeometry", "apply_mask", "channel_masks", "extremal_masks", "frozen_parameters",
           "gaussian_blur", "perturbation_pyramid"]
