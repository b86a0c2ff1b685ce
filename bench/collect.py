"""Tidy tables from a run directory: cells/*.json -> scores.csv and curves.csv,
benchmark.json (pytest-benchmark) -> timings.csv."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

SCORE_COLUMNS = ["model", "dataset", "method", "metric", "image", "seed", "score", "category", "direction", "params",
                 "method_params", "status", "error"]
TIMING_COLUMNS = ["model", "method", "batch_size", "device", "median_s", "iqr_s", "images_per_s", "forward_passes",
                  "backward_passes", "roofline_s", "efficiency", "peak_memory_bytes"]


def collect_scores(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    scores, curves = [], []
    for path in sorted((run_dir / "cells").glob("*.json")):
        cell = json.loads(path.read_text())
        base = {k: cell.get(k) for k in ("model", "dataset", "method", "metric", "seed")}
        if cell["status"] != "ok":
            scores.append({**base, "image": -1, "score": float("nan"), "category": cell.get("category", ""),
                           "direction": cell.get("direction", ""), "params": "{}", "method_params": "{}",
                           "status": "error", "error": cell["error"]})
            continue
        shared = {"category": cell["category"], "direction": cell["direction"],
                  "params": json.dumps(cell["params"], sort_keys=True, default=str),
                  "method_params": json.dumps(cell["method_params"], sort_keys=True, default=str),
                  "status": "ok", "error": ""}
        for row in cell["rows"]:
            scores.append({**base, "image": row["image"], "score": row["score"], **shared})
        for row in cell["curves"]:
            curves.append({k: base[k] for k in ("model", "dataset", "method", "metric")} | {"label": ""} | row)
    score_frame = pd.DataFrame(scores, columns=SCORE_COLUMNS)
    score_frame["score"] = pd.to_numeric(score_frame["score"], errors="coerce")
    return score_frame, pd.DataFrame(curves)


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
                     "peak_memory_bytes": info.get("peak_memory_bytes")})
    return pd.DataFrame(rows, columns=TIMING_COLUMNS)


def collect_run(run_dir: Path) -> None:
    scores, curves = collect_scores(run_dir)
    scores.to_csv(run_dir / "scores.csv", index=False)
    if not curves.empty:
        curves.to_csv(run_dir / "curves.csv", index=False)
    timings = collect_timings(run_dir / "benchmark.json")
    if not timings.empty:
        timings.to_csv(run_dir / "timings.csv", index=False)
