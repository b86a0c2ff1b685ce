"""Report of a benchmark run: tables, rankings with bootstrap intervals, metric agreement, figures.

``build_report(run_dir)`` reads ``results/<run>/`` (scores.csv, and when present curves.csv,
timings.csv, maps/*.pt, zoo.json, metadata.json) and writes report.md, report.html and
figures/*.png next to them. ``summary_table(run_dir)`` is the short text version for the terminal.
"""
from .build import build_report
from .load import Run, load_run
from .terminal import summary_table

__all__ = ["Run", "build_report", "load_run", "summary_table"]
