"""Read a run directory (``results/<run>/``) into one :class:`Run` object.

The loader is the only place that knows the file names and column lists the runner writes, so
that every table and figure works on validated frames. Optional files come back as ``None``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

SCORE_COLUMNS = ["model", "dataset", "method", "metric", "image", "seed", "score", "category", "direction",
                 "params", "method_params", "status", "error"]
CURVE_COLUMNS = ["model", "dataset", "method", "metric", "curve", "image", "x", "y"]
TIMING_COLUMNS = ["model", "method", "batch_size", "device", "median_s", "iqr_s", "images_per_s",
                  "forward_passes", "backward_passes", "roofline_s", "efficiency", "peak_memory_bytes"]
CASCADE_METRIC = "model_randomisation_cascading"

# Only these columns may hold "no value"; names such as a model called "NA" must stay strings.
_NUMERIC = {"score", "x", "y", "median_s", "iqr_s", "images_per_s", "forward_passes", "backward_passes",
            "roofline_s", "efficiency", "peak_memory_bytes", "rounds", "iqr_fraction", "roofline_iqr_fraction"}
#: IQR / median above which a timing is not trusted, for a timings.csv written before the runner
#: recorded its own verdict (bench.timing.RoundPolicy's default target).
NOISY_IQR_FRACTION = 0.1


@dataclass
class Run:
    """Everything a report needs from one run directory."""

    path: Path
    metadata: dict
    scores: pd.DataFrame
    curves: pd.DataFrame | None = None
    timings: pd.DataFrame | None = None
    zoo: list[dict] | None = None
    maps: list[Path] = field(default_factory=list)
    #: What the run holds against its plan (``completeness.json``, written with the tables); None when
    #: the directory was not written by the runner.
    completeness: dict | None = None

    @property
    def ok(self) -> pd.DataFrame:
        """Score rows of cells that ran (NaN scores included: they are counted, then skipped)."""
        return self.scores[self.scores["status"] == "ok"]

    @property
    def errors(self) -> pd.DataFrame:
        """Rows of cells that failed."""
        return self.scores[self.scores["status"] == "error"]

    @property
    def not_applicable(self) -> pd.DataFrame:
        """Rows of cells whose method refused the architecture (adapters.NotApplicable): not failures."""
        return self.scores[self.scores["status"] == "not_applicable"]


def _read_csv(path: Path, required: list[str]) -> pd.DataFrame:
    frame = pd.read_csv(path, keep_default_na=False, na_values={c: ["", "nan", "NaN"] for c in _NUMERIC})
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    for column in _NUMERIC & set(frame.columns):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    return frame


def _with_spread(timings: pd.DataFrame) -> pd.DataFrame:
    """``rounds``, ``iqr_fraction`` and a boolean ``noisy`` on every row, derived from median and IQR
    where an older timings.csv lacks them."""
    if "iqr_fraction" not in timings.columns:
        timings["iqr_fraction"] = timings["iqr_s"] / timings["median_s"]
    for column in ("rounds", "roofline_iqr_fraction"):
        if column not in timings.columns:
            timings[column] = np.nan
    if "noisy" in timings.columns:
        timings["noisy"] = timings["noisy"].astype(str).str.strip().str.lower().isin(["true", "1"])
    else:
        timings["noisy"] = ~(timings["iqr_fraction"] <= NOISY_IQR_FRACTION)
    return timings


def load_run(run_dir: str | Path) -> Run:
    """Load ``metadata.json``, ``scores.csv`` and the optional curves, timings, zoo and maps."""
    path = Path(run_dir)
    if not (path / "scores.csv").is_file():
        raise FileNotFoundError(f"{path}: no scores.csv; is this a run directory?")
    metadata_path = path / "metadata.json"
    metadata = json.loads(metadata_path.read_text()) if metadata_path.is_file() else {}

    scores = _read_csv(path / "scores.csv", SCORE_COLUMNS)
    scores["image"] = scores["image"].astype(np.int64)
    scores["seed"] = scores["seed"].astype(np.int64)
    scores["status"] = scores["status"].astype(str).str.strip().str.lower()

    curves = None
    if (path / "curves.csv").is_file():
        curves = _read_csv(path / "curves.csv", CURVE_COLUMNS)
        if "label" not in curves.columns:
            curves["label"] = ""
        curves["label"] = curves["label"].astype(str)
        curves["image"] = curves["image"].astype(np.int64)

    timings = None
    if (path / "timings.csv").is_file():
        timings = _read_csv(path / "timings.csv", TIMING_COLUMNS)
        timings = None if timings.empty else _with_spread(timings)

    zoo = json.loads((path / "zoo.json").read_text()) if (path / "zoo.json").is_file() else None
    completeness_path = path / "completeness.json"
    completeness = json.loads(completeness_path.read_text()) if completeness_path.is_file() else None
    return Run(path=path, metadata=metadata, scores=scores, curves=curves, timings=timings, zoo=zoo,
               maps=_map_files(path), completeness=completeness)


def _map_files(path: Path) -> list[Path]:
    """The planned groups' map files (a map file of other settings is never shown); every maps/*.pt
    only in a directory without a plan (not written by the runner)."""
    if (path / "plan.json").is_file():
        groups = json.loads((path / "plan.json").read_text()).get("groups", [])
        return [path / g["maps"] for g in groups if (path / g["maps"]).is_file()]
    return sorted((path / "maps").glob("*.pt")) if (path / "maps").is_dir() else []
