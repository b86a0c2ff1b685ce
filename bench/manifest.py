"""The plan of a run as it is written to ``plan.json``: every planned group and cell with its
settings hash, file and images. Tables and reports are built from it, never from a directory
listing, so a file that is not in the plan (other settings, a leftover) is never read.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import cellfile
from .config import RunConfig
from .grid import Group, plan
from .settings import canonical, cell_settings, digest, group_settings

PLAN_FILE = "plan.json"
PLAN_FORMAT = "attribution-bench plan 1"
HASH_LENGTH = 16  # in file names: 64 bits, no collision among the cells of any run


@dataclass(frozen=True)
class PlannedCell:
    metric: str
    settings_json: str  # canonical JSON of the full settings (hashable, so groups can be dict keys)
    settings_hash: str
    file: str  # relative to the run directory

    @property
    def settings(self) -> dict[str, Any]:
        return json.loads(self.settings_json)


@dataclass(frozen=True)
class PlannedGroup:
    """One method on one (model, dataset), with its metric cells: the unit a worker runs."""

    group: Group
    settings_json: str
    settings_hash: str
    cells: tuple[PlannedCell, ...]

    model = property(lambda self: self.group.model)
    dataset = property(lambda self: self.group.dataset)
    method = property(lambda self: self.group.method)
    metrics = property(lambda self: self.group.metrics)
    key = property(lambda self: self.group.key)

    @property
    def settings(self) -> dict[str, Any]:
        return json.loads(self.settings_json)

    @property
    def images(self) -> list[int]:
        return self.settings["images"]

    @property
    def maps_file(self) -> str:
        return f"maps/{self.key}-{self.settings_hash}.pt"


@dataclass(frozen=True)
class Manifest:
    groups: tuple[PlannedGroup, ...]
    #: What the timings depend on (timing settings, device, every group's settings): ``benchmark.json``
    #: is read only when the stamp the runner wrote beside it carries this hash.
    timing_hash: str = ""

    @property
    def cells(self) -> list[tuple[PlannedGroup, PlannedCell]]:
        return [(group, cell) for group in self.groups for cell in group.cells]

    def to_dict(self) -> dict[str, Any]:
        return {"format": PLAN_FORMAT, "timing_hash": self.timing_hash, "groups": [
            {"model": g.model, "dataset": g.dataset, "method": g.method, "settings": g.settings,
             "settings_hash": g.settings_hash, "maps": g.maps_file,
             "cells": [{"metric": c.metric, "settings_hash": c.settings_hash, "file": c.file,
                        "metric_params": c.settings["metric_params"]} for c in g.cells]}
            for g in self.groups]}


def _planned_group(config: RunConfig, group: Group) -> PlannedGroup:
    shared = group_settings(config, group.model, group.dataset, group.method)
    cells = []
    for metric in group.metrics:
        settings = cell_settings(shared, config, metric)
        settings_hash = digest(settings)
        cells.append(PlannedCell(metric, canonical(settings), settings_hash,
                                 f"cells/{group.key}__{metric}-{settings_hash[:HASH_LENGTH]}.json"))
    return PlannedGroup(group, canonical(shared), digest(shared)[:HASH_LENGTH], tuple(cells))


def build_manifest(config: RunConfig) -> Manifest:
    """The plan with every cell's settings resolved (weights fingerprinted: the zoo must be trained)."""
    # A (model, method) pair with every cell left out (a method on a model it cannot explain, every
    # score excluded) computes nothing: its attributions would be work no table reads.
    groups = tuple(_planned_group(config, group) for group in plan(config) if group.metrics)
    timing = {"timing": asdict(config.timing), "device": config.device, "groups": [g.settings_hash for g in groups]}
    return Manifest(groups, digest(timing))


def write_manifest(run_dir: Path, manifest: Manifest) -> None:
    cellfile.atomic_write(run_dir / PLAN_FILE, json.dumps(manifest.to_dict(), indent=1, sort_keys=True).encode())


def read_manifest(run_dir: Path) -> Manifest:
    """The plan a run wrote; a clear error if there is none or it cannot be read."""
    path = run_dir / PLAN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no {PLAN_FILE}, so no cell can be shown to belong to this run "
                                "(written by `python -m bench run` before any work; rerun the run to write it)")
    try:
        data = json.loads(path.read_text())
        if data.get("format") != PLAN_FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {PLAN_FORMAT!r}")
        groups = []
        for g in data["groups"]:
            cells = []
            for c in g["cells"]:
                settings = {**g["settings"], "metric": c["metric"], "metric_params": c["metric_params"]}
                if digest(settings) != c["settings_hash"]:
                    raise ValueError(f"the settings of cell {c['file']} do not match its hash")
                cells.append(PlannedCell(c["metric"], canonical(settings), c["settings_hash"], c["file"]))
            group = Group(g["model"], g["dataset"], g["method"], tuple(c.metric for c in cells))
            groups.append(PlannedGroup(group, canonical(g["settings"]), g["settings_hash"], tuple(cells)))
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} cannot be read: {type(error).__name__}: {error}") from error
    return Manifest(tuple(groups), str(data.get("timing_hash", "")))
