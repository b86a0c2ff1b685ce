"""The report's tables as frames of strings (method x architecture, ranks, failures, counts)."""
from __future__ import annotations

import pandas as pd

from . import formatting as fmt
from .analysis import Analysis
from .ranking import OVERALL, ranked_metrics
from .speed import best_timings, speed_matrix

ERROR_CELL = "error"
NO_SCORE_CELL = "no score"
NOT_APPLICABLE_CELL = "n/a"
NOISY_MARK = "~"  # the timing's spread never settled: approximate


def _architecture_order(analysis: Analysis) -> list[str]:
    return [st.architecture.label for st in analysis.stats]


def metric_table(analysis: Analysis, metric: str) -> pd.DataFrame:
    """method x architecture: ``mean [low, high]``, with ``(k/n)`` when only k of the architecture's
    n images have a score, ``error`` for a failed cell and ``no score`` when nothing could be scored."""
    totals = {st.architecture.label: len(st.images) for st in analysis.stats}
    cells = analysis.cells[analysis.cells["metric"] == metric]
    table = pd.DataFrame(index=pd.Index([m for m in analysis.methods if m in set(cells["method"])], name="method"),
                         columns=[a for a in _architecture_order(analysis) if a in set(cells["architecture"])],
                         dtype=object)
    for row in cells.itertuples(index=False):
        if row.n_rows == 0:
            text = ERROR_CELL
        elif row.n_images == 0:
            text = NO_SCORE_CELL
        else:
            text = fmt.with_interval(row.mean, row.ci_low, row.ci_high)
            if row.n_images < totals[row.architecture]:
                text += f" ({row.n_images}/{totals[row.architecture]})"
        table.at[row.method, row.architecture] = text
    refused = analysis.run.not_applicable
    for row in refused[refused["metric"] == metric].drop_duplicates(["model", "dataset", "method"]).itertuples():
        label = analysis.labels.get((row.model, row.dataset))
        if label in table.columns:
            if row.method not in table.index:
                table.loc[row.method] = None
            table.at[row.method, label] = NOT_APPLICABLE_CELL
    return table.fillna(fmt.NO_VALUE)


def rank_table_text(analysis: Analysis, architecture: str, metrics: list[str] | None = None) -> pd.DataFrame:
    """Ranks with intervals, best overall first; columns: overall mean rank, then each metric (or the
    ``metrics`` given, without the overall column)."""
    ranks = analysis.rankings[architecture]
    columns = [OVERALL, *ranked_metrics(ranks)] if metrics is None else [m for m in ranked_metrics(ranks) if m in metrics]
    text = pd.DataFrame(index=ranks.index, columns=["mean rank (overall)" if c == OVERALL else c for c in columns],
                        dtype=object)
    for name, title in zip(columns, text.columns):
        text[title] = [fmt.rank(v, lo, hi) for v, lo, hi in
                       zip(ranks[name], ranks[f"{name}_low"], ranks[f"{name}_high"])]
    return text


def family_rank_table(analysis: Analysis, architecture: str, family: str) -> pd.DataFrame:
    """One family's per-score ranks on one architecture (empty when none of its scores ranks);
    families split the rank table so that 40 scores never make one unreadable row."""
    metrics = [str(m) for m in analysis.metrics.index[analysis.metrics["category"] == family]]
    table = rank_table_text(analysis, architecture, metrics)
    return table if len(table.columns) else pd.DataFrame()


def agreement_table(analysis: Analysis) -> pd.DataFrame:
    return analysis.agreement.map(lambda v: fmt.NO_VALUE if pd.isna(v) else f"{v:.2f}")


def speed_table(analysis: Analysis, value: str) -> pd.DataFrame:
    """method x model: best images/s or the efficiency at that batch size."""
    timings = analysis.run.timings
    models = list(dict.fromkeys(st.architecture.model for st in analysis.stats))
    wide = speed_matrix(timings, value, analysis.methods, models)
    formatter = fmt.throughput if value == "images_per_s" else fmt.number
    noisy = speed_matrix(timings.assign(noisy=timings["noisy"].astype(float)), "noisy", analysis.methods, models)
    text = wide.map(lambda v: formatter(float(v)))
    marked = text.where(~(noisy.reindex_like(text).fillna(0) > 0), NOISY_MARK + text)
    return marked.where(text != fmt.NO_VALUE, text).rename_axis(index="method", columns=None)


def timing_details(analysis: Analysis) -> pd.DataFrame:
    """Every timed (model, method, batch size) row, as measured."""
    order = {m: i for i, m in enumerate(analysis.methods)}
    t = analysis.run.timings.assign(_order=analysis.run.timings["method"].map(order).fillna(len(order)))
    models = {m: i for i, m in enumerate(dict.fromkeys(st.architecture.model for st in analysis.stats))}
    t = t.assign(_model=t["model"].map(models).fillna(len(models)))
    t = t.sort_values(["_model", "_order", "batch_size"], kind="stable")
    best = best_timings(t).set_index(["model", "method"])["batch_size"]
    return pd.DataFrame({
        "model": t["model"], "method": t["method"],
        "batch": [f"{int(b)}{' *' if best.get((m, me)) == b else ''}"
                  for m, me, b in zip(t["model"], t["method"], t["batch_size"])],
        "device": t["device"],
        "median (ms/batch)": [fmt.number(1000 * v) for v in t["median_s"]],
        "IQR (ms)": [fmt.number(1000 * v) for v in t["iqr_s"]],
        "images/s": [f"{NOISY_MARK if n else ''}{fmt.throughput(v)}" for v, n in zip(t["images_per_s"], t["noisy"])],
        "rounds": [fmt.NO_VALUE if pd.isna(r) else str(int(r)) for r in t["rounds"]],
        "IQR / median": [fmt.number(v) for v in t["iqr_fraction"]],
        "roofline IQR / median": [fmt.number(v) for v in t["roofline_iqr_fraction"]],
        "noisy": ["yes" if n else "" for n in t["noisy"]],
        "passes fwd/bwd per image": [f"{fmt.number(f)}/{fmt.number(b)}"
                                     for f, b in zip(t["forward_passes"], t["backward_passes"])],
        "roofline (ms/batch)": [fmt.number(1000 * v) for v in t["roofline_s"]],
        "efficiency": [fmt.number(v) for v in t["efficiency"]],
        "peak memory": [fmt.size_bytes(v) for v in t["peak_memory_bytes"]],
    })


def error_table(analysis: Analysis) -> pd.DataFrame:
    """One row per failed cell (model, dataset, method, metric, seed) with its message."""
    errors = analysis.run.errors
    frame = errors[["model", "dataset", "method", "metric", "seed", "error"]].drop_duplicates()
    return frame.assign(error=[fmt.one_line(e) for e in frame["error"]]).reset_index(drop=True)


def missing_table(analysis: Analysis) -> pd.DataFrame:
    """Cells that ran but have NaN scores: how many rows were skipped out of how many."""
    cells = analysis.cells[analysis.cells["n_nan"] > 0]
    return pd.DataFrame({
        "architecture": cells["architecture"], "method": cells["method"], "metric": cells["metric"],
        "NaN scores (skipped)": cells["n_nan"], "score rows": cells["n_rows"],
        "images with a score": cells["n_images"]}).reset_index(drop=True)


def zoo_table(zoo: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(zoo)
    columns = [c for c in ["name", "model", "dataset", "accuracy"] if c in frame.columns]
    frame = frame[columns + [c for c in frame.columns if c not in columns]]
    return frame.map(lambda v: fmt.number(v) if isinstance(v, float) else fmt.NO_VALUE if v is None else str(v))
