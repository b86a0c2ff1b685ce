"""Run configuration: a TOML file (standard-library reader) plus command-line overrides.

One source of truth for scoring and timing: the grid of models, datasets, methods (with their
parameters) and metrics (with their protocol parameters), and the timing settings. Everything is
validated before any work starts: unknown names, unknown parameters, an output directory that
cannot be written, a device that is not there.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).parent / "configs"


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the offending key."""


@dataclass
class TimingConfig:
    enabled: bool = True
    batch_sizes: list[int] = field(default_factory=lambda: [8])
    rounds: int = 3
    warmup_rounds: int = 1
    methods: list[str] | None = None  # None: every method of the grid
    models: list[str] | None = None   # None: every model of the grid


@dataclass
class RunConfig:
    name: str = "run"
    models: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=lambda: ["auto"])
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    # "method:metric" (every model) or "model:method:metric" patterns (shell wildcards) left out of the grid
    exclude: list[str] = field(default_factory=list)
    weights: dict[str, str] = field(default_factory=dict)  # model spec -> weights (path or torchvision member)
    dataset_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    n_images: int = 16
    batch_size: int = 16
    device: str = "auto"
    seed: int = 0
    target: str = "predicted"  # or "label"
    output: str = "results"
    report: bool = True
    maps_per_model: int = 6
    filters: bool = False  # add a filters page (gradient-ascent filter views) per architecture to the report
    filters_steps: int = 128
    timing: TimingConfig = field(default_factory=TimingConfig)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:12]

    @property
    def run_dir(self) -> Path:
        return Path(self.output) / self.name


def _known_keys(cls) -> set[str]:
    return set(cls.__dataclass_fields__)


def from_dict(data: dict[str, Any], source: str = "<dict>") -> RunConfig:
    data = copy.deepcopy(data)
    unknown = sorted(set(data) - _known_keys(RunConfig))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown}; known keys: {sorted(_known_keys(RunConfig))}")
    timing = data.pop("timing", {})
    if not isinstance(timing, dict):
        raise ConfigError(f"{source}: [timing] must be a table")
    bad_timing = sorted(set(timing) - _known_keys(TimingConfig))
    if bad_timing:
        raise ConfigError(f"{source}: unknown key(s) in [timing]: {bad_timing}")
    for key in ("methods", "metrics"):
        value = data.get(key, {})
        if isinstance(value, list):  # a plain list of names: default parameters
            data[key] = {name: {} for name in value}
        elif not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            raise ConfigError(f"{source}: '{key}' must be a list of names or a table of name -> parameter tables")
    try:
        return RunConfig(**data, timing=TimingConfig(**timing))
    except TypeError as error:
        raise ConfigError(f"{source}: {error}") from error


def load_config(name_or_path: str) -> RunConfig:
    """A shipped configuration by name (``default``, ``quick``, ``gpu``) or a TOML file path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.toml"
        if not path.is_file():
            shipped = sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))
            raise ConfigError(f"unknown configuration {name_or_path!r}; shipped: {shipped} (or pass a .toml path)")
    if not path.is_file():
        raise ConfigError(f"configuration file not found: {path}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"malformed configuration {path}: {error}") from error
    return from_dict(data, source=str(path))


def apply_overrides(config: RunConfig, **overrides: Any) -> RunConfig:
    """Command-line flags win over the file; ``None`` means 'not given'."""
    config = copy.deepcopy(config)
    for key, value in overrides.items():
        if value is None:
            continue
        if key in ("methods", "metrics"):
            current = getattr(config, key)
            setattr(config, key, {name: current.get(name, {}) for name in value})
        elif key == "timing_enabled":
            config.timing.enabled = bool(value)
        elif hasattr(config, key):
            setattr(config, key, value)
        else:
            raise ConfigError(f"unknown override {key!r}")
    return config


def check_output_writable(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"output directory {path} cannot be created: {error.strerror or error}") from error
    if not os.access(path, os.W_OK):
        raise ConfigError(f"output directory {path} is not writable")
