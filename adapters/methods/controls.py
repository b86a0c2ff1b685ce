"""Control maps that bound every score: random noise, an edge detector, a centre prior, the truth.

None of them calls the model (cost 0). They are what a method must beat (random, centre), what the
sanity checks must flag (edge: model-independent by construction) and the best a map can do on
data with ground-truth masks (oracle).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..base import AttributionError, Cost, Method
from ..checks import check_choice, check_float
from ..modality import is_token_model
from ..registry import register
from ..seeding import check_seed, generator, image_seeds


class ControlMethod(Method):
    """A map computed without the model."""

    def cost(self, **context: object) -> Cost:
        return Cost(forward=0, backward=0)


@register("random")
class RandomControl(ControlMethod):
    """Uniform noise in [0, 1), drawn per image from a generator seeded by ``seed`` and the image
    (so it is batch-independent); the floor that Binder et al. (2023) show can "pass" sanity checks.
    Text: one value per token (N, L)."""

    stochastic = True
    modalities = ("image", "text")

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed=check_seed(seed))

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        shape = (1, x.shape[1]) if is_token_model(model) else (1, 1) + tuple(x.shape[-2:])
        return torch.cat([torch.rand(shape, generator=generator(seed, x.device), device=x.device)
                          for seed in image_seeds(x, self.params["seed"])])


@register("edge")
class EdgeControl(ControlMethod):
    """Sobel gradient magnitude of the input, ``sqrt(sum_c (G_x * x_c)^2 + (G_y * x_c)^2)`` with
    replicated borders: a pure image statistic, identical for any model."""

    def __init__(self) -> None:
        super().__init__()

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        sobel_x = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]], device=x.device)
        kernels = torch.stack([sobel_x, sobel_x.t()]).unsqueeze(1)  # (2, 1, 3, 3)
        n, c, h, w = x.shape
        padded = F.pad(x.detach().float().reshape(n * c, 1, h, w), (1, 1, 1, 1), mode="replicate")
        gradients = F.conv2d(padded, kernels).reshape(n, c * 2, h, w)
        return gradients.pow(2).sum(dim=1, keepdim=True).sqrt()


@register("center")
class CenterControl(ControlMethod):
    """A Gaussian centred on the image, standard deviation ``sigma`` times the shorter side: the
    centre bias of photographs, identical for every image."""

    def __init__(self, sigma: float = 0.25) -> None:
        # A fraction of the shorter side; any finite positive width is a valid (if flat) prior.
        super().__init__(sigma=check_float("sigma", sigma, 0, low_open=True))

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        n, _, h, w = x.shape
        std = self.params["sigma"] * min(h, w)
        ys = torch.arange(h, device=x.device, dtype=torch.float32) - (h - 1) / 2
        xs = torch.arange(w, device=x.device, dtype=torch.float32) - (w - 1) / 2
        gauss = torch.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * std**2))
        return gauss.expand(n, 1, h, w).clone()


INTERIORS = ("depth", "flat")


def mask_depth(inside: Tensor) -> Tensor:
    """How many 3x3 erosions each pixel of a {0, 1} mask (N, 1, H, W) survives: 1 on the outline,
    growing towards the centre, 0 off the mask; outside the image counts as off the mask."""
    depth = torch.zeros_like(inside)
    current = inside
    while bool(current.any()):
        depth += current
        current = -F.max_pool2d(-F.pad(current, (1, 1, 1, 1)), 3, stride=1)
    return depth


@register("oracle")
class OracleControl(ControlMethod):
    """The ground-truth object mask (``mask=`` in ``attribute``, (N, 1, H, W) or (N, H, W), boolean
    or holding only 0 and 1, as the localisation scores require): the truth that maps are measured
    against on data whose evidence is the object.

    ``interior="depth"`` (default) orders the mask's pixels from its centre out: each object pixel
    holds its depth (3x3 erosions survived) over the image's deepest, in (0, 1], and 0 off the
    object. Its support is the mask, so localisation is perfect as with the flat mask. What it adds
    is an order inside the object for the scores that rank pixels (deletion, insertion, ROAD): a
    flat mask leaves that order to the scores' seeded tie-break, which scatters the object's pixels,
    and inserting a scattered third of an object reads less than a contiguous patch of it: on the
    textured zoo Grad-CAM's centre-first blob would then beat the truth on insertion and ROAD-LeRF.
    ``interior="flat"`` gives the mask itself, float32 in {0, 1}.

    Text: ``mask`` is the evidence positions (N, L) and the map is that mask (a token has no
    interior: ``interior`` is not used).
    """

    needs_mask = True
    modalities = ("image", "text")

    def __init__(self, interior: str = "depth") -> None:
        super().__init__(interior=check_choice("interior", interior, INTERIORS))

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        if is_token_model(model):
            return token_mask(mask, x).float()
        inside = binary_mask(mask, x).float()
        if self.params["interior"] == "flat":
            return inside
        depth = mask_depth(inside)
        return depth / depth.amax(dim=(2, 3), keepdim=True).clamp_min(1.0)


def token_mask(mask: object, x: Tensor) -> Tensor:
    """The oracle's evidence positions on token ids ``x`` (N, L): (N, L) bool, 0/1 or boolean only."""
    if mask is None:
        raise AttributionError("the oracle control needs the ground-truth evidence: "
                               "attribute(model, x, target, mask=...)")
    if not isinstance(mask, Tensor):
        raise AttributionError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
    if tuple(mask.shape) != tuple(x.shape):
        raise AttributionError(f"mask must have the token ids' shape {tuple(x.shape)}, got {tuple(mask.shape)}")
    if mask.dtype != torch.bool and not ((mask == 0) | (mask == 1)).all():
        raise AttributionError("mask must be boolean or hold only 0 and 1")
    return (mask != 0).to(x.device)


def binary_mask(mask: object, x: Tensor) -> Tensor:
    """The oracle's ``mask`` as (N, 1, H, W) bool on ``x``'s device, with the rules (and wording) of
    ``metrics.validation.check_mask``: a mask the localisation scores would refuse is refused here too."""
    if mask is None:
        raise AttributionError("the oracle control needs the ground-truth mask: attribute(model, x, target, mask=...)")
    if not isinstance(mask, Tensor):
        raise AttributionError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
    n, _, h, w = x.shape
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    if tuple(mask.shape) != (n, 1, h, w):
        raise AttributionError(f"mask must have shape {(n, 1, h, w)} or {(n, h, w)}, got {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        # NaN is neither 0 nor 1, so it is refused too.
        bad = ~((mask == 0) | (mask == 1))
        if bad.any():
            image = int(bad.flatten(1).any(1).nonzero()[0, 0])
            raise AttributionError(f"mask must be boolean or hold only 0 and 1, got {mask[bad][0].item()!r} "
                                   f"(image {image})")
        mask = mask != 0
    return mask.to(x.device)
