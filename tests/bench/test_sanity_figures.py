"""Sanity-check figures: the tidy frame from cascading results, the Adebayo-style plot, the strip."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from adapters.base import Cost, Method
from bench.figures import sanity as figures
from metrics.scores.sanity import model_randomisation_cascading
from metrics.similarity import MEASURES

BLOCKS = [("fc", ["2"]), ("conv", ["0"])]


class Gradient(Method):
    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor, **_: object) -> Tensor:
        x = x.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(x).gather(1, target[:, None]).sum(), x)
        return grad.abs().sum(dim=1, keepdim=True)

    def cost(self, **_: object) -> Cost:
        return Cost(forward=1, backward=1)


class Edge(Method):
    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor, **_: object) -> Tensor:
        return torch.nn.functional.pad((x[:, :, :, 1:] - x[:, :, :, :-1]).abs().sum(1, keepdim=True), (0, 1))

    def cost(self, **_: object) -> Cost:
        return Cost(forward=0)


def _results() -> dict[str, object]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 48 * 48, 3)).eval()
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    target = torch.tensor([0, 2])
    out: dict[str, object] = {"x": x, "original": Gradient().attribute(model, x, target)}
    for name, method in (("gradient", Gradient()), ("edge", Edge())):
        out[name] = model_randomisation_cascading(model=model, x=x, target=target, method=method, blocks=BLOCKS,
                                                  keep_maps=True)
    return out


@pytest.fixture(scope="module")
def results() -> dict[str, object]:
    return _results()


def test_cascade_frame_is_tidy(results: dict[str, object]) -> None:
    frame = figures.cascade_frame(results["gradient"], "tiny", "gradient")
    assert list(frame.columns) == figures.COLUMNS
    # per measure and image: the original plus one row per block
    assert len(frame) == len(MEASURES) * 2 * (1 + len(BLOCKS))
    first = frame[(frame["measure"] == "spearman_abs") & (frame["image"] == 1)].sort_values("n_randomised")
    assert first["block"].tolist() == ["original", "fc", "conv"]
    assert first["similarity"].iloc[0] == 1.0
    expected = results["gradient"].extras["curves_spearman_abs"][1].tolist()
    assert first["similarity"].iloc[1:].tolist() == pytest.approx(expected)


def test_cascade_plot_one_line_per_method_one_panel_per_architecture(results: dict[str, object], tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.concat([figures.cascade_frame(results[m], arch, m) for m in ("gradient", "edge") for arch in ("a", "b")])
    path = tmp_path / "cascade.png"
    fig = figures.plot_cascade(frame, path=path)
    assert path.stat().st_size > 0
    axes = fig.axes
    assert len(axes) == 2
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["original", "fc", "conv"]
    assert len([line for line in axes[0].get_lines() if len(line.get_xdata()) == 1 + len(BLOCKS)]) == 2
    with pytest.raises(ValueError, match="no finite"):
        figures.plot_cascade(frame, measure="not-a-measure")


def test_cascade_strip(results: dict[str, object], tmp_path: Path) -> None:
    result = results["gradient"]
    maps = result.extras["maps"][0]  # (B, H, W) for image 0
    fig = figures.plot_cascade_strip(results["original"][0], maps, result.extras["block_names"], image=results["x"][0],
                                     path=tmp_path / "strip.png")
    assert len(fig.axes) == 2 + len(BLOCKS)
    assert [ax.get_title() for ax in fig.axes][:2] == ["input", "original"]
    assert (tmp_path / "strip.png").stat().st_size > 0
    with pytest.raises(ValueError, match="maps for"):
        figures.plot_cascade_strip(results["original"][0], maps, ["fc"])
