"""Dataset registry: ``bench.datasets.get(name, **params)``."""
from __future__ import annotations

from typing import Any, Callable

from .base import DatasetError, ImageDataset

_DATASETS: dict[str, Callable[..., ImageDataset]] = {}


def register_dataset(name: str) -> Callable[[Callable[..., ImageDataset]], Callable[..., ImageDataset]]:
    def decorator(factory: Callable[..., ImageDataset]) -> Callable[..., ImageDataset]:
        if name in _DATASETS:
            raise ValueError(f"dataset {name!r} is already registered")
        _DATASETS[name] = factory
        return factory

    return decorator


def list_datasets() -> list[str]:
    return sorted(_DATASETS)


def get_dataset(name: str, **params: Any) -> ImageDataset:
    if name not in _DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; registered datasets: {', '.join(list_datasets())}")
    try:
        return _DATASETS[name](**params)
    except TypeError as error:
        raise DatasetError(f"bad parameters for dataset {name!r}: {error}") from error
