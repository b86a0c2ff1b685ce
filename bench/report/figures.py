"""Write every figure of the report into ``<run>/figures/`` and say what was written.

Each figure is drawn only when its data exists (no timings: no Pareto front; no maps: no saliency
grid), so a partial run still gets a report.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .analysis import Analysis
from .curves import plot_cascades, plot_metric_curves, with_architecture
from .heatmaps import plot_agreement, plot_architecture_heatmap
from .load import CASCADE_METRIC
from .leaderboard import plot_leaderboard
from .pareto import plot_pareto
from .saliency_grid import plot_saliency_grids

FIGURES_DIR = "figures"


@dataclass
class FigureSet:
    """Written figures, as (name, path) pairs where there is one per architecture, metric or measure."""

    leaderboard: Path | None = None
    pareto: Path | None = None
    agreement: Path | None = None
    heatmaps: list[tuple[str, Path]] = field(default_factory=list)
    curves: list[tuple[str, Path]] = field(default_factory=list)
    cascades: list[tuple[str, Path]] = field(default_factory=list)
    saliency: list[tuple[str, Path]] = field(default_factory=list)
    skipped_maps: list[str] = field(default_factory=list)  # unreadable maps/*.pt, with the reason


def write_figures(analysis: Analysis) -> FigureSet:
    run = analysis.run
    directory = run.path / FIGURES_DIR
    directory.mkdir(parents=True, exist_ok=True)
    figures = FigureSet()
    figures.leaderboard = plot_leaderboard(analysis.aggregates, directory / "leaderboard.png")
    if run.timings is not None and not analysis.cells.empty:
        figures.pareto = plot_pareto(analysis.cells, run.timings, analysis.methods, directory / "pareto.png")
    figures.agreement = plot_agreement(analysis.agreement, directory / "metric_agreement.png")
    for st in analysis.stats:
        if st.methods and st.metrics:
            directions = [analysis.metrics.at[m, "direction"] for m in st.metrics]
            path = plot_architecture_heatmap(st, directions, directory / f"heatmap_{st.architecture.slug}.png")
            figures.heatmaps.append((st.architecture.label, path))
    if run.curves is not None and not run.curves.empty:
        curves = with_architecture(run.curves, analysis.labels)
        for metric in dict.fromkeys(curves["metric"]):
            if metric != CASCADE_METRIC:
                path = plot_metric_curves(curves, metric, analysis.methods, directory / f"curves_{metric}.png")
                if path is not None:
                    figures.curves.append((metric, path))
        figures.cascades = plot_cascades(curves, analysis.methods, directory)
    if run.maps:
        figures.saliency, figures.skipped_maps = plot_saliency_grids(run.maps, analysis.labels, analysis.methods,
                                                                     directory)
    return figures
