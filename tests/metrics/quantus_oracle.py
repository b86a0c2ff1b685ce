"""Quantus as a test oracle: import it only through here (it calls np.trapz, gone in NumPy 2)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn


def quantus(monkeypatch: pytest.MonkeyPatch):
    """Import Quantus (skip when absent) with ``np.trapz`` restored for its AUC helper."""
    module = pytest.importorskip("quantus")
    if not hasattr(np, "trapz"):
        monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)
    return module


class Recorder(nn.Module):
    """Wraps a model and keeps every input batch it sees (to inspect what a reference perturbed)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.seen: list[Tensor] = []
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        self.seen.append(x.detach().clone())
        return self.model(x)


def all_rows(recorder: Recorder) -> Tensor:
    return torch.cat(recorder.seen)
