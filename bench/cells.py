"""Running one group: attributions once, then every metric cell; one result file per cell.

A cell's file is written atomically when it finishes, so an interrupted run resumes where it
stopped. A failing cell (bad input, a method that cannot run here, out of memory after retrying
with smaller batches) becomes an error row; the run goes on.
"""
from __future__ import annotations

import json
import math
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import metrics

from .config import RunConfig
from .device import is_out_of_memory
from .grid import Group, Subject, build_method, cell_hash, load_subject


@dataclass
class GroupOutcome:
    group: Group
    computed: int
    skipped: int
    errors: int
    seconds: float


def cell_path(run_dir: Path, config: RunConfig, group: Group, metric: str) -> Path:
    return run_dir / "cells" / f"{group.key}__{metric}-{cell_hash(config, group, metric)}.json"


def _write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(payload, default=_jsonable))
    temporary.replace(path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def _finite_or_none(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _error_payload(group: Group, metric: str, error: BaseException, seed: int) -> dict:
    return {"model": group.model, "dataset": group.dataset, "method": group.method, "metric": metric, "seed": seed,
            "status": "error", "error": f"{type(error).__name__}: {error}",
            "traceback": "".join(traceback.format_exception(error))[-4000:], "rows": [], "curves": []}


def _attribute(method, subject: Subject, batch_size: int) -> Tensor:
    """Attributions for all images, in batches; halve the batch on out-of-memory (three tries)."""
    if method.needs_mask and subject.masks is None:
        raise ValueError(f"method {method.name!r} needs ground-truth masks; dataset {subject.dataset!r} has none")
    for _ in range(4):
        try:
            maps = []
            for start in range(0, len(subject.x), batch_size):
                part = slice(start, start + batch_size)
                kwargs = {"mask": subject.masks[part]} if method.needs_mask else {}
                maps.append(method.attribute(subject.model, subject.x[part], subject.targets[part], **kwargs))
            return torch.cat(maps)
        except Exception as error:
            if not is_out_of_memory(error) or batch_size == 1:
                raise
            batch_size = max(1, batch_size // 2)
            torch.cuda.empty_cache() if torch.cuda.is_available() else None
    raise RuntimeError("unreachable")


def _metric_inputs(spec: metrics.MetricSpec, subject: Subject, method) -> dict[str, Any]:
    available = {"mask": subject.masks, "masks": subject.masks, "method": method, "blocks": subject.blocks,
                 "random_label_model": subject.random_label_model}
    return {name: available.get(name) for name in spec.inputs}


def _curve_rows(result: metrics.MetricResult, metric: str) -> list[dict]:
    """Curves as long rows: (curve, image, x, y[, label]) from ``curves`` and any (N,S) tensors in extras."""
    rows: list[dict] = []
    named: dict[str, Tensor] = {}
    if result.curves is not None:
        named[metric] = result.curves
    for key, value in result.extras.items():
        if isinstance(value, Tensor) and value.dim() == 2 and key not in named and key != "curve_x":
            same_axis = result.curves is not None and value.shape == result.curves.shape
            if same_axis and not torch.equal(value.nan_to_num(), result.curves.nan_to_num()):  # not a copy of the primary curve
                named[key] = value
    if not named:
        return rows
    labels = result.extras.get("block_names") or result.extras.get("labels")
    for curve, values in named.items():
        values = values.detach().cpu().float()
        xs = result.curve_x.detach().cpu().float().tolist() if result.curve_x is not None else list(range(values.shape[1]))
        for image, row in enumerate(values.tolist()):
            for step, (x, y) in enumerate(zip(xs, row)):
                entry = {"curve": curve, "image": image, "x": x, "y": _finite_or_none(y)}
                if labels is not None and step < len(labels):
                    entry["label"] = str(labels[step])
                rows.append(entry)
    return rows


def run_metric(config: RunConfig, group: Group, metric: str, subject: Subject, method, maps: Tensor) -> dict:
    spec = metrics.get(metric)
    params = dict(config.metrics[metric])
    started = time.perf_counter()
    result = spec.compute(model=subject.model, x=subject.x, target=subject.targets, attributions=maps,
                          seed=config.seed, **_metric_inputs(spec, subject, method), **params)
    scores = result.scores.detach().cpu().float().tolist()
    rows = [{"image": i, "score": _finite_or_none(s)} for i, s in enumerate(scores)]
    return {"model": group.model, "dataset": group.dataset, "method": group.method, "metric": metric,
            "seed": config.seed, "status": "ok", "error": "", "category": spec.category, "direction": spec.direction,
            "params": spec.protocol(**params), "method_params": method.params, "rows": rows,
            "curves": _curve_rows(result, metric), "seconds": time.perf_counter() - started}


def unfinished(config: RunConfig, group: Group, run_dir: Path) -> list[str]:
    """The group's metrics that have no result file yet."""
    return [m for m in group.metrics if not cell_path(run_dir, config, group, m).is_file()]


def finished(config: RunConfig, group: Group, run_dir: Path) -> bool:
    """Every cell and the saved maps are there: the group is not run again (nor shipped to a worker)."""
    return not unfinished(config, group, run_dir) and (run_dir / "maps" / f"{group.key}.pt").is_file()


def record_error(config: RunConfig, group: Group, run_dir: Path, error: BaseException,
                 seconds: float = 0.0) -> GroupOutcome:
    """A group that failed as a whole: one error row per unfinished metric cell."""
    todo = unfinished(config, group, run_dir)
    for metric in todo:
        _write_json(cell_path(run_dir, config, group, metric), _error_payload(group, metric, error, config.seed))
    return GroupOutcome(group, 0, len(group.metrics) - len(todo), len(todo), seconds)


def run_group(config: RunConfig, group: Group, run_dir: Path, device: torch.device) -> GroupOutcome:
    started = time.perf_counter()
    if finished(config, group, run_dir):
        return GroupOutcome(group, 0, len(group.metrics), 0, 0.0)
    todo = unfinished(config, group, run_dir)
    computed = errors = 0
    try:
        subject = load_subject(config, group.model, group.dataset, device)
        method = build_method(config, group.method, subject)
        attribution_started = time.perf_counter()
        maps = _attribute(method, subject, config.batch_size)
        attribution_seconds = time.perf_counter() - attribution_started
        _save_maps(run_dir, group, subject, maps, config.maps_per_model)
    except Exception as error:  # the whole group fails the same way: one error row per metric cell
        return record_error(config, group, run_dir, error, time.perf_counter() - started)
    for metric in todo:
        try:
            payload = run_metric(config, group, metric, subject, method, maps)
            payload["attribution_seconds"] = attribution_seconds
            computed += 1
        except Exception as error:
            payload = _error_payload(group, metric, error, config.seed)
            errors += 1
        _write_json(cell_path(run_dir, config, group, metric), payload)
    return GroupOutcome(group, computed, len(group.metrics) - len(todo), errors, time.perf_counter() - started)


def _save_maps(run_dir: Path, group: Group, subject: Subject, maps: Tensor, keep: int) -> None:
    path = run_dir / "maps" / f"{group.key}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    k = min(keep, len(maps))
    torch.save({"images": subject.images[:k].cpu(), "maps": maps[:k].detach().cpu(), "labels": subject.labels[:k].cpu(),
                "targets": subject.targets[:k].cpu(),
                "masks": subject.masks[:k].cpu() if subject.masks is not None else None}, path)
