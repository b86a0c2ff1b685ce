"""One self-describing result file per cell, written atomically and verified before it is read.

A cell file holds the full settings that produced it (:mod:`bench.settings`), their hash, the
environment (library versions), the row count, the content (status, score rows, curves) and a
SHA-256 checksum over all of that. :func:`verify` accepts a file only when it parses, the checksum
matches, the settings are exactly the planned ones and the rows are exactly the planned images with
finite (or documented "no score") values; anything else is reported with the reason, never read.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .settings import canonical, digest

CELL_FORMAT = "attribution-bench cell 1"


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the whole new one, never a
    part: a temporary file in the same directory, flushed to disk, then renamed over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def checksum(document: dict[str, Any]) -> str:
    """SHA-256 over the canonical JSON of everything in the file but the checksum itself."""
    body = {k: v for k, v in document.items() if k != "checksum"}
    return "sha256:" + hashlib.sha256(canonical(body).encode()).hexdigest()


def build(settings: dict[str, Any], settings_hash: str, environment: dict[str, Any],
          content: dict[str, Any]) -> dict[str, Any]:
    """The file's document; ``content`` holds status, error, rows, curves and the score's metadata."""
    document = {"format": CELL_FORMAT, "settings": settings, "settings_hash": settings_hash,
                "environment": environment, "n_rows": len(content.get("rows", [])), "content": content}
    document["checksum"] = checksum(document)
    return document


def write(path: Path, document: dict[str, Any]) -> None:
    atomic_write(path, canonical(document).encode())


@dataclass(frozen=True)
class Verdict:
    """What :func:`verify` found: ``document`` when the file is good, else ``problem`` says why."""

    path: Path
    document: dict[str, Any] | None = None
    problem: str | None = None  # None: good; "missing": no file; else why the file is refused

    @property
    def ok(self) -> bool:
        return self.document is not None

    @property
    def missing(self) -> bool:
        return self.problem == "missing"


def verify(path: Path, settings_hash: str, images: list[int], bounds: tuple[float, float] | None = None) -> Verdict:
    """Read ``path`` and accept it only if it provably is the planned cell (see the module docstring);
    ``bounds``: the metric's range, which every stored score must lie in."""
    if not path.is_file():
        return Verdict(path, problem="missing")
    try:
        document = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        return Verdict(path, problem=f"unreadable (truncated or damaged): {type(error).__name__}")
    problem = _problem(document, settings_hash, images, bounds)
    return Verdict(path, problem=problem) if problem else Verdict(path, document=document)


def _problem(document: Any, settings_hash: str, images: list[int], bounds: tuple[float, float] | None) -> str | None:
    if not isinstance(document, dict) or document.get("format") != CELL_FORMAT:
        return "not a cell file of this format"
    if document.get("checksum") != checksum(document):
        return "checksum mismatch (the content was changed after it was written)"
    # The hash is recomputed: a file cannot just claim the planned one.
    if document.get("settings_hash") != settings_hash or digest(document.get("settings")) != settings_hash:
        return "written with other settings (stale)"
    content = document.get("content")
    if not isinstance(content, dict) or content.get("status") not in ("ok", "error", "not_applicable"):
        return "no status"
    rows = content.get("rows")
    if not isinstance(rows, list) or document.get("n_rows") != len(rows):
        return "row count does not match n_rows"
    if content["status"] != "ok":
        return None if not rows else f"a {content['status']} cell with score rows"
    if [row.get("image") if isinstance(row, dict) else None for row in rows] != images:
        return f"rows are not the planned images ({len(rows)} rows for {len(images)} images)"
    if not all(_score_ok(row.get("score")) for row in rows):
        return "a score is neither a finite number nor null (no score)"
    if bounds is not None and not all(_within(row["score"], bounds) for row in rows):
        return f"a score lies outside the metric's range [{bounds[0]:g}, {bounds[1]:g}]"
    if not all(isinstance(row, dict) and _score_ok(row.get("y")) for row in content.get("curves", [])):
        return "a curve value is neither a finite number nor null"
    return None


def _within(score: float | None, bounds: tuple[float, float]) -> bool:
    slack = 1e-6 * max(1.0, abs(bounds[0]), abs(bounds[1]))  # float rounding at the edges is not damage
    return score is None or bounds[0] - slack <= score <= bounds[1] + slack


def _score_ok(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))
