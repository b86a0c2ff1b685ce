"""Whole optimisation runs against TorchRay: the same parameters at every iteration, row by row.

A small fixed-seed CNN in float64 at 112 x 112, areas [0.05, 0.2], 20 iterations, flip on. Our
rows of N images in one batch must equal N separate TorchRay calls (which batch only the areas).
"""
from __future__ import annotations

import pytest
import torch
from torchray_oracle import tiny_cnn, torchray_run

from adapters.extremal.explain import ExtremalMasks, extremal_masks
from adapters.extremal.settings import ExtremalSettings

F64 = torch.float64
AREAS = [0.05, 0.2]
ITERATIONS = 20
TOLERANCE = 1e-9


def _images(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 112, 112, generator=g, dtype=F64)


def _ours(model, x, target, chunk_rows, **settings) -> tuple[ExtremalMasks, torch.Tensor]:
    """Our run and the parameters after every update, (T, R, 1, h, w) in row order."""
    rows = x.shape[0] * len(AREAS)
    log: dict[int, torch.Tensor] = {}

    def keep(t: int, chunk: slice, params: torch.Tensor) -> None:
        log.setdefault(t, torch.empty(rows, *params.shape[1:], dtype=params.dtype))[chunk] = params

    result = extremal_masks(model, x, target, AREAS,
                            ExtremalSettings(iterations=ITERATIONS, backend="eager", history_every=1,
                                             geometry="torchray", **settings),
                            chunk_rows=chunk_rows, callback=keep)
    return result, torch.stack([log[t] for t in range(ITERATIONS)])


def _assert_same_trajectory(ours: torch.Tensor, reference: torch.Tensor) -> None:
    """ours[t] (after update t) against TorchRay's parameters used at iteration t + 1."""
    assert ours.shape[0] == reference.shape[0]
    difference = (ours[:-1] - reference[1:]).abs().amax(dim=(1, 2, 3, 4))
    assert difference.max() <= TOLERANCE, f"first divergence at iteration {int((difference > TOLERANCE).nonzero()[0])}"
    moved = (reference[-1] - reference[0]).abs().max()
    assert moved > 0.01  # the parameters really moved: the comparison is not vacuous


@pytest.fixture(scope="module")
def preserve_run():
    """Two images in one batch of 4 rows, and TorchRay's two separate runs."""
    model = tiny_cnn()
    x = _images(2, seed=1)
    target = torch.tensor([3, 1])
    ours = _ours(model, x, target, chunk_rows=4)
    reference = [torchray_run(model, x[i:i + 1], int(target[i]), AREAS, ITERATIONS) for i in range(2)]
    return model, x, target, ours, reference


def test_batched_images_equal_separate_torchray_runs_at_every_iteration(preserve_run):
    _, _, _, (result, trajectory), reference = preserve_run
    for i, (params, masks, _) in enumerate(reference):
        _assert_same_trajectory(trajectory[:, 2 * i:2 * i + 2], params)
        assert (result.masks[i, 0] - masks).abs().max() <= TOLERANCE


def test_history_matches_torchrays_log(preserve_run):
    _, _, _, (result, _), reference = preserve_run
    history = result.history
    assert history.iterations.tolist() == list(range(ITERATIONS))
    for i, (_, _, hist) in enumerate(reference):
        # TorchRay logs the (simple) reward per area and the weighted regulariser -lambda_t R_a.
        assert (history.reward[:, i, 0].T - hist[:, 0]).abs().max() <= TOLERANCE
        weighted = -history.residual[:, i, 0].T * history.penalty
        assert (weighted - hist[:, 1]).abs().max() <= TOLERANCE * 300


def test_chunking_never_changes_the_result(preserve_run):
    model, x, target, (result, trajectory), _ = preserve_run
    chunked, chunked_trajectory = _ours(model, x, target, chunk_rows=3)  # chunks of 3 rows and 1 row
    assert chunked.chunk_rows == 3
    assert (chunked_trajectory - trajectory).abs().max() <= 1e-12
    assert (chunked.masks - result.masks).abs().max() <= 1e-12


@pytest.mark.parametrize("variant,reward", [("delete", "contrastive"), ("dual", "logit")])
def test_delete_and_dual_match_torchray(variant, reward):
    model = tiny_cnn()
    x = _images(1, seed=2)
    (result, trajectory) = _ours(model, x, 2, chunk_rows=2, variant=variant, reward=reward)
    params, masks, _ = torchray_run(model, x, 2, AREAS, ITERATIONS, variant=variant, reward=reward)
    _assert_same_trajectory(trajectory, params)
    assert (result.masks[0, 0] - masks).abs().max() <= TOLERANCE
