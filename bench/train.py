"""Deterministic training of the embedded zoo on the synthetic datasets (CPU-friendly)."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor, nn

from .models.spec import ModelSpec
from .progress import progress


# Float reductions (convolutions, BLAS) depend on the thread count: training always uses this many
# intra-op threads, whatever the caller set, so the same seed gives the same weights everywhere.
TRAIN_THREADS = 2


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 6
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    shuffle_labels: bool = False  # data randomisation check: same images, permuted labels
    # Batch-norm statistics are re-estimated on this many training images with the final weights:
    # running averages lag the weights (torchvision's MobileNetV3 uses momentum 0.01, so after a
    # few hundred steps its eval-mode statistics are still mostly those of the initialisation).
    bn_recalibration_images: int = 2048


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 256) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        correct += (model(x[start:start + batch_size]).argmax(1) == y[start:start + batch_size]).sum().item()
    return correct / len(x)


def training_targets(labels: Tensor, config: TrainConfig) -> Tensor:
    """The labels a model is fitted to: the true ones, or a seeded permutation of them."""
    if not config.shuffle_labels:
        return labels
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(config.seed + 1))]


def train(spec: ModelSpec, train_x: Tensor, train_y: Tensor, config: TrainConfig, *, label: str = "") -> nn.Module:
    """Train ``spec`` from its seeded initialisation with AdamW and a one-cycle schedule, with
    :data:`TRAIN_THREADS` intra-op threads (restored afterwards)."""
    with fixed_threads():
        return _train(spec, train_x, train_y, config, label)


@contextlib.contextmanager
def fixed_threads(count: int = TRAIN_THREADS) -> Iterator[None]:
    """Run a block with ``count`` intra-op threads, restoring the caller's setting afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _train(spec: ModelSpec, train_x: Tensor, train_y: Tensor, config: TrainConfig, label: str) -> nn.Module:
    model = spec.build(seed=config.seed).train()
    generator = torch.Generator().manual_seed(config.seed)
    train_y = training_targets(train_y, config)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = (len(train_x) + config.batch_size - 1) // config.batch_size
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch,
                                                   pct_start=0.25)
    loss_fn = nn.CrossEntropyLoss()
    bar = progress(total=config.epochs * steps_per_epoch, desc=f"train {label or spec.name}", unit="step")
    for _ in range(config.epochs):
        order = torch.randperm(len(train_x), generator=generator)
        for start in range(0, len(train_x), config.batch_size):
            idx = order[start:start + config.batch_size]
            if len(idx) < 2:  # batch-norm needs two samples
                continue
            optimiser.zero_grad(set_to_none=True)
            loss = loss_fn(model(train_x[idx]), train_y[idx])
            loss.backward()
            optimiser.step()
            schedule.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    recalibrate_batch_norm(model, train_x[:config.bn_recalibration_images], config.batch_size)
    return model.eval()


@torch.no_grad()
def recalibrate_batch_norm(model: nn.Module, x: Tensor, batch_size: int = 64) -> None:
    """Replace every batch-norm layer's running statistics by their exact average over ``x``
    (cumulative moving average, train-mode forward passes, weights untouched)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or len(x) < 2:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train()
    for start in range(0, len(x), batch_size):
        if len(x) - start >= 2:
            model(x[start:start + batch_size])
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()
