"""Filter visualisation: regularised gradient ascent on the input (Erhan et al. 2009; Yosinski et
al. 2015; Olah et al. 2017, "Feature Visualization").

One image per filter, all filters optimised together as the rows of one batch. Every row sees the
same seeded start and the same jitter shifts, and nothing couples the rows (the objective is a sum
of per-row terms, Adam's update is element-wise, the model runs in eval mode), so a filter's image
does not depend on which other filters share the batch or on ``chunk_size``.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torchvision.transforms.functional as TF
from torch import Tensor, nn

from .layers import FilterError, check_filters, layer_output, model_device, untouched

# Logit clamp when mapping a blurred image back through the sigmoid: keeps the parameters finite.
_EPS = 1e-4


def start_image(n: int, input_size: tuple[int, int], seed: int = 0) -> Tensor:
    """The seeded start: faint noise around grey, (n, 3, H, W) in [0, 1], the same image in every row.

    Drawn on the CPU from its own generator, so it is the same on every device and leaves the
    global random state alone.
    """
    generator = torch.Generator().manual_seed(seed)
    logits = 0.5 * torch.randn(1, 3, *input_size, generator=generator)
    return torch.sigmoid(logits).expand(n, -1, -1, -1).clone()


def total_variation(images: Tensor) -> Tensor:
    """Mean squared difference between neighbouring pixels, per image: (N, 3, H, W) -> (N,)."""
    dy = (images[..., 1:, :] - images[..., :-1, :]).pow(2).mean(dim=(1, 2, 3))
    dx = (images[..., :, 1:] - images[..., :, :-1]).pow(2).mean(dim=(1, 2, 3))
    return dy + dx


def gaussian_blur(images: Tensor, sigma: float) -> Tensor:
    """Gaussian blur with a kernel of about four sigma, reflected at the borders: (N, 3, H, W) -> same."""
    size = 2 * max(1, round(2 * sigma)) + 1
    return TF.gaussian_blur(images, kernel_size=[size, size], sigma=[sigma, sigma])


def visualise_filters(model: nn.Module, layer: str, filters: Sequence[int], *, input_size: tuple[int, int],
                      mean: Sequence[float], std: Sequence[float], steps: int = 128, lr: float = 0.2,
                      jitter: int | None = None, blur_every: int = 4, blur_sigma: float = 0.75,
                      tv_weight: float = 0.0, seed: int = 0, device: str | torch.device | None = None,
                      chunk_size: int | None = None) -> Tensor:
    """Images that maximise each filter's mean activation, (F, 3, H, W) in [0, 1] (row i: ``filters[i]``).

    Parameters
    ----------
    model: the classifier; left exactly as it was (training flags, ``requires_grad``, no hooks, no
        parameter gradients). It must already be on ``device``; it is never moved.
    layer: qualified module name whose output is (N, C, h, w); ``filters`` index its channels.
    input_size, mean, std: the model's input resolution and normalisation (as in its ModelSpec).
    steps: Adam steps; 0 returns the seeded start (:func:`start_image`).
    lr: Adam learning rate on the pixel logits.
    jitter: largest random shift in pixels (the image is rolled before each step, the same shift
        for every row), so the pattern cannot rely on exact pixel positions; None: 1/32 of the
        smaller side.
    blur_every, blur_sigma: every ``blur_every`` steps the image is blurred (0 disables), which damps
        the high frequencies that gradient ascent otherwise fills the image with.
    tv_weight: weight of the total variation penalty (:func:`total_variation`) in the objective.
        It is in units of the layer's activation, whose scale varies by orders of magnitude between
        models (and between trained and random weights), so it is off by default; the blur, which
        does not depend on that scale, does the smoothing.
    seed: seeds the start image and the jitter shifts.
    chunk_size: filters optimised per batch (memory knob); None: all at once. The result does not
        depend on it.

    The image is kept in [0, 1] by optimising logits through a sigmoid; it is normalised with
    ``mean``/``std`` before the model sees it. The objective of row i is the spatial mean of
    channel ``filters[i]`` minus ``tv_weight`` times the row's total variation. Gradients are taken
    with respect to the image only.
    """
    filters = list(filters)
    if not filters:
        raise FilterError("no filters given: pass at least one channel index")
    if steps < 0:
        raise FilterError(f"steps must be >= 0, got {steps}")
    own_device = model_device(model)
    device = torch.device(device) if device is not None else own_device
    if device != own_device and not (device.type == own_device.type == "cuda" and device.index is None):
        raise FilterError(f"model is on {own_device} but device={device} was asked for; move the model first")
    height, width = input_size
    jitter = max(1, round(min(height, width) / 32)) if jitter is None else jitter
    chunk_size = chunk_size or len(filters)

    with untouched(model):
        with torch.no_grad():  # one probe pass: the channel count, and a clear error for a bad layer
            probe = layer_output(model, layer, torch.zeros(1, 3, height, width, device=device))
        check_filters(filters, probe.shape[1], layer)
        mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        shifts = torch.randint(-jitter, jitter + 1, (steps, 2),
                               generator=torch.Generator().manual_seed(seed + 1)).tolist()
        rows = [_ascend(model, layer, filters[i:i + chunk_size], (height, width), mean_t, std_t, shifts,
                        lr=lr, blur_every=blur_every, blur_sigma=blur_sigma, tv_weight=tv_weight, seed=seed,
                        device=device)
                for i in range(0, len(filters), chunk_size)]
    return torch.cat(rows)


def _ascend(model: nn.Module, layer: str, filters: list[int], input_size: tuple[int, int], mean: Tensor,
            std: Tensor, shifts: list[list[int]], *, lr: float, blur_every: int, blur_sigma: float,
            tv_weight: float, seed: int, device: torch.device) -> Tensor:
    """One batch of filters: (F, 3, H, W) in [0, 1]. The caller holds :func:`untouched`."""
    start = start_image(len(filters), input_size, seed).to(device)
    logits = torch.logit(start).requires_grad_(True)
    optimiser = torch.optim.Adam([logits], lr=lr, maximize=True)
    rows = torch.arange(len(filters), device=device)
    channels = torch.tensor(filters, device=device)
    for step, (dy, dx) in enumerate(shifts):
        image = torch.sigmoid(logits)
        x = (torch.roll(image, shifts=(dy, dx), dims=(2, 3)) - mean) / std
        objective = layer_output(model, layer, x)[rows, channels].mean(dim=(1, 2))
        if tv_weight:
            objective = objective - tv_weight * total_variation(image)
        # autograd.grad, not backward(): only the image's gradient is formed, none lands on parameters.
        (logits.grad,) = torch.autograd.grad(objective.sum(), logits)
        optimiser.step()
        if blur_every and (step + 1) % blur_every == 0 and step + 1 < len(shifts):
            with torch.no_grad():
                blurred = gaussian_blur(torch.sigmoid(logits), blur_sigma)
                logits.copy_(torch.logit(blurred.clamp(_EPS, 1 - _EPS)))
    return torch.sigmoid(logits).detach()
