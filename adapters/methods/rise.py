"""RISE (Petsiuk, Das and Saenko, BMVC 2018): random masks weighted by the class probability."""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ..base import AttributionError, Cost, Method
from ..budget import DEFAULT_MEMORY_MB, check_batch, check_memory_mb, rows_for_budget, spans
from ..checks import check_choice, check_float, check_int
from ..registry import register
from ..seeding import check_seed, image_seeds

#: Masks per image; the paper uses 4000 (ResNet-50) to 8000 (VGG16), the authors' notebook 6000.
MAX_MASKS = 100_000
#: Cells per side of the random grid; finer grids than this stop being "coarse" masks.
MAX_GRID = 256
#: What each masked copy is scored by: the paper's (and the authors' notebook's) softmax
#: probability, or the raw logit.
SCORES = ("probability", "logit")


def interpolation_matrix(size_in: int, size_out: int) -> Tensor:
    """(size_out, size_in) float64 matrix of linear interpolation from ``size_in`` cells to
    ``size_out`` pixels with half-pixel centres and mirrored borders: what scikit-image's
    ``resize(order=1, mode='reflect', anti_aliasing=False)`` (scipy ``zoom``, grid mode, 'mirror')
    does along one axis, and what the authors' ``generate_masks`` calls."""
    matrix = torch.zeros(size_out, size_in, dtype=torch.float64)
    coordinate = (torch.arange(size_out, dtype=torch.float64) + 0.5) * (size_in / size_out) - 0.5
    low = torch.floor(coordinate)
    fraction = coordinate - low
    rows = torch.arange(size_out)
    for index, weight in ((low, 1 - fraction), (low + 1, fraction)):
        matrix.index_put_((rows, _mirror(index.long(), size_in)), weight, accumulate=True)
    return matrix


def _mirror(index: Tensor, size: int) -> Tensor:
    """Indices reflected about the first and last cell centres (numpy's 'reflect'): -1 -> 1."""
    if size == 1:
        return torch.zeros_like(index)
    period = 2 * (size - 1)
    index = index.remainder(period)
    return torch.where(index >= size, period - index, index)


class RiseMasks:
    """The RISE masks of one input size: grid cells of ceil(H / s) x ceil(W / s) pixels, the s x s
    grid upsampled bilinearly to (s + 1) cells and cropped at a shift in [0, cell) per axis.

    A mask is never stored upsampled beyond the rows of a chunk: mask i is Ry_i G_i Rx_i^T, with
    G_i the s x s binary grid and Ry_i, Rx_i the rows of the interpolation matrices its shift picks.
    """

    def __init__(self, height: int, width: int, grid: int, device: torch.device) -> None:
        self.height, self.width, self.grid = height, width, grid
        self.cell = (math.ceil(height / grid), math.ceil(width / grid))
        up = ((grid + 1) * self.cell[0], (grid + 1) * self.cell[1])
        self.rows = interpolation_matrix(grid, up[0]).to(device=device, dtype=torch.float32)
        self.columns = interpolation_matrix(grid, up[1]).to(device=device, dtype=torch.float32)

    def draw(self, generator: torch.Generator, n_masks: int, keep: float) -> tuple[Tensor, Tensor, Tensor]:
        """On the CPU (the same masks on every device): grids (n, s, s) in {0, 1}, shifts (n,) and (n,)."""
        grids = (torch.rand(n_masks, self.grid, self.grid, generator=generator) < keep).float()
        shift_y = torch.randint(0, self.cell[0], (n_masks,), generator=generator)
        shift_x = torch.randint(0, self.cell[1], (n_masks,), generator=generator)
        return grids, shift_y, shift_x

    def build(self, grids: Tensor, shift_y: Tensor, shift_x: Tensor) -> Tensor:
        """Masks (R, H, W) in [0, 1] from grids (R, s, s) and shifts (R,), on the grids' device."""
        ry = self.rows[shift_y[:, None] + torch.arange(self.height, device=grids.device)]  # (R, H, s)
        rx = self.columns[shift_x[:, None] + torch.arange(self.width, device=grids.device)]  # (R, W, s)
        return ry @ grids @ rx.transpose(1, 2)


@register("rise")
class RiseMethod(Method):
    """RISE: S_c(u) = 1 / (N p) sum_i f_c(x * M_i) M_i(u), the Monte-Carlo estimate of the expected
    class score given that pixel u is kept (the paper's eq. 6, and ``RISE.forward`` in eclique/RISE).

    Masks (``generate_masks`` of the authors' code): an s x s grid (``grid_size``, the paper's s = 7)
    of cells kept with probability p (``keep_probability``, 0.5), upsampled bilinearly (half-pixel
    centres, mirrored borders, as scikit-image's ``resize(order=1, mode='reflect')``) to
    (s + 1) * ceil(H / s) pixels per axis and cropped to H x W at a random shift in
    [0, ceil(H / s)) x [0, ceil(W / s)). The masked copies x * M_i are in the model's normalised
    space (masked = 0 = the dataset mean), as in the original. f_c is the softmax probability of the
    target (``score="probability"``; the authors wrap the network in a softmax) or its logit.

    Normalisation: the 1 / (N p) factor of the paper and of ``RISE``, so a pixel's value estimates
    E[f_c(x * M) | M(u) = 1] and maps are comparable across N and p. Defects of the original code not
    copied: ``RISEBatch.forward`` drops the 1 / (N p) factor; the masks are one global set drawn from
    numpy's global RNG and saved to ``masks.npy`` (here each image draws its own, seeded by ``seed``
    and the image, on the CPU, so a map never depends on the batch, the chunking or the device);
    the paper writes the cell as floor(H / s), the code ceil(H / s), which is what leaves room for the
    shift, so the code's is used.

    Batched on the device: rows (image, mask) in forward-only passes of ``batch_size`` rows
    (default: what ``memory_mb`` holds); each chunk builds its masks from the s x s grids by two
    small matrix products, so no N x H x W mask stack is ever held. Stochastic: ``seed``.

    Cost: ``n_masks`` forwards per image (default 4000, the paper's ResNet-50 setting), no backward.
    """

    stochastic = True
    memory_knobs = ("batch_size",)

    def __init__(self, n_masks: int = 4000, grid_size: int = 7, keep_probability: float = 0.5,
                 score: str = "probability", seed: int = 0, batch_size: int | None = None,
                 memory_mb: float = DEFAULT_MEMORY_MB) -> None:
        super().__init__(
            n_masks=check_int("n_masks", n_masks, 1, MAX_MASKS, why="the paper uses 4000 to 8000"),
            grid_size=check_int("grid_size", grid_size, 1, MAX_GRID, why="RISE's masks are coarse grids (s = 7)"),
            keep_probability=check_float("keep_probability", keep_probability, 0, 1, low_open=True),
            score=check_choice("score", score, SCORES), seed=check_seed(seed),
            batch_size=check_batch("batch_size", batch_size), memory_mb=check_memory_mb(memory_mb))

    @classmethod
    def quick_params(cls) -> dict[str, Any]:
        return {"n_masks": 16}

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        n, _, height, width = x.shape
        grid, n_masks, keep = self.params["grid_size"], self.params["n_masks"], self.params["keep_probability"]
        if grid > min(height, width):
            raise AttributionError(f"grid_size={grid} is finer than the {height}x{width} image; use at most "
                                   f"{min(height, width)} cells per side")
        masks = RiseMasks(height, width, grid, x.device)
        drawn = [masks.draw(torch.Generator().manual_seed(seed), n_masks, keep)
                 for seed in image_seeds(x, self.params["seed"])]
        grids, shift_y, shift_x = (torch.cat(parts).to(x.device) for parts in zip(*drawn))
        rows = self.params["batch_size"] or rows_for_budget(model, x, self.params["memory_mb"], backward=False,
                                                            extra_bytes_per_row=4 * height * width)
        saliency = torch.zeros(n, height * width, device=x.device, dtype=torch.float32)
        with torch.no_grad():
            for s in spans(n * n_masks, rows):
                image = torch.arange(s.start, s.stop, device=x.device) // n_masks
                mask = masks.build(grids[s], shift_y[s], shift_x[s])  # (R, H, W)
                logits = model(x[image] * mask[:, None].to(x.dtype)).float()
                if self.params["score"] == "probability":
                    logits = logits.softmax(dim=1)
                scores = logits.gather(1, target[image].view(-1, 1))[:, 0]
                # One row per image of the chunk: a matrix product, not an atomic scatter (deterministic).
                first, last = s.start // n_masks, (s.stop - 1) // n_masks
                weights = torch.zeros(last - first + 1, len(scores), device=x.device)
                weights[image - first, torch.arange(len(scores), device=x.device)] = scores
                saliency[first:first + weights.shape[0]] += weights @ mask.flatten(1)
        self.diagnostics.update(batch_size=rows, cell=masks.cell)
        return (saliency / (n_masks * keep)).view(n, 1, height, width)

    def cost(self, **context: Any) -> Cost:
        return Cost(forward=self.params["n_masks"])
