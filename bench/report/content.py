"""The report document: sections in reading order, from the analysis and the written figures.

Findings first (summary, leaderboard, faithfulness against speed), then the speed tables and one
section per score family (its tables, ranks and figures), then views and failures; the run's
device, versions, configuration and parameters last, folded.
"""
from __future__ import annotations

from pathlib import Path

from . import formatting as fmt
from .analysis import Analysis
from .cells import CATEGORY_ORDER
from .document import Block, Bullets, Contents, Details, Heading, Image, Paragraph, Table
from .figures import FigureSet
from .header import completeness, coverage, notes_section, parameters_section, run_section, zoo_section
from .summary import leaderboard_table, summary_section
from .tables import (agreement_table, error_table, family_rank_table, metric_table, missing_table, speed_table,
                     timing_details)

NO_TIMINGS = "No timings: this run has no timings.csv, so throughput, efficiency and the Pareto front are left out."
FAMILY_TITLES = {"sanity": "Randomisation (sanity checks)"}


def _relative(analysis: Analysis, path: Path) -> str:
    return path.relative_to(analysis.run.path).as_posix()


def speed_section(analysis: Analysis) -> list[Block]:
    blocks: list[Block] = [Heading("Speed")]
    if analysis.run.timings is None:
        return blocks + [Paragraph(NO_TIMINGS)]
    return blocks + [
        Paragraph("Median over adaptive rounds: each cell is timed, interleaved with its roofline, until the IQR of "
                  "both is within the run's target fraction of the median (or the round or time cap is reached). "
                  "'~' marks a cell whose spread never settled: an approximate number, not a solid one."),
        Table(speed_table(analysis, "images_per_s"),
              "Throughput (images/s) at the best batch size, method x architecture"),
        Table(speed_table(analysis, "efficiency"), "Efficiency = roofline time / method time (1.0 = no overhead "
                                                   "beyond the model passes the method cannot avoid)"),
        Details("Every timed cell (rounds, median, IQR, roofline, memory)", [
            Table(timing_details(analysis), "All timed cells (median and IQR over rounds; * = batch size quoted "
                                            "above; noisy = IQR above the target after the last round)",
                  show_index=False)])]


def family_title(family: str) -> str:
    return FAMILY_TITLES.get(family, family.capitalize())


def family_sections(analysis: Analysis, figures: FigureSet) -> list[Block]:
    """One section per score family of the run, in the registry's family order: a table per score
    (method x architecture), the ranks per score folded, and the family's curve figures."""
    present = list(dict.fromkeys(analysis.metrics["category"]))
    families = [c for c in CATEGORY_ORDER if c in present] + [c for c in present if c not in CATEGORY_ORDER]
    curves = dict(figures.curves)
    blocks: list[Block] = []
    for family in families:
        names = [str(m) for m in analysis.metrics.index[analysis.metrics["category"] == family]]
        blocks += [Heading(f"{family_title(family)} scores"), Paragraph(
            f"{len(names)} score(s). Mean over images with its 95% bootstrap interval in brackets; (k/n): only k of "
            "the architecture's n images have a score (NaN scores are skipped and counted under Failed cells); "
            "'error': the cell failed; 'n/a': the method refused the architecture.")]
        for metric in names:
            blocks += [Heading(f"{metric} ({family}, {fmt.direction(analysis.metrics.at[metric, 'direction'])})", 4),
                       Table(metric_table(analysis, metric))]
        ranks = [Table(frame, f"{architecture}: rank per {family} score (1 = best) [95% interval]")
                 for architecture, frame in ((a, family_rank_table(analysis, a, family)) for a in analysis.rankings)
                 if not frame.empty]
        if ranks:
            blocks.append(Details(f"Ranks per {family} score, per architecture", ranks))
        blocks += [Image(_relative(analysis, curves[m]), f"{m} curves, mean over images") for m in names if m in curves]
        if family == "sanity":
            blocks += [Image(_relative(analysis, p), f"Cascading model randomisation ({measure}): similarity to the "
                                                     f"original map as blocks are randomised, top down")
                       for measure, p in figures.cascades]
            # Cascade strips (Adebayo et al.'s Figure 2), written by the runner where the cascading check runs.
            blocks += [Image(_relative(analysis, p), f"{p.stem.removeprefix('cascade_strip_')}: maps of one image as "
                                                     "blocks are randomised from the logits down (rows: methods), "
                                                     "with its similarity to the original map")
                       for p in sorted((analysis.run.path / "figures").glob("cascade_strip_*.png"))]
    return blocks


def leaderboard_section(analysis: Analysis, figures: FigureSet) -> list[Block]:
    blocks: list[Block] = [Heading("Leaderboard")]
    if figures.leaderboard is not None:
        blocks.append(Image(_relative(analysis, figures.leaderboard),
                            "Aggregate rank per method and architecture [95% interval]; grey: not run there"))
    blocks.append(Paragraph(
        "Aggregate rank: each score family's mean rank (over its scores that rank at least two methods), then the "
        "mean over the families, every family weighted equally. For reference, LATEC (Klein et al. 2024) takes the "
        "median over all scores of the normalised rank (rank - 1) / (n - 1), every score weighted equally."))
    tables = [leaderboard_table(analysis, a) for a in analysis.aggregates if len(analysis.aggregates[a])]
    if tables:
        blocks.append(Details("Leaderboard tables per architecture (aggregate, family ranks, LATEC median)", tables))
    return blocks


def pareto_section(analysis: Analysis, figures: FigureSet) -> list[Block]:
    if figures.pareto is None:
        return []
    return [Heading("Faithfulness against speed"),
            Image(_relative(analysis, figures.pareto), "Faithfulness against speed, Pareto front dashed")]


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


def views_section(analysis: Analysis, figures: FigureSet) -> list[Block]:
    """Per-architecture heatmaps, saliency grids and the runner's pages (filters, attention)."""
    blocks: list[Block] = [Heading("Maps and views")]
    blocks += [Image(_relative(analysis, p), f"{label}: methods x metrics, normalised per metric")
               for label, p in figures.heatmaps]
    blocks += [Image(_relative(analysis, p), f"{label}: token maps (sentences x methods x tokens)"
                     if p.name.startswith("token_maps_") else f"{label}: saliency grid (images x methods)")
               for label, p in figures.saliency]
    # Filter views, written by the runner when the configuration asks for them (filters = true).
    blocks += [Image(_relative(analysis, p), f"{p.stem.removeprefix('filters_')}: filters of the Grad-CAM layer, "
                                             "gradient ascent (top) and activation maps on held-out images")
               for p in sorted((analysis.run.path / "figures").glob("filters_*.png"))]
    # Attention pages, written by the runner for every transformer of the grid.
    blocks += [Image(_relative(analysis, p), f"{p.stem.removeprefix('attention_')}: the class token's attention to "
                                             "the patches (text: token-to-token attention) per layer and head, the "
                                             "head mean, and the rollout")
               for p in sorted((analysis.run.path / "figures").glob("attention_*.png"))]
    # Text models: the embedding analyses the runner writes (bench/figures/embedding_pages.py).
    blocks += [Image(_relative(analysis, p), f"{p.stem.removeprefix('embedding_projection_')}: contextual embeddings "
                                             "of chosen words, PCA to 2-D per layer, by word and by class")
               for p in sorted((analysis.run.path / "figures").glob("embedding_projection_*.png"))]
    blocks += [Image(_relative(analysis, p), f"{p.stem.removeprefix('embedding_distances_')}: distances between the "
                                             "contextual embeddings of one word in different sentences, per layer")
               for p in sorted((analysis.run.path / "figures").glob("embedding_distances_*.png"))]
    if figures.skipped_maps:
        blocks += [Paragraph("Map files that could not be read (left out of the saliency grids):"),
                   Bullets(figures.skipped_maps)]
    return blocks if len(blocks) > 1 else []


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


def details_section(analysis: Analysis) -> list[Block]:
    """Device, versions, configuration, zoo and parameters: folded, at the end."""
    return [Heading("Run details"), coverage(analysis),
            Details("Run, device, versions and configuration", run_section(analysis)),
            *([Details("Model zoo", zoo_section(analysis))] if analysis.run.zoo else []),
            Details("Parameters of every metric and method", parameters_section(analysis))]


def document(analysis: Analysis, figures: FigureSet) -> list[Block]:
    """All sections of the report, findings first."""
    title = analysis.run.metadata.get("run", analysis.run.path.name)
    return [Heading(f"Benchmark report: {title}", 1), *completeness(analysis), Contents(),
            *summary_section(analysis), *leaderboard_section(analysis, figures), *pareto_section(analysis, figures),
            *speed_section(analysis), *family_sections(analysis, figures), *agreement_section(analysis, figures),
            *views_section(analysis, figures), *failures_section(analysis), *notes_section(analysis),
            *details_section(analysis)]
