"""The one-patch model and its control maps and methods, for the tests of the faithfulness and
robustness scores added with issue 18 (imported by name: pytest puts this folder on sys.path).

The model's class-0 logit is w * (sum of the pixels inside one 4 x 4 patch) - bias, the other logit
0 (a patch sum, then a linear head): the patch is all the evidence there is, and every pixel of it
adds to class 0. The oracle map is each pixel's exact contribution to that logit (0 outside the
patch); the inverted map reverses its order (max - oracle: the background first, then the patch
from its weakest pixel); the random map knows nothing.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from adapters.seeding import image_seeds

SIZE = 12
PATCH = (slice(4, 8), slice(4, 8))  # one 4 x 4 block of a 4 px grid on 12 x 12 images
WEIGHT, BIAS = 0.5, 6.0


class PatchSum(nn.Module):
    """The sum over channels and the patch of x, (N, 1)."""

    def __init__(self) -> None:
        super().__init__()
        mask = torch.zeros(1, 1, SIZE, SIZE)
        mask[(..., *PATCH)] = 1.0
        self.register_buffer("mask", mask)

    def forward(self, x: Tensor) -> Tensor:
        return (x * self.mask).flatten(1).sum(1, keepdim=True)


class PatchModel(nn.Module):
    """logits = [WEIGHT * (sum over channels and the patch of x) - BIAS, 0] (N, 2); the head's
    input, the patch sum (N, 1), is its penultimate representation."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = PatchSum()
        self.head = nn.Linear(1, 2)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[WEIGHT], [0.0]]))
            self.head.bias.copy_(torch.tensor([-BIAS, 0.0]))
        self.eval()

    @property
    def mask(self) -> Tensor:
        return self.pool.mask

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(x))


def patch_images(n: int, channels: int = 1, seed: int = 0) -> Tensor:
    """Background N(0, 1), patch U(1, 2) (N, C, SIZE, SIZE): class 0 with probability ~1."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, channels, SIZE, SIZE, generator=generator)
    x[(..., *PATCH)] = 1.0 + torch.rand(n, channels, 4, 4, generator=generator)
    return x


def oracle_map(x: Tensor) -> Tensor:
    """Each pixel's contribution to the class-0 logit, (N, 1, H, W): WEIGHT * x in the patch, 0 outside."""
    return PatchModel().mask * WEIGHT * x.sum(1, keepdim=True)


def control_maps(x: Tensor, seed: int = 1) -> dict[str, Tensor]:
    oracle = oracle_map(x)
    peak = oracle.flatten(1).amax(1).view(-1, 1, 1, 1)
    random = torch.rand(oracle.shape, generator=torch.Generator().manual_seed(seed))
    return {"oracle": oracle, "random": random, "inverted": peak - oracle}


class OracleMethod:
    """A method whose maps are the patch model's exact contributions (a function of x, smooth in x)."""

    stochastic = False

    def attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        return oracle_map(x)


class InvertedMethod(OracleMethod):
    def attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        oracle = oracle_map(x)
        return oracle.flatten(1).amax(1).view(-1, 1, 1, 1) - oracle


class RandomMethod(OracleMethod):
    """Uniform noise seeded by each image's bytes (the adapters' random control): same image, same
    map; any change of the image, a new map."""

    def attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        return torch.stack([torch.rand(1, *x.shape[2:], generator=torch.Generator().manual_seed(s))
                            for s in image_seeds(x, 0)])


CONTROL_METHODS = {"oracle": OracleMethod(), "random": RandomMethod(), "inverted": InvertedMethod()}


def quantus_explainer(method):
    """A Quantus ``explain_func`` that calls ``method`` (NumPy in and out, as Quantus wants)."""

    def explain(model: nn.Module, inputs: np.ndarray, targets: np.ndarray, **_) -> np.ndarray:
        x = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
        with torch.enable_grad():
            return method.attribute(model, x, torch.as_tensor(np.asarray(targets), dtype=torch.long)).numpy()

    return explain


class Draws:
    """Replaces a NumPy sampler: call c returns ``values[c]`` (shaped as the call asks), so that a
    reference draws exactly our perturbations; counts the calls."""

    def __init__(self, values: list[np.ndarray]) -> None:
        self.values, self.calls = values, 0

    def __call__(self, *args, size=None, **kwargs) -> np.ndarray:
        value = np.asarray(self.values[self.calls], dtype=np.float64)
        self.calls += 1
        return value.reshape(size) if size is not None else value


class PoisonedClean(nn.Module):
    """Wraps a model: logits NaN for the clean images ``poisoned`` of ``x``; counts the rows that are
    not clean images (perturbed rows), so a test can check that none ran before the error."""

    def __init__(self, inner: nn.Module, x: Tensor, poisoned: list[int]) -> None:
        super().__init__()
        self.inner, self.x, self.poisoned, self.perturbed_rows = inner, x, poisoned, 0
        self.eval()

    def forward(self, batch: Tensor) -> Tensor:
        logits = self.inner(batch)
        for row, image in enumerate(batch):
            clean = [i for i in range(len(self.x)) if torch.equal(image, self.x[i])]
            self.perturbed_rows += not clean
            if clean and clean[0] in self.poisoned:
                logits[row] = float("nan")
        return logits
