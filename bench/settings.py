"""What a result depends on: the full settings of every planned cell, and their hash.

A cell's settings name everything that can change its numbers: the model and a fingerprint of its
weights (the bytes of the weights file, or the seeded random init), the dataset with its
parameters and the image indices, the method with all its resolved parameters (defaults, seed and
Grad-CAM layer included), the metric with all its protocol parameters, the run's seed and target
rule. Their hash names the cell's file, so a change of any of them is a new cell, never a stale one.
Library versions travel with every cell too, but as its *environment*: a run that resumes under
other versions reuses its cells and the report says it mixes versions.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import adapters
import metrics

from . import zoo
from .config import RunConfig
from .datasets import get_dataset
from .models import get_spec
from .models.spec import ModelSpec
from .models.weights import resolve_weights_path

SETTINGS_FORMAT = 1
LIBRARIES = ("torch", "torchvision", "captum", "lime", "scikit-image", "numpy", "pandas", "pytest-benchmark")


@functools.lru_cache(maxsize=1)
def _versions() -> tuple[tuple[str, str], ...]:
    versions = [("python", platform.python_version())]
    for name in LIBRARIES:
        try:
            versions.append((name, importlib_metadata.version(name)))
        except importlib_metadata.PackageNotFoundError:
            versions.append((name, "absent"))
    return tuple(versions)


def library_versions() -> dict[str, str]:
    """Python's and the numerical libraries' versions: the environment every cell records."""
    return dict(_versions())


def canonical(value: Any) -> str:
    """The one JSON text that hashes and checksums are taken over (sorted keys, no spaces)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_plain, allow_nan=False)


def _plain(value: Any) -> Any:
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def digest(value: Any, length: int = 64) -> str:
    return hashlib.sha256(canonical(value).encode()).hexdigest()[:length]


@functools.lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return "sha256:" + sha.hexdigest()


def file_fingerprint(path: str | Path) -> str:
    """SHA-256 of a file's bytes (cached while its size and modification time stay the same)."""
    stat = os.stat(path)
    return _file_digest(str(path), stat.st_size, stat.st_mtime_ns)


def weights_fingerprint(config: RunConfig, model: str) -> str:
    """What the model's weights are: the hash of the zoo's cached file or of the user's weights file,
    or the seeded random initialisation of the spec."""
    if model in zoo.ENTRIES:
        weights_path, _ = zoo.weights_paths(zoo.ENTRIES[model])
        return file_fingerprint(weights_path) if weights_path.is_file() else f"untrained zoo entry {model}"
    weights = config.weights.get(model)
    if weights is None:
        return f"random init of {model} (seed 0)"
    return file_fingerprint(resolve_weights_path(get_spec(model), weights))


def model_spec(model: str) -> ModelSpec:
    """The spec of a zoo entry (its architecture at the zoo's size and classes) or of a registered model."""
    return zoo.ENTRIES[model].spec() if model in zoo.ENTRIES else get_spec(model)


def dataset_description(config: RunConfig, model: str, dataset: str) -> tuple[dict, list[int]]:
    """The dataset's own description (its ``config()``) and the indices of the images a run explains."""
    if model in zoo.ENTRIES:
        entry = zoo.ENTRIES[model]
        data = entry.data("test", max(config.n_images, entry.n_test))
        return data.config(), list(range(config.n_images))
    spec = model_spec(model)
    data = get_dataset(dataset, image_size=spec.input_size[0], **config.dataset_params.get(dataset, {}))
    return data.config(), list(range(min(config.n_images, len(data))))


def method_params(config: RunConfig, method: str, model: str) -> dict[str, Any]:
    """The method's parameters as the run resolves them: the configuration's, the run's seed where
    the method takes one, the model's Grad-CAM layer (and its layout) where it takes a layer, then every default."""
    params: dict[str, Any] = dict(config.methods[method])
    accepted = adapters.get(method).params
    if "seed" in accepted and "seed" not in params:
        params["seed"] = config.seed
    spec = model_spec(model)
    if "layer" in accepted and params.get("layer") is None and spec.gradcam_layer:
        params["layer"] = spec.gradcam_layer
        if "layout" in accepted and params.get("layout") is None and spec.gradcam_layout:
            params["layout"] = spec.gradcam_layout
    return params


def metric_params(config: RunConfig, metric: str) -> dict[str, Any]:
    """Every protocol parameter of the metric (defaults filled in), as written next to its scores."""
    spec = metrics.get(metric)
    return spec.protocol(**spec.check_params(dict(config.metrics[metric])))


def group_settings(config: RunConfig, model: str, dataset: str, method: str) -> dict[str, Any]:
    """What a group's attributions depend on (shared by its metric cells)."""
    description, images = dataset_description(config, model, dataset)
    resolved = adapters.get(method, **method_params(config, method, model)).params
    return {"format": SETTINGS_FORMAT, "model": model, "weights": weights_fingerprint(config, model),
            "dataset": dataset, "dataset_config": description, "images": images, "target": config.target,
            "seed": config.seed, "method": method, "method_params": json.loads(canonical(resolved))}


def cell_settings(group: dict[str, Any], config: RunConfig, metric: str) -> dict[str, Any]:
    return {**group, "metric": metric, "metric_params": json.loads(canonical(metric_params(config, metric)))}
