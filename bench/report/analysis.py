"""Everything computed from a run before anything is drawn or written: cell statistics, ranks and
metric agreement. Tables, figures and the terminal summary all read this one object."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .aggregate import aggregate_table
from .bootstrap import N_RESAMPLES
from .cells import ArchitectureStats, architecture_stats, architectures, cell_table, method_order, metric_info
from .load import Run
from .ranking import metric_agreement, rank_table


@dataclass
class Analysis:
    run: Run
    stats: list[ArchitectureStats]
    cells: pd.DataFrame
    rankings: dict[str, pd.DataFrame]  # by architecture label
    aggregates: dict[str, pd.DataFrame]  # by architecture label: aggregate rank over families (the leaderboard)
    agreement: pd.DataFrame
    labels: dict[tuple[str, str], str]  # (model, dataset) -> architecture label
    methods: list[str]
    metrics: pd.DataFrame  # index metric: category, direction
    n_resamples: int


def analyse(run: Run, n_resamples: int = N_RESAMPLES) -> Analysis:
    """Statistics of a loaded run; ``n_resamples`` bootstrap resamples per architecture."""
    stats = architecture_stats(run, n_resamples)
    cells = cell_table(run, stats)
    metrics = metric_info(run.scores)
    return Analysis(
        run=run, stats=stats, cells=cells,
        rankings={st.architecture.label: rank_table(run, st) for st in stats},
        aggregates={st.architecture.label: aggregate_table(st, metrics) for st in stats},
        agreement=metric_agreement(cells[cells["n_images"] > 0]),
        labels={(a.model, a.dataset): a.label for a in architectures(run.scores, run.metadata)},
        methods=method_order(run.scores, run.metadata), metrics=metrics, n_resamples=n_resamples)
