"""Running one group: attributions once, then every metric cell; one result file per cell.

Every cell file is self-describing and verified (:mod:`bench.cellfile`): a cell counts as done only
when its file is the planned one, intact. A failing cell (bad input, a method that cannot run here,
out of memory after retrying with smaller batches) becomes an error row; the run goes on. A method
that refuses the architecture itself (:class:`adapters.NotApplicable`: no attention to read, an
activation its rule does not cover) becomes a "not_applicable" row instead: recorded, not a failure.
"""
from __future__ import annotations

import io
import math
import shutil
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import metrics
from adapters import NotApplicable

from . import cellfile
from .config import RunConfig
from .device import is_out_of_memory
from .grid import Subject, build_method, load_subject
from .manifest import PlannedCell, PlannedGroup
from .settings import library_versions

DAMAGED_DIR = "damaged"  # refused cell files are moved here (kept for inspection), then recomputed


@dataclass
class GroupOutcome:
    group: PlannedGroup
    computed: int
    skipped: int
    errors: int
    seconds: float
    not_applicable: int = 0


def _finite_or_none(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else float(value)


def _write_cell(run_dir: Path, cell: PlannedCell, content: dict[str, Any]) -> None:
    document = cellfile.build(cell.settings, cell.settings_hash, {"versions": library_versions()}, content)
    cellfile.write(run_dir / cell.file, document)


def _error_content(group: PlannedGroup, metric: str, error: BaseException, seed: int) -> dict:
    return {"model": group.model, "dataset": group.dataset, "method": group.method, "metric": metric, "seed": seed,
            "status": status_of(error), "error": f"{type(error).__name__}: {error}",
            "traceback": "".join(traceback.format_exception(error))[-4000:], "rows": [], "curves": []}


def status_of(error: BaseException) -> str:
    """The status a failed cell is recorded with: "not_applicable" for a refusal of the architecture."""
    return "not_applicable" if isinstance(error, NotApplicable) else "error"


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


def run_metric(config: RunConfig, group: PlannedGroup, metric: str, subject: Subject, method, maps: Tensor) -> dict:
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


def verdict(run_dir: Path, group: PlannedGroup, cell: PlannedCell) -> cellfile.Verdict:
    return cellfile.verify(run_dir / cell.file, cell.settings_hash, group.images, metrics.get(cell.metric).bounds)


def unfinished(group: PlannedGroup, run_dir: Path) -> list[PlannedCell]:
    """The group's cells that have no verified result file."""
    return [cell for cell in group.cells if not verdict(run_dir, group, cell).ok]


def maps_ok(group: PlannedGroup, run_dir: Path) -> bool:
    path = run_dir / group.maps_file
    if not path.is_file():
        return False
    try:
        return torch.load(path, map_location="cpu", weights_only=True).get("settings_hash") == group.settings_hash
    except Exception:  # noqa: BLE001 - any unreadable file is recomputed
        return False


def remove_partial_writes(run_dir: Path) -> int:
    """Delete the temporary files of writes that a killed run left unfinished; how many."""
    leftovers = [p for folder in ("cells", "maps") for p in (run_dir / folder).glob(".*.tmp")]
    for path in leftovers:
        path.unlink(missing_ok=True)
    return len(leftovers)


def resume_state(groups: list[PlannedGroup], run_dir: Path) -> tuple[set[PlannedGroup], list[dict[str, str]]]:
    """One verification pass over the plan when a run starts: the groups that are finished (every
    cell verified and the saved maps there: not run again, nor shipped to a worker), and one record
    (file, problem, moved_to) per planned cell file that failed verification, moved to ``damaged/``
    (so it is recomputed, and kept for inspection)."""
    done, moved = set(), []
    for group in groups:
        intact = True
        for cell in group.cells:
            found = verdict(run_dir, group, cell)
            intact = intact and found.ok
            if found.ok or found.missing:
                continue
            target = run_dir / DAMAGED_DIR / f"{Path(cell.file).name}.{time.strftime('%Y%m%dT%H%M%S')}.{time.time_ns()}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(run_dir / cell.file), target)
            moved.append({"file": cell.file, "problem": found.problem or "", "moved_to": str(target.relative_to(run_dir))})
        if intact and maps_ok(group, run_dir):
            done.add(group)
    return done, moved


def record_error(config: RunConfig, group: PlannedGroup, run_dir: Path, error: BaseException,
                 seconds: float = 0.0) -> GroupOutcome:
    """A group that failed as a whole: one error row per unfinished metric cell."""
    todo = unfinished(group, run_dir)
    for cell in todo:
        _write_cell(run_dir, cell, _error_content(group, cell.metric, error, config.seed))
    refused = len(todo) if status_of(error) == "not_applicable" else 0
    return GroupOutcome(group, 0, len(group.cells) - len(todo), len(todo) - refused, seconds, refused)


def run_group(config: RunConfig, group: PlannedGroup, run_dir: Path, device: torch.device) -> GroupOutcome:
    started = time.perf_counter()
    todo = unfinished(group, run_dir)
    if not todo and maps_ok(group, run_dir):
        return GroupOutcome(group, 0, len(group.cells), 0, 0.0)
    computed = errors = refused = 0
    try:
        subject = load_subject(config, group.model, group.dataset, device)
        method = build_method(config, group.method, subject)
        attribution_started = time.perf_counter()
        maps = _attribute(method, subject, config.batch_size)
        attribution_seconds = time.perf_counter() - attribution_started
        _save_maps(run_dir, group, subject, maps, config.maps_per_model)
    except Exception as error:  # the whole group fails the same way: one error row per metric cell
        return record_error(config, group, run_dir, error, time.perf_counter() - started)
    for cell in todo:
        try:
            content = run_metric(config, group, cell.metric, subject, method, maps)
            content["attribution_seconds"] = attribution_seconds
            computed += 1
        except Exception as error:
            content = _error_content(group, cell.metric, error, config.seed)
            refused, errors = (refused + 1, errors) if content["status"] == "not_applicable" else (refused, errors + 1)
        _write_cell(run_dir, cell, content)
    return GroupOutcome(group, computed, len(group.cells) - len(todo), errors, time.perf_counter() - started, refused)


def _save_maps(run_dir: Path, group: PlannedGroup, subject: Subject, maps: Tensor, keep: int) -> None:
    k = min(keep, len(maps))
    buffer = io.BytesIO()
    torch.save({"settings_hash": group.settings_hash, "model": group.model, "dataset": group.dataset,
                "method": group.method, "images": subject.images[:k].cpu(), "maps": maps[:k].detach().cpu(),
                "labels": subject.labels[:k].cpu(), "targets": subject.targets[:k].cpu(),
                "masks": subject.masks[:k].cpu() if subject.masks is not None else None}, buffer)
    cellfile.atomic_write(run_dir / group.maps_file, buffer.getvalue())
