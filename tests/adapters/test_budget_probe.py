"""The probe (one cached forward) and the memory budget that turns megabytes into rows."""
from __future__ import annotations

import gc
import weakref

import torch
from torch import nn

from adapters.budget import MAX_ROWS, rows_for_budget, spans
from adapters.probe import _CACHE, probe


def test_probe_records_classes_order_and_activation_bytes():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 6)).eval()
    x = torch.zeros(5, 3, 8, 8)
    result = probe(model, x)
    assert result.n_classes == 6
    assert [c.name for c in result.order] == ["0", "1", "2", "3"]
    assert result.order[0].output_shape == (1, 4, 8, 8)
    # input + conv + relu + flatten + linear outputs, float32, one image
    assert result.activation_bytes == 4 * (3 * 64 + 4 * 64 + 4 * 64 + 4 * 64 + 6)
    assert probe(model, torch.ones(2, 3, 8, 8)) is result, "cached per model and image shape, not batch"


def test_probe_cache_does_not_keep_models_alive():
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(72, 2)).eval()
    probe(model, torch.zeros(1, 3, 8, 8))
    alive = weakref.ref(model)
    assert alive() in _CACHE
    del model
    gc.collect()
    assert alive() is None


def test_rows_grow_with_the_budget_and_stay_bounded(model, images):
    small, large = rows_for_budget(model, images, 1.0, backward=True), rows_for_budget(model, images, 8.0, backward=True)
    assert 1 <= small < large
    assert rows_for_budget(model, images, 1.0, backward=False) > small, "forward-only rows keep no gradients"
    assert rows_for_budget(model, images, 1e-6, backward=True) == 1
    assert rows_for_budget(model, images, 1e6, backward=True) == MAX_ROWS["cpu"]


def test_spans_cover_the_range():
    assert spans(7, 3) == [slice(0, 3), slice(3, 6), slice(6, 7)]
    assert spans(0, 3) == []
