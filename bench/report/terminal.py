"""The compact summary printed at the end of a run: one line per (architecture, method)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import formatting as fmt
from .cells import architectures, method_order, metric_info, per_image
from .load import Run, load_run
from .speed import best_timings


def summary_frame(run: Run) -> pd.DataFrame:
    """Strings: architecture, method, images/s, efficiency, then the mean of each metric (header
    carries the direction arrow); ``error`` where a cell failed without any score row."""
    info = metric_info(run.scores)
    means = (per_image(run.ok).groupby(["model", "dataset", "method", "metric"])["score"].mean())
    failed = set(map(tuple, run.errors[["model", "dataset", "method", "metric"]].to_numpy()))
    speed = best_timings(run.timings).set_index(["model", "method"]) if run.timings is not None else None
    rows = []
    methods = method_order(run.scores, run.metadata)
    for arch in architectures(run.scores, run.metadata):
        present = run.scores[(run.scores["model"] == arch.model) & (run.scores["dataset"] == arch.dataset)]
        for method in [m for m in methods if m in set(present["method"])]:
            row = {"architecture": arch.label, "method": method}
            timed = speed is not None and (arch.model, method) in speed.index
            row["images/s"] = fmt.throughput(speed.at[(arch.model, method), "images_per_s"]) if timed else fmt.NO_VALUE
            row["efficiency"] = fmt.number(speed.at[(arch.model, method), "efficiency"]) if timed else fmt.NO_VALUE
            for metric, direction in info["direction"].items():
                key = (arch.model, arch.dataset, method, metric)
                text = fmt.number(means[key]) if key in means.index else fmt.NO_VALUE
                if key in failed and key not in means.index:
                    text = "error"
                row[f"{metric} {fmt.ARROWS.get(direction, '')}".strip()] = text
            rows.append(row)
    return pd.DataFrame(rows)


def render_text(frame: pd.DataFrame) -> str:
    """Aligned columns: names left, numbers right."""
    if frame.empty:
        return "(no scores)"
    widths = {c: max(len(str(c)), *(len(str(v)) for v in frame[c])) for c in frame.columns}
    left = {"architecture", "method"}

    def line(values: list[str]) -> str:
        return "  ".join(v.ljust(widths[c]) if c in left else v.rjust(widths[c])
                         for c, v in zip(frame.columns, values))

    header = line([str(c) for c in frame.columns])
    body = [line([str(v) for v in row]) for row in frame.itertuples(index=False)]
    return "\n".join([header, "-" * len(header), *body])


def summary_table(run_dir: str | Path) -> str:
    """Compact text table of a run: per architecture and method, throughput, efficiency and the
    mean of each metric over images (NaN scores skipped)."""
    run = load_run(run_dir)
    table = render_text(summary_frame(run))
    record = run.completeness
    if record is None:
        return table
    status = "complete" if record.get("complete") else "PARTIAL RUN"
    line = (f"{status}: {record['done']} of {record['planned']} planned cells done, {record['failed']} failed, "
            f"{record.get('not_applicable', 0)} not applicable, "
            f"{len(record.get('missing', []))} missing, {len(record.get('damaged', []))} refused"
            + ("; MIXED library versions" if record.get("mixed_versions") else ""))
    return f"{table}\n{line}"
