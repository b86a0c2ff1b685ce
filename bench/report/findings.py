"""What a reader wants first, per architecture: the fastest methods, the best by aggregate rank,
which pass and fail each sanity check, which localise the ground truth; and what not to trust.

Every rule is stated in the report next to its result (the thresholds below), and every list is
built from the registry's families and directions, never from method or score names.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .aggregate import AGGREGATE
from .analysis import Analysis
from .speed import best_timings

TOP = 3  # methods named per "fastest" / "best" line
#: A similarity-based sanity check (lower is better) is passed when the mean similarity of the map
#: after randomisation to the original is below this: the map changed.
SIMILARITY_PASS_BELOW = 0.5
#: A sanity check where higher is better (eMPRT's rise in entropy) is passed above this.
RISE_PASS_ABOVE = 0.0
#: A method localises when, on most of the localisation scores (all in [0, 1]), its mean is at least
#: this far from chance to perfect: (mean - chance) / (1 - chance) >= LOCALISES_AT, chance being the
#: random control's mean on the same architecture and score (AUC's chance is 0.5, the pointing
#: game's the mask's share of the image), or 0 when the run has no random control.
LOCALISES_AT = 0.5
CHANCE_CONTROL = "random"
SANITY, LOCALISATION, FAITHFULNESS = "sanity", "localisation", "faithfulness"


@dataclass
class Ranked:
    method: str
    value: float
    low: float = float("nan")
    high: float = float("nan")
    noisy: bool = False


@dataclass
class SanityVerdict:
    metric: str
    direction: str
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    borderline: list[str] = field(default_factory=list)  # the 95% interval straddles the threshold


@dataclass
class ArchitectureFindings:
    label: str
    model: str
    fastest: list[Ranked] = field(default_factory=list)
    most_efficient: list[Ranked] = field(default_factory=list)
    best: list[Ranked] = field(default_factory=list)  # aggregate rank, lowest first
    most_faithful: list[Ranked] = field(default_factory=list)  # faithfulness family rank
    sanity: list[SanityVerdict] = field(default_factory=list)
    localises: list[str] = field(default_factory=list)
    does_not_localise: list[str] = field(default_factory=list)


def _speed(analysis: Analysis, model: str, value: str) -> list[Ranked]:
    timings = analysis.run.timings
    if timings is None:
        return []
    # A control that needs no model pass (random, edge, ...) is fastest by construction: no finding.
    best = best_timings(timings[(timings["model"] == model) & (timings["forward_passes"] > 0)])
    best = best[np.isfinite(best[value].astype(float))].sort_values(value, ascending=False, kind="stable")
    return [Ranked(r.method, float(getattr(r, value)), noisy=bool(r.noisy)) for r in best.head(TOP).itertuples()]


def _ranked(table: pd.DataFrame, column: str) -> list[Ranked]:
    if column not in table.columns:
        return []
    rows = table[np.isfinite(table[column].astype(float))].sort_values(column, kind="stable").head(TOP)
    return [Ranked(m, float(r[column]), float(r[f"{column}_low"]), float(r[f"{column}_high"]))
            for m, r in rows.iterrows()]


def sanity_verdicts(cells: pd.DataFrame) -> list[SanityVerdict]:
    """Per sanity score of one architecture's cells: who passes, fails, or sits on the threshold."""
    verdicts = []
    for metric, rows in cells[(cells["category"] == SANITY) & (cells["n_images"] > 0)].groupby("metric", sort=False):
        direction = rows["direction"].iloc[0]
        if direction not in ("higher", "lower"):
            continue
        verdict = SanityVerdict(str(metric), direction)
        for r in rows.itertuples():
            if direction == "lower":
                passes, straddles = r.mean < SIMILARITY_PASS_BELOW, r.ci_low < SIMILARITY_PASS_BELOW <= r.ci_high
            else:
                passes, straddles = r.mean > RISE_PASS_ABOVE, r.ci_low <= RISE_PASS_ABOVE < r.ci_high
            (verdict.passed if passes else verdict.failed).append(r.method)
            if straddles:
                verdict.borderline.append(r.method)
        verdicts.append(verdict)
    return verdicts


def localisation(cells: pd.DataFrame, methods: list[str]) -> tuple[list[str], list[str]]:
    """(methods at least LOCALISES_AT of the way from chance to perfect on most of their localisation
    scores, best first; the others). The chance control itself is in neither list."""
    rows = cells[(cells["category"] == LOCALISATION) & (cells["n_images"] > 0)]
    if rows.empty:
        return [], []
    chance = rows[rows["method"] == CHANCE_CONTROL].groupby("metric")["mean"].mean()
    rows = rows[rows["method"] != CHANCE_CONTROL].assign(chance=lambda r: r["metric"].map(chance).fillna(0.0))
    above = (rows["mean"] - rows["chance"]) / (1.0 - rows["chance"]).clip(lower=1e-9)
    per_method = rows.assign(hit=above >= LOCALISES_AT).groupby("method").agg(
        hits=("hit", "mean"), mean=("mean", "mean"))
    per_method = per_method.reindex([m for m in methods if m in per_method.index])
    good = per_method[per_method["hits"] > 0.5].sort_values("mean", ascending=False, kind="stable")
    return list(good.index), [m for m in per_method.index if m not in set(good.index)]


def architecture_findings(analysis: Analysis) -> list[ArchitectureFindings]:
    found = []
    for st in analysis.stats:
        label, model = st.architecture.label, st.architecture.model
        cells = analysis.cells[analysis.cells["architecture"] == label]
        aggregate = analysis.aggregates[label]
        localises, does_not = localisation(cells, analysis.methods)
        found.append(ArchitectureFindings(
            label=label, model=model, fastest=_speed(analysis, model, "images_per_s"),
            most_efficient=_speed(analysis, model, "efficiency"), best=_ranked(aggregate, AGGREGATE),
            most_faithful=_ranked(aggregate, FAITHFULNESS), sanity=sanity_verdicts(cells),
            localises=localises, does_not_localise=does_not))
    return found


@dataclass
class Anomalies:
    failed: pd.DataFrame  # (architecture, n cells, first message) per architecture with failures
    missing: int
    refused: int
    not_applicable: int
    nan_cells: pd.DataFrame  # cells with NaN scores: architecture, method, metric, n_nan, n_rows
    noisy_timings: pd.DataFrame  # model, method, batch_size, iqr_fraction, rounds


def anomalies(analysis: Analysis) -> Anomalies:
    run = analysis.run
    errors = run.errors.drop_duplicates(["model", "dataset", "method", "metric"])
    labels = [analysis.labels.get((m, d), f"{m} / {d}") for m, d in zip(errors["model"], errors["dataset"])]
    failed = (errors.assign(architecture=labels).groupby("architecture", sort=False)
              .agg(cells=("metric", "size"), example=("error", "first")).reset_index())
    record = run.completeness or {}
    not_applicable = record.get("not_applicable",
                                len(run.not_applicable.drop_duplicates(["model", "dataset", "method", "metric"])))
    nan_cells = analysis.cells[analysis.cells["n_nan"] > 0][["architecture", "method", "metric", "n_nan", "n_rows"]]
    noisy = pd.DataFrame(columns=["model", "method", "batch_size", "iqr_fraction", "rounds"])
    if run.timings is not None:
        noisy = run.timings[run.timings["noisy"]][["model", "method", "batch_size", "iqr_fraction", "rounds"]]
    return Anomalies(failed, len(record.get("missing", [])), len(record.get("damaged", [])), int(not_applicable),
                     nan_cells.reset_index(drop=True), noisy.reset_index(drop=True))
