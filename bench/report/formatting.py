"""How numbers look in the tables: one place, so Markdown, HTML and the terminal agree."""
from __future__ import annotations

import math

NO_VALUE = "–"
ARROWS = {"higher": "↑", "lower": "↓"}


def number(value: float) -> str:
    """Three decimals in the usual range, three significant digits outside it."""
    if value is None or not math.isfinite(value):
        return NO_VALUE
    if value == 0 or 0.01 <= abs(value) < 1000:
        return f"{value:.3f}"
    return f"{value:.3g}"


def with_interval(mean: float, low: float, high: float) -> str:
    """``mean [low, high]``; the interval is dropped when it could not be estimated."""
    if not math.isfinite(mean):
        return NO_VALUE
    if not (math.isfinite(low) and math.isfinite(high)):
        return number(mean)
    return f"{number(mean)} [{number(low)}, {number(high)}]"


def rank(value: float, low: float, high: float) -> str:
    """A rank and its interval, e.g. ``1.5 [1, 3]``."""
    if not math.isfinite(value):
        return NO_VALUE
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{value:.3g}"
    return f"{value:.3g} [{low:.3g}, {high:.3g}]"


def throughput(value: float) -> str:
    if value is None or not math.isfinite(value):
        return NO_VALUE
    return f"{value:,.1f}" if value >= 10 else f"{value:.3g}"


def size_bytes(value: float) -> str:
    if value is None or not math.isfinite(value):
        return NO_VALUE
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return NO_VALUE  # unreachable; keeps type checkers quiet


def direction(direction: str) -> str:
    """``↓ lower is better`` or ``↑ higher is better``."""
    return f"{ARROWS.get(direction, '?')} {direction} is better"


def one_line(text: str, limit: int = 300) -> str:
    """A message on one line, cut at ``limit`` characters (tracebacks stay in the CSV files)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
