"""The grid: which (model, dataset, method, metric) cells a configuration asks for, validated
before any work starts, and the subjects (model + images) the cells run on."""
from __future__ import annotations

import fnmatch
import re
import functools
import json
from dataclasses import dataclass

import torch
from torch import Tensor, nn

import adapters
import metrics

from . import zoo
from .config import ConfigError, RunConfig
from .datasets import get_dataset, list_datasets
from .models import get_spec, list_models
from .settings import method_params, model_spec
from .text_data import retokenised


@dataclass(frozen=True)
class Group:
    """The unit of execution: one method's attributions on one (model, dataset), scored by every metric."""

    model: str
    dataset: str
    method: str
    metrics: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.model}__{self.dataset}__{self.method}"


@dataclass
class Subject:
    """A model and the images it is explained on (preprocessed), with everything metrics may need."""

    model_name: str
    dataset: str
    model: nn.Module
    x: Tensor
    images: Tensor
    labels: Tensor
    masks: Tensor | None
    targets: Tensor
    blocks: list[tuple[str, list[str]]]
    gradcam_layer: str
    random_label_model: nn.Module | None
    accuracy: float | None


def _datasets_for(model: str, config: RunConfig) -> list[str]:
    if model in zoo.ENTRIES:
        own = zoo.ENTRIES[model].dataset
        return [own] if ("auto" in config.datasets or own in config.datasets) else []
    # A model spec (no zoo training) runs on the photographs by default (a text model on the synthetic
    # sentences), or on any dataset named.
    default = "text" if model_spec(model).modality == "text" else "skimage"
    return [default] if config.datasets == ["auto"] else [d for d in config.datasets if d != "auto"]


def validate(config: RunConfig) -> list[str]:
    """Every key, name and parameter is checked before any work starts; a ConfigError names the first
    bad one. Returns warnings: exclude patterns that leave nothing out, timing selections outside the grid."""
    config.check()  # the type and range of every key, declared next to its field in config.py
    for key in ("models", "datasets", "methods", "metrics"):
        if not getattr(config, key):
            raise ConfigError(f"{key} is empty: nothing to run (name at least one, in the file or with --{key})")
    known_models = [*zoo.ENTRIES, *list_models()]
    for model in config.models:
        if model not in known_models:
            try:
                get_spec(model)  # a name resolved on demand (timm/<name>)
            except KeyError as error:
                raise ConfigError(f"unknown model {model!r}: neither a zoo entry ({', '.join(zoo.ENTRIES)}) "
                                  f"nor a registered model ({error.args[0]})") from None
    for dataset in config.datasets:
        if dataset != "auto" and dataset not in list_datasets():
            raise ConfigError(f"unknown dataset {dataset!r}; registered: {', '.join(list_datasets())} (or auto)")
    for name, params in config.methods.items():
        if name not in adapters.names():
            raise ConfigError(f"unknown method {name!r}; registered: {', '.join(adapters.names())}")
        try:
            adapters.get(name, **params)  # the method checks its own parameters' types and ranges
        except (TypeError, ValueError) as error:
            raise ConfigError.about("method", name, error) from error
    for name, params in config.metrics.items():
        if name not in metrics.names():
            raise ConfigError(f"unknown metric {name!r}; registered: {', '.join(metrics.names())}")
        try:
            metrics.get(name).check_params(params)  # so does the metric, before any work
        except (TypeError, ValueError) as error:
            raise ConfigError.about("metric", name, error) from error
    registered = {"models": known_models, "methods": adapters.names(), "metrics": metrics.names()}
    for key in ("models", "methods"):
        unknown = [name for name in getattr(config.timing, key) or () if name not in registered[key]]
        if unknown:
            raise ConfigError(f"timing.{key}: unknown {key[:-1]}(s) {unknown}; registered: {', '.join(registered[key])}")
    for pattern, models in config.only.items():
        if not ONLY_KEY.fullmatch(pattern):
            raise ConfigError(f"only: {pattern!r} must be a \"method:metric\" pattern (shell wildcards)")
        outside = [name for name in models if name not in config.models and name not in config.methods]
        if outside:
            raise ConfigError(f"only: {pattern!r} names {outside}, neither a model nor a method of the grid")
        if not models:
            raise ConfigError(f"only: {pattern!r} lists no model or method (it would leave every cell it matches out)")
    if not any(_datasets_for(m, config) for m in config.models):
        raise ConfigError("no (model, dataset) pair matches the configuration")
    if not any(group.metrics for group in plan(config)):
        raise ConfigError("every cell of the grid is left out (see exclude; the rest are not applicable): nothing to score")
    cells = [(model, method, metric) for model in config.models for method in config.methods for metric in config.metrics]
    idle = [pattern for pattern in config.exclude if not any(pattern_matches(pattern, *cell) for cell in cells)]
    idle_only = [pattern for pattern in config.only if not any(pattern_matches(pattern, *cell) for cell in cells)]
    # A pattern whose parts match no registered name is a typo; the others name what this grid does not run.
    typos = [pattern for pattern in idle if not all(fnmatch.filter(names, part) for part, names in
                                                    zip(reversed(pattern.split(":")), reversed(registered.values())))]
    unused = [pattern for pattern in idle if pattern not in typos]
    warnings = [f"exclude pattern {pattern!r} matches no registered model, method or metric (a typo?)"
                for pattern in typos]
    if unused:
        warnings.append(f"exclude: {len(unused)} pattern(s) leave nothing out of this grid (it does not run what "
                        f"they name): {', '.join(map(repr, unused[:4]))}{', ...' if len(unused) > 4 else ''}")
    warnings += [f"only: pattern {pattern!r} matches no cell of the grid" for pattern in idle_only]
    return warnings + config.timing_warnings()


ONLY_KEY = re.compile(r"[^:]+:[^:]+")


def excluded(config: RunConfig, model: str, method: str, metric: str) -> bool:
    """True when a pattern of ``config.exclude`` matches: ``method:metric`` for every model (e.g.
    ``extremal:model_randomisation_*``) or ``model:method:metric`` (e.g. ``small_cnn-shortcut:*:sensitivity``)."""
    return any(pattern_matches(pattern, model, method, metric) for pattern in config.exclude)


def pattern_matches(pattern: str, model: str, method: str, metric: str) -> bool:
    """Whether one exclude pattern (``method:metric`` or ``model:method:metric``) matches the cell."""
    return fnmatch.fnmatch(f"{model}:{method}:{metric}" if pattern.count(":") == 2 else f"{method}:{metric}", pattern)


def not_applicable(model: str, method: str, metric: str) -> str | None:
    """Why a cell cannot be computed whatever the configuration, or None: such cells are not planned
    (a run lists them) rather than recorded as errors."""
    inputs = metrics.get(metric).inputs
    modality = model_spec(model).modality
    if modality not in adapters.get_class(method).modalities:
        return (f"the method explains {' and '.join(adapters.get_class(method).modalities)} models; "
                f"this one takes {modality}")
    if modality not in metrics.get(metric).modalities:
        return (f"the score is defined on {' and '.join(metrics.get(metric).modalities)} inputs; "
                f"this model takes {modality}")
    if "random_label_model" in inputs and (model not in zoo.ENTRIES or _shuffled_twin(zoo.ENTRIES[model]) is None):
        return "no model trained on shuffled labels for this architecture"
    if adapters.get_class(method).needs_attention and model_spec(model).family not in ("vit", "bert"):
        # The attention capture reads ViT attention (torchvision, timm); CNNs have none, Swin's is windowed.
        return "the method reads a ViT's attention probabilities; this architecture has none it can read"
    if "method" in inputs and adapters.get_class(method).needs_mask:
        # The score re-explains perturbed inputs or other classes, whose ground-truth mask is unknown.
        return "the score re-explains inputs that have no ground-truth mask"
    return None


def outside_only(config: RunConfig, model: str, method: str, metric: str) -> str | None:
    """Why ``config.only`` leaves the cell out, or None: a pattern matching it lists models without
    its model, or methods without its method."""
    for pattern, names in config.only.items():
        if not pattern_matches(pattern, model, method, metric):
            continue
        models = [name for name in names if name in config.models]
        methods = [name for name in names if name in config.methods]
        if (models and model not in models) or (methods and method not in methods):
            return f"run with {', '.join(names)} only (only: {pattern!r})"
    return None


def left_out(config: RunConfig, model: str, method: str, metric: str) -> str | None:
    """Why :func:`plan` leaves a cell out (the configuration excludes it or runs it on other models
    only, or it is not applicable), or None."""
    if excluded(config, model, method, metric):
        return "excluded by the configuration"
    return outside_only(config, model, method, metric) or not_applicable(model, method, metric)


def plan(config: RunConfig) -> list[Group]:
    return [Group(model, dataset, method, tuple(m for m in config.metrics if not left_out(config, model, method, m)))
            for model in config.models for dataset in _datasets_for(model, config) for method in config.methods]


def unplanned(config: RunConfig) -> list[dict[str, str]]:
    """The (model, method, metric) cells of the grid that :func:`plan` leaves out, with the reason."""
    cells = ((model, method, metric) for model in config.models for method in config.methods for metric in config.metrics)
    return [{"model": model, "method": method, "metric": metric, "reason": reason}
            for model, method, metric in cells if (reason := left_out(config, model, method, metric))]


def _shuffled_twin(entry: zoo.ZooEntry) -> str | None:
    for name, other in zoo.ENTRIES.items():
        if other.role == "shuffled-labels" and other.model == entry.model and other.dataset == entry.dataset:
            return name
    return None


@functools.lru_cache(maxsize=4)
def _load_subject(model_name: str, dataset: str, n_images: int, device: str, target: str,
                  weights: str | None, dataset_params: str) -> Subject:
    torch_device = torch.device(device)
    if model_name in zoo.ENTRIES:
        trained = zoo.load(model_name)
        spec, model, accuracy = trained.spec, trained.model, trained.accuracy
        batch = trained.entry.data("test", max(n_images, trained.entry.n_test)).batch(range(n_images))
        twin = _shuffled_twin(trained.entry)
        random_label_model = zoo.load(twin).model.to(torch_device) if twin else None
    else:
        spec = get_spec(model_name)
        model = spec.build(weights=weights)
        data = get_dataset(dataset, image_size=spec.input_size[0], **json.loads(dataset_params))
        batch = data.batch(range(min(n_images, len(data))))
        if spec.modality == "text":  # a user's BERT reads the sentences through its own tokenizer
            batch = retokenised(model, data, batch)
        accuracy, random_label_model = None, None
    model = model.to(torch_device).eval()
    x = spec.preprocess(batch.images).to(torch_device)
    with torch.no_grad():
        predicted = torch.cat([model(chunk).argmax(1) for chunk in x.split(32)])
    if target == "label" and (batch.labels < 0).any():
        raise ConfigError(f"dataset {dataset!r} has no labels: use target = 'predicted'")
    targets = batch.labels.to(torch_device) if target == "label" else predicted
    masks = batch.masks.to(torch_device) if batch.masks is not None else None
    return Subject(model_name, dataset, model, x, batch.images, batch.labels, masks, targets,
                   spec.randomisation_blocks(model), spec.gradcam_layer, random_label_model, accuracy)


def load_subject(config: RunConfig, model: str, dataset: str, device: torch.device) -> Subject:
    return _load_subject(model, dataset, config.n_images, str(device), config.target, config.weights.get(model),
                         json.dumps(config.dataset_params.get(dataset, {}), sort_keys=True))


def build_method(config: RunConfig, name: str, subject: Subject) -> adapters.Method:
    """The method with the configuration's parameters, the run's seed, and the spec's Grad-CAM layer."""
    return adapters.get(name, **method_params(config, name, subject.model_name))
