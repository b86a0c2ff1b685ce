"""Per-image scores never depend on the batch: same numbers for any batch size, order, chunking."""
import typing

import pytest
import torch
from score_cases import case, score_names, take

import metrics
from metrics.registry import Category

ATOL = 1e-5  # forward passes of different batch sizes may round differently in the last bits


def assert_same_scores(a: torch.Tensor, b: torch.Tensor) -> None:
    assert torch.equal(torch.isnan(a), torch.isnan(b))
    assert torch.allclose(a.nan_to_num(), b.nan_to_num(), atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize("name", score_names())
def test_scores_are_the_same_for_any_batch_size_order_and_chunking(name):
    spec = metrics.get(name)
    kwargs = case(name)
    full = spec.compute(**kwargs)
    assert full.scores.shape == (5,) and full.scores.dtype == torch.float32
    split = torch.cat([spec.compute(**take(kwargs, rows)).scores for rows in (slice(0, 2), slice(2, 5))])
    assert_same_scores(full.scores, split)
    order = torch.tensor([4, 2, 0, 3, 1])
    assert_same_scores(full.scores[order], spec.compute(**take(kwargs, order)).scores)
    one_row_chunks = spec.compute(**kwargs, device_budget_bytes=1)
    assert_same_scores(full.scores, one_row_chunks.scores)
    if full.curves is not None:
        assert full.curves.shape[0] == 5 and full.curves.shape[1] == full.curve_x.shape[0]
        assert torch.allclose(full.curves, one_row_chunks.curves, atol=ATOL)


@pytest.mark.parametrize("name", score_names())
def test_scores_are_reproducible_and_leave_the_model_as_they_found_it(name):
    spec = metrics.get(name)
    kwargs = case(name, n=2)
    model = kwargs["model"]
    before = [p.detach().clone() for p in model.parameters()]
    first, second = spec.compute(**kwargs), spec.compute(**kwargs)
    assert torch.equal(first.scores.nan_to_num(), second.scores.nan_to_num())
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("name", score_names())
def test_registry_entry_describes_the_score(name):
    spec = metrics.get(name)
    assert spec.category in set(typing.get_args(Category)) - {"sanity"}
    assert spec.direction in ("higher", "lower")
    assert spec.description
    assert set(spec.protocol()) == set(spec.params)
