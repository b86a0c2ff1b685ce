"""The report's opening: what was run, where, on what, with which settings; and how much data
stands behind every number (images, seeds, resamples)."""
from __future__ import annotations

import json

from .analysis import Analysis
from .document import Block, Bullets, Code, Heading, Paragraph, Table
from .tables import zoo_table


def _inline(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def completeness(analysis: Analysis) -> list[Block]:
    """How much of the plan the tables hold: planned, done, failed, missing, refused files; a
    partial run or one that mixes library versions is marked before any number is read."""
    record = analysis.run.completeness
    if record is None:
        return [Paragraph("Completeness unknown: this directory has no completeness.json (it was not written by "
                          "the runner), so nothing shows that every planned cell is here.")]
    missing, damaged = record.get("missing", []), record.get("damaged", [])
    line = (f"Cells planned: {record['planned']}; done: {record['done']}; failed: {record['failed']}; "
            f"not applicable: {record.get('not_applicable', 0)}; missing: {len(missing)}; refused (damaged or other settings): {len(damaged)}.")
    if record.get("not_in_plan"):
        line += (f" {record['not_in_plan']} file(s) in cells/ belong to other settings and are not read "
                 "(delete them to clear the directory).")
    blocks: list[Block] = []
    if not record.get("complete", False):
        blocks.append(Paragraph(f"**PARTIAL RUN**: {len(missing) + len(damaged)} of {record['planned']} planned "
                                "cells have no verified result (listed under Failed cells); the tables show the rest. "
                                "Rerun the same command to complete it."))
    if record.get("mixed_versions"):
        versions = "; ".join(", ".join(f"{k} {v}" for k, v in sorted((found or {}).items()))
                             for found in record.get("versions", []))
        blocks.append(Paragraph(f"**MIXED VERSIONS**: the cells were computed under {len(record['versions'])} "
                                f"different library version sets ({versions})."))
    return blocks + [Paragraph(line)]


def coverage(analysis: Analysis) -> Paragraph:
    """Image counts, seeds and the bootstrap, stated up front."""
    ok = analysis.run.ok
    seeds = sorted(int(s) for s in ok["seed"].unique())
    per_arch = ", ".join(f"{st.architecture.label}: {len(st.images)}" for st in analysis.stats)
    n_failed = len(analysis.run.errors[["model", "dataset", "method", "metric"]].drop_duplicates())
    return Paragraph(
        f"{len(analysis.stats)} architecture(s), {len(analysis.methods)} method(s), {len(analysis.metrics)} "
        f"metric(s). Images per architecture: {per_arch or 'none'}. Seeds: {', '.join(map(str, seeds)) or 'none'} "
        f"(scores are averaged over seeds per image). Intervals: 95% percentile bootstrap over images, "
        f"{analysis.n_resamples} resamples, seeded per architecture. Failed cells: {n_failed}; NaN scores "
        f"skipped: {int(ok['score'].isna().sum())} of {len(ok)} score rows.")


def run_section(analysis: Analysis) -> list[Block]:
    meta = analysis.run.metadata
    items = [f"run: {meta.get('run', analysis.run.path.name)}"]
    items += [f"{key.replace('_', ' ')}: {_inline(meta[key])}" for key in ("started", "finished", "git_revision")
              if key in meta]
    blocks: list[Block] = [Heading("Run"), Bullets(items)]
    if meta.get("device"):
        blocks += [Heading("Device", 3), Bullets([f"{k}: {_inline(v)}" for k, v in meta["device"].items()])]
    if meta.get("versions"):
        blocks += [Heading("Versions", 3), Bullets([f"{k}: {_inline(v)}" for k, v in meta["versions"].items()])]
    if "config" in meta:
        blocks += [Heading("Configuration", 3), Code(json.dumps(meta["config"], indent=2, sort_keys=True), "json")]
    return blocks


def notes_section(analysis: Analysis) -> list[Block]:
    notes = [str(n) for n in analysis.run.metadata.get("notes") or []]
    notes += _not_planned(analysis.run.metadata.get("not_planned") or [])
    return [Heading("Notes"), Bullets(notes)] if notes else []


def _not_planned(rows: list[dict]) -> list[str]:
    """One line per reason: which (method, metric) pairs the grid left out, on how many models."""
    by_reason: dict[str, dict[str, set[str]]] = {}
    for row in rows:
        by_reason.setdefault(row["reason"], {}).setdefault(f"{row['method']}:{row['metric']}", set()).add(row["model"])
    return [f"not planned, {reason}: " + ", ".join(f"{pair} ({len(models)} model(s))" for pair, models in sorted(pairs.items()))
            for reason, pairs in sorted(by_reason.items())]


def parameters_section(analysis: Analysis) -> list[Block]:
    """Protocol parameters of each metric and parameters of each method, as written by the run."""
    scores = analysis.run.scores
    metric_params = (scores[["metric", "params"]].drop_duplicates()
                     .rename(columns={"params": "protocol parameters"}).set_index("metric"))
    method_params = (scores[["method", "method_params"]].drop_duplicates()
                     .rename(columns={"method_params": "parameters"}).set_index("method"))
    return [Heading("Parameters"),
            Table(metric_params.astype(str), "Metrics (one row per distinct parameter set)"),
            Table(method_params.astype(str), "Methods (one row per distinct parameter set)")]


def zoo_section(analysis: Analysis) -> list[Block]:
    if not analysis.run.zoo:
        return []
    return [Heading("Model zoo"), Table(zoo_table(analysis.run.zoo), "Held-out accuracy of the models",
                                        show_index=False)]
