"""The report document: sections in reading order, from the analysis and the written figures."""
from __future__ import annotations

from pathlib import Path

from . import formatting as fmt
from .analysis import Analysis
from .document import Block, Bullets, Heading, Image, Paragraph, Table
from .figures import FigureSet
from .header import completeness, coverage, notes_section, parameters_section, run_section, zoo_section
from .tables import (agreement_table, error_table, metric_table, missing_table, rank_table_text, speed_table,
                     timing_details)

NO_TIMINGS = "No timings: this run has no timings.csv, so throughput, efficiency and the Pareto front are left out."


def _relative(analysis: Analysis, path: Path) -> str:
    return path.relative_to(analysis.run.path).as_posix()


def speed_section(analysis: Analysis) -> list[Block]:
    blocks: list[Block] = [Heading("Speed")]
    if analysis.run.timings is None:
        return blocks + [Paragraph(NO_TIMINGS)]
    return blocks + [
        Table(speed_table(analysis, "images_per_s"),
              "Throughput (images/s) at the best batch size, method x architecture"),
        Table(speed_table(analysis, "efficiency"), "Efficiency = roofline time / method time (1.0 = no overhead "
                                                   "beyond the model passes the method cannot avoid)"),
        Table(timing_details(analysis), "All timed cells (median and IQR over rounds; * = batch size quoted above)",
              show_index=False)]


def scores_section(analysis: Analysis) -> list[Block]:
    blocks: list[Block] = [Heading("Scores"), Paragraph(
        "Mean over images with its 95% bootstrap interval in brackets; (k/n): only k of the architecture's n "
        "images have a score (NaN scores are skipped and counted below); 'error': the cell failed.")]
    for metric, info in analysis.metrics.iterrows():
        blocks += [Heading(f"{metric} ({info['category']}, {fmt.direction(info['direction'])})", 3),
                   Table(metric_table(analysis, str(metric)))]
    return blocks


def ranking_section(analysis: Analysis) -> list[Block]:
    blocks: list[Block] = [Heading("Ranking"), Paragraph(
        "Rank 1 = best on a metric (its direction respected; ties share the mean rank). Overall = mean rank over "
        "the metrics that rank at least two methods. Where a metric has no score for some methods (failed cell), "
        "the others' ranks are stretched onto the full 1..n scale, so a failure lifts no one. Brackets: 95% "
        "interval of the rank over the same paired bootstrap resamples of images.")]
    for architecture in analysis.rankings:
        blocks += [Heading(architecture, 3), Table(rank_table_text(analysis, architecture))]
    return blocks


def agreement_section(analysis: Analysis, figures: FigureSet) -> list[Block]:
    blocks: list[Block] = [Heading("Agreement between metrics")]
    if analysis.agreement.empty:
        return blocks + [Paragraph("Fewer than two metrics with scores: no agreement to show.")]
    blocks += [Paragraph("Spearman rank correlation between metrics across (architecture, method) means, each "
                         "metric turned so that higher is better: positive = the metrics agree on which methods "
                         "are good. '–' where fewer than 3 common points."), Table(agreement_table(analysis))]
    if figures.agreement is not None:
        blocks.append(Image(_relative(analysis, figures.agreement), "Agreement between metrics (Spearman)"))
    return blocks


def figures_section(analysis: Analysis, figures: FigureSet) -> list[Block]:
    blocks: list[Block] = [Heading("Figures")]
    if figures.pareto is not None:
        blocks.append(Image(_relative(analysis, figures.pareto), "Faithfulness against speed, Pareto front dashed"))
    blocks += [Image(_relative(analysis, p), f"{label}: methods x metrics, normalised per metric")
               for label, p in figures.heatmaps]
    blocks += [Image(_relative(analysis, p), f"{metric} curves, mean over images") for metric, p in figures.curves]
    blocks += [Image(_relative(analysis, p), f"Cascading model randomisation ({measure}): similarity to the "
                                             f"original map as blocks are randomised, top down")
               for measure, p in figures.cascades]
    blocks += [Image(_relative(analysis, p), f"{label}: saliency grid (images x methods)")
               for label, p in figures.saliency]
    # Filter views, written by the runner when the configuration asks for them (filters = true).
    blocks += [Image(_relative(analysis, p), f"{p.stem.removeprefix('filters_')}: filters of the Grad-CAM layer, "
                                             "gradient ascent (top) and activation maps on held-out images")
               for p in sorted((analysis.run.path / "figures").glob("filters_*.png"))]
    # Attention pages, written by the runner for every transformer of the grid.
    blocks += [Image(_relative(analysis, p), f"{p.stem.removeprefix('attention_')}: the class token's attention to "
                                             "the patches per layer and head, the head mean, and the rollout under "
                                             "each image")
               for p in sorted((analysis.run.path / "figures").glob("attention_*.png"))]
    # Cascade strips (Adebayo et al.'s Figure 2), written by the runner where the cascading check runs.
    blocks += [Image(_relative(analysis, p), f"{p.stem.removeprefix('cascade_strip_')}: maps of one image as blocks "
                                             "are randomised from the logits down (rows: methods), with its "
                                             "similarity to the original map")
               for p in sorted((analysis.run.path / "figures").glob("cascade_strip_*.png"))]
    if figures.skipped_maps:
        blocks += [Paragraph("Map files that could not be read (left out of the saliency grids):"),
                   Bullets(figures.skipped_maps)]
    return blocks


def failures_section(analysis: Analysis) -> list[Block]:
    errors, missing = error_table(analysis), missing_table(analysis)
    blocks: list[Block] = [Heading("Failed cells")]
    blocks.append(Table(errors, show_index=False) if len(errors) else Paragraph("None: every cell that ran succeeded."))
    record = analysis.run.completeness or {}
    if record.get("missing"):
        blocks += [Paragraph(f"Missing (planned, no result file: {len(record['missing'])}):"),
                   Bullets(list(record["missing"]))]
    if record.get("damaged"):
        blocks += [Paragraph(f"Refused (a file that fails verification is never read: {len(record['damaged'])}):"),
                   Bullets([f"{d['file']}: {d['problem']}" for d in record["damaged"]])]
    blocks.append(Heading("No score (NaN) counts"))
    blocks.append(Table(missing, show_index=False) if len(missing) else Paragraph("None: every score is finite."))
    return blocks


def document(analysis: Analysis, figures: FigureSet) -> list[Block]:
    """All sections of the report."""
    title = analysis.run.metadata.get("run", analysis.run.path.name)
    return [Heading(f"Benchmark report: {title}", 1), *completeness(analysis), coverage(analysis),
            *run_section(analysis), *notes_section(analysis), *zoo_section(analysis), *speed_section(analysis),
            *scores_section(analysis), *ranking_section(analysis), *agreement_section(analysis, figures),
            *figures_section(analysis, figures), *failures_section(analysis), *parameters_section(analysis)]
