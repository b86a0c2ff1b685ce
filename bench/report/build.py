"""Build the report of a run directory: analysis, figures, then Markdown and HTML from one document."""
from __future__ import annotations

from pathlib import Path

from . import html, markdown
from .analysis import analyse
from .bootstrap import N_RESAMPLES
from .content import document
from .figures import write_figures
from .load import load_run


def build_report(run_dir: str | Path, n_resamples: int = N_RESAMPLES) -> Path:
    """Write ``report.md``, ``report.html`` and ``figures/*.png`` into ``run_dir``; return report.md's path.

    Rebuilding from the same files gives the same report: the bootstrap is seeded per architecture
    and nothing time-dependent is written.
    """
    analysis = analyse(load_run(run_dir), n_resamples)
    blocks = document(analysis, write_figures(analysis))
    title = f"Benchmark report: {analysis.run.metadata.get('run', analysis.run.path.name)}"
    report = analysis.run.path / "report.md"
    report.write_text(markdown.render(blocks), encoding="utf-8")
    (analysis.run.path / "report.html").write_text(html.render(blocks, title, analysis.run.path), encoding="utf-8")
    return report
