"""Tidy tables from a run directory, built from its plan (``plan.json``): the verified cell files
-> scores.csv and curves.csv, benchmark.json (pytest-benchmark) -> timings.csv, and what the run
holds against what it planned -> completeness.json. A file the plan does not name, or one that
fails verification, is never read into a table; the completeness record lists it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from .cells import verdict as verdict_of
from .manifest import Manifest, read_manifest
from .timing import MIN_SETTLE_ROUNDS, RoundPolicy

TIMING_STAMP = "timing.json"  # written by the runner once benchmark.json belongs to the run's plan
COMPLETENESS_FILE = "completeness.json"
SCORE_COLUMNS = ["model", "dataset", "method", "metric", "image", "seed", "score", "category", "direction", "params",
                 "method_params", "status", "error"]
TIMING_COLUMNS = ["model", "method", "batch_size", "device", "median_s", "iqr_s", "images_per_s", "forward_passes",
                  "backward_passes", "roofline_s", "efficiency", "peak_memory_bytes", "rounds", "iqr_fraction",
                  "roofline_iqr_fraction", "noisy"]


def collect_scores(run_dir: Path, manifest: Manifest) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Score and curve rows of every planned cell whose file verifies, and the completeness record."""
    scores, curves = [], []
    missing, damaged, versions = [], [], []
    failed = done = not_applicable = 0
    for group, cell in manifest.cells:
        verdict = verdict_of(run_dir, group, cell)
        if not verdict.ok:
            (missing.append(cell.file) if verdict.missing else damaged.append({"file": cell.file, "problem": verdict.problem}))
            continue
        document = verdict.document
        if document["environment"].get("versions") not in versions:
            versions.append(document["environment"].get("versions"))
        content = document["content"]
        base = {"model": group.model, "dataset": group.dataset, "method": group.method, "metric": cell.metric,
                "seed": document["settings"]["seed"]}
        if content["status"] != "ok":  # "error", or "not_applicable": the method refused the architecture
            failed += content["status"] == "error"
            not_applicable += content["status"] == "not_applicable"
            scores.append({**base, "image": -1, "score": float("nan"), "category": content.get("category", ""),
                           "direction": content.get("direction", ""), "params": "{}", "method_params": "{}",
                           "status": content["status"], "error": content["error"]})
            continue
        done += 1
        shared = {"category": content["category"], "direction": content["direction"],
                  "params": json.dumps(content["params"], sort_keys=True, default=str),
                  "method_params": json.dumps(content["method_params"], sort_keys=True, default=str),
                  "status": "ok", "error": ""}
        for row in content["rows"]:
            scores.append({**base, "image": row["image"], "score": row["score"], **shared})
        for row in content["curves"]:
            curves.append({k: base[k] for k in ("model", "dataset", "method", "metric")} | {"label": ""} | row)
    planned_files = {cell.file for _, cell in manifest.cells}
    cells_dir = run_dir / "cells"
    not_in_plan = sum(f"cells/{p.name}" not in planned_files for p in cells_dir.glob("*.json")) if cells_dir.is_dir() else 0
    completeness = {"planned": len(manifest.cells), "done": done, "failed": failed,
                    "not_applicable": not_applicable, "missing": missing,
                    "damaged": damaged, "not_in_plan": not_in_plan, "versions": versions,
                    "mixed_versions": len(versions) > 1, "complete": not missing and not damaged}
    score_frame = pd.DataFrame(scores, columns=SCORE_COLUMNS)
    score_frame["score"] = pd.to_numeric(score_frame["score"], errors="coerce")
    return score_frame, pd.DataFrame(curves), completeness


def collect_timings(benchmark_json: Path) -> pd.DataFrame:
    if not benchmark_json.is_file():
        return pd.DataFrame(columns=TIMING_COLUMNS)
    data = json.loads(benchmark_json.read_text())
    rows = []
    for bench in data.get("benchmarks", []):
        info, stats = bench.get("extra_info", {}), bench["stats"]
        if "model" not in info:
            continue
        rows.append({"model": info["model"], "method": info["method"], "batch_size": info["batch_size"],
                     "device": info.get("device_name", info.get("device")), "median_s": stats["median"],
                     "iqr_s": stats["iqr"], "images_per_s": info["batch_size"] / stats["median"],
                     "forward_passes": info["forward_passes"], "backward_passes": info["backward_passes"],
                     "roofline_s": info["roofline_s"],
                     "efficiency": float("nan") if info.get("efficiency") is None else info["roofline_s"] / stats["median"],
                     "peak_memory_bytes": info.get("peak_memory_bytes"), **_spread(info, stats)})
    return pd.DataFrame(rows, columns=TIMING_COLUMNS)


def _spread(info: dict, stats: dict) -> dict[str, Any]:
    """Rounds, IQR / median of the method and of its roofline, and whether the cell is noisy. A file
    written before adaptive rounds has no verdict: it is judged by the same rule here (at least
    MIN_SETTLE_ROUNDS rounds and IQR / median within the default target), so two rounds are noisy."""
    fraction = stats["iqr"] / stats["median"] if stats["median"] > 0 else float("nan")
    if "noisy" in info:
        noisy = bool(info["noisy"])
    else:
        noisy = stats.get("rounds", 0) < MIN_SETTLE_ROUNDS or not fraction <= RoundPolicy().target_iqr
    return {"rounds": stats.get("rounds", 0), "iqr_fraction": fraction,
            "roofline_iqr_fraction": info.get("roofline_iqr_fraction", float("nan")), "noisy": noisy}


def timings_belong_to_plan(run_dir: Path, manifest: Manifest) -> bool:
    """``benchmark.json`` is the run's own only when the runner's stamp beside it names this plan."""
    try:
        return json.loads((run_dir / TIMING_STAMP).read_text()).get("timing_hash") == manifest.timing_hash
    except (OSError, ValueError, AttributeError):
        return False


def collect_run(run_dir: Path) -> dict[str, Any]:
    """Write scores.csv, curves.csv, timings.csv and completeness.json from the plan; return the completeness."""
    manifest = read_manifest(run_dir)
    scores, curves, completeness = collect_scores(run_dir, manifest)
    scores.to_csv(run_dir / "scores.csv", index=False)
    (run_dir / "curves.csv").unlink(missing_ok=True)  # never leave an earlier run's table beside this one
    if not curves.empty:
        curves.to_csv(run_dir / "curves.csv", index=False)
    (run_dir / "timings.csv").unlink(missing_ok=True)
    benchmark = run_dir / "benchmark.json"
    timings = collect_timings(benchmark) if timings_belong_to_plan(run_dir, manifest) else None
    completeness["timings"] = ("current" if timings is not None and not timings.empty else
                               "stale (benchmark.json is not this plan's: ignored)" if benchmark.is_file() and timings is None
                               else "none")
    if timings is not None and not timings.empty:
        timings.to_csv(run_dir / "timings.csv", index=False)
    (run_dir / COMPLETENESS_FILE).write_text(json.dumps(completeness, indent=2))
    return completeness
