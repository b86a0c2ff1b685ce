"""Seeded bootstrap over images.

Resampling is expressed as a matrix of multiplicities (resample x image), so the means of every
(method, metric) column of an architecture come from one matrix product, and every column sees the
same resampled images: paired resampling, which is what rank confidence intervals need because all
methods are scored on the same images.
"""
from __future__ import annotations

import warnings
import zlib

import numpy as np

N_RESAMPLES = 1000
BASE_SEED = 0


def seed_for(*key: str) -> int:
    """A seed fixed by a name (e.g. model and dataset): a cell's interval does not depend on which
    other cells the run holds or in which order they were loaded."""
    return (zlib.crc32("\x1f".join(key).encode()) + BASE_SEED) % (2**32)


def resample_weights(n_images: int, n_resamples: int = N_RESAMPLES, seed: int = BASE_SEED) -> np.ndarray:
    """(n_resamples, n_images) multiplicities: how often each image is drawn in each resample."""
    rng = np.random.default_rng(seed)
    if n_images == 0:
        return np.zeros((n_resamples, 0))
    return rng.multinomial(n_images, np.full(n_images, 1.0 / n_images), size=n_resamples).astype(float)


def weighted_means(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Means of the columns of ``values`` (n_images, k) under each row of ``weights`` (r, n_images),
    skipping NaN entries; NaN where a row draws no finite value."""
    valid = np.isfinite(values)
    filled = np.where(valid, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ filled) / (weights @ valid.astype(float))


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval along axis 0, ignoring resamples without a value."""
    tail = 100.0 * (1.0 - level) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: no score, stays NaN
        low = np.nanpercentile(samples, tail, axis=0)
        high = np.nanpercentile(samples, 100.0 - tail, axis=0)
    return low, high


def bootstrap_mean_ci(values: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = BASE_SEED,
                      level: float = 0.95) -> tuple[float, float, float]:
    """Mean of the finite values of a 1-D array and its percentile bootstrap interval."""
    column = np.asarray(values, dtype=float).reshape(-1, 1)
    mean = weighted_means(column, np.ones((1, column.shape[0])))[0, 0]
    low, high = percentile_interval(weighted_means(column, resample_weights(column.shape[0], n_resamples, seed)),
                                    level)
    return float(mean), float(low[0]), float(high[0])
