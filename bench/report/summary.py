"""The report's opening section: findings per architecture and the anomalies, rules stated inline."""
from __future__ import annotations

from . import formatting as fmt
from .aggregate import AGGREGATE, LATEC, family_names
from .analysis import Analysis
from .document import Block, Bullets, Heading, Paragraph, Table
from .findings import (CHANCE_CONTROL, LOCALISES_AT, RISE_PASS_ABOVE, SIMILARITY_PASS_BELOW, ArchitectureFindings, Ranked,
                       anomalies, architecture_findings)

NOISY_MARK = "~"  # before a timing whose spread stayed above the target: read it as approximate
MAX_LISTED = 12  # names listed in one line before "and k more"


def _names(names: list[str], limit: int = MAX_LISTED) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


def _speed(items: list[Ranked], formatter) -> str:
    return ", ".join(f"{r.method} ({NOISY_MARK if r.noisy else ''}{formatter(r.value)})" for r in items)


def _ranks(items: list[Ranked]) -> str:
    return ", ".join(f"{r.method} {fmt.rank(r.value, r.low, r.high)}" for r in items)


def _sanity_lines(found: ArchitectureFindings) -> list[str]:
    lines = []
    for v in found.sanity:
        borderline = set(v.borderline)

        def marked(names: list[str]) -> str:
            return _names([f"{n}{'?' if n in borderline else ''}" for n in names])
        lines.append(f"sanity, {v.metric}: fails {marked(v.failed)}; passes {marked(v.passed)}")
    return lines


def architecture_bullets(found: ArchitectureFindings) -> list[str]:
    items = []
    if found.fastest:
        items.append(f"fastest (images/s; controls without model passes left out): "
                     f"{_speed(found.fastest, fmt.throughput)}")
    if found.most_efficient:
        items.append(f"most efficient (roofline / method time): {_speed(found.most_efficient, fmt.number)}")
    if found.best:
        items.append(f"best aggregate rank: {_ranks(found.best)}")
    if found.most_faithful:
        items.append(f"most faithful (faithfulness family rank): {_ranks(found.most_faithful)}")
    items += _sanity_lines(found)
    if found.localises or found.does_not_localise:
        items.append(f"localise the ground truth: {_names(found.localises)}; do not: {_names(found.does_not_localise)}")
    return items or ["no scores and no timings for this architecture"]


def rules(analysis: Analysis) -> Paragraph:
    """How every line of the summary is decided."""
    sizes = ", ".join(f"{st.architecture.label} {len(st.images)}" for st in analysis.stats)
    return Paragraph(
        f"Per architecture (images scored: {sizes or 'none'}). Ranks: 1 = best; the aggregate is the mean over "
        "the score families of each family's mean rank, every family weighted equally whatever its number of "
        "scores (LATEC's median of normalised ranks is in the leaderboard table for reference); brackets: 95% "
        f"bootstrap interval over images ({analysis.n_resamples} paired resamples). Sanity checks: a similarity "
        f"score passes below {SIMILARITY_PASS_BELOW} (the map changed once the model was randomised), a score "
        f"where higher is better (entropy rise) above {RISE_PASS_ABOVE:g}; '?' = the interval straddles the "
        f"threshold. Localises: on most localisation scores, at least {LOCALISES_AT:g} of the way from chance (the "
        f"{CHANCE_CONTROL} control's mean, 0 without it) to a perfect 1. '{NOISY_MARK}' = a "
        "timing whose spread never settled (see anomalies).")


def anomaly_bullets(analysis: Analysis) -> list[str]:
    found = anomalies(analysis)
    items = []
    for row in found.failed.itertuples():
        items.append(f"{row.architecture}: {row.cells} failed cell(s), e.g. {fmt.one_line(row.example, 160)}")
    if found.missing or found.refused:
        items.append(f"{found.missing} planned cell(s) missing and {found.refused} refused (damaged or other "
                     "settings): a PARTIAL RUN, see Failed cells")
    if found.not_applicable:
        items.append(f"{found.not_applicable} cell(s) not applicable (the method refused the architecture; "
                     "not failures)")
    if len(found.nan_cells):
        worst = found.nan_cells.sort_values("n_nan", ascending=False, kind="stable").head(5)
        listed = ", ".join(f"{r.method}/{r.metric} on {r.architecture} ({r.n_nan}/{r.n_rows})" for r in worst.itertuples())
        items.append(f"NaN scores (skipped) in {len(found.nan_cells)} cell(s), {int(found.nan_cells['n_nan'].sum())} "
                     f"score(s) in all; most: {listed}")
    if len(found.noisy_timings):
        listed = ", ".join(f"{r.model}/{r.method} b{int(r.batch_size)} (IQR {fmt.number(r.iqr_fraction)} of the "
                           f"median, {fmt.number(r.rounds) if r.rounds == r.rounds else '?'} rounds)"
                           for r in found.noisy_timings.head(MAX_LISTED).itertuples())
        more = len(found.noisy_timings) - MAX_LISTED
        items.append(f"{len(found.noisy_timings)} timing cell(s) too noisy to trust (marked {NOISY_MARK}): {listed}"
                     + (f" and {more} more" if more > 0 else ""))
    return items or ["none: every planned cell ran, every score is finite, every timing settled"]


def summary_section(analysis: Analysis) -> list[Block]:
    blocks: list[Block] = [Heading("Summary", anchor="summary")]
    for found in architecture_findings(analysis):
        blocks += [Heading(found.label, 3), Bullets(architecture_bullets(found))]
    # The rules after the findings: the first screen shows results; the rules are one scroll away.
    blocks += [Heading("Anomalies", 3), Bullets(anomaly_bullets(analysis)), Heading("How the summary is decided", 3),
               rules(analysis)]
    return blocks


def leaderboard_table(analysis: Analysis, architecture: str) -> Table:
    """Aggregate rank, family ranks and the LATEC-style median for one architecture, best first."""
    table = analysis.aggregates[architecture]
    frame = table[[]].copy()
    frame["aggregate rank"] = [fmt.rank(v, lo, hi) for v, lo, hi in
                               zip(table[AGGREGATE], table[f"{AGGREGATE}_low"], table[f"{AGGREGATE}_high"])]
    for family in family_names(table):
        frame[family] = [fmt.rank(v, lo, hi) for v, lo, hi in
                         zip(table[family], table[f"{family}_low"], table[f"{family}_high"])]
    frame["LATEC median (0 = best)"] = [fmt.number(v) for v in table[LATEC]]
    frame["scores ranked"] = [str(int(v)) for v in table["n_scores"]]
    return Table(frame, f"{architecture}: aggregate rank (mean of the family ranks) and each family's mean rank")
