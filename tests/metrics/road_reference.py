"""ROAD's noisy linear imputation as the reference code solves it: one sparse system per image, scipy's
direct solver, channels as right-hand sides (tleemann/road_evaluation, road/imputations.py)."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve

NEIGHBOURS = [((di, dj), 1 / 12 if di and dj else 1 / 6) for di in (-1, 0, 1) for dj in (-1, 0, 1) if di or dj]


def spsolve_impute(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """image (C, H, W) float64, removed (H, W) bool -> image with the removed pixels imputed (no noise)."""
    c, h, w = image.shape
    flat = image.reshape(c, -1)
    unknown = np.flatnonzero(removed.ravel())
    variable = -np.ones(h * w, dtype=int)
    variable[unknown] = np.arange(unknown.size)
    rows, cols, values = [], [], []
    rhs = np.zeros((unknown.size, c))
    degree = np.zeros(unknown.size)
    for k, position in enumerate(unknown):
        i, j = divmod(int(position), w)
        for (di, dj), weight in NEIGHBOURS:
            ii, jj = i + di, j + dj
            if not (0 <= ii < h and 0 <= jj < w):
                continue  # outside the image: the weights are renormalised over the rest
            degree[k] += weight
            neighbour = ii * w + jj
            if variable[neighbour] >= 0:
                rows.append(k)
                cols.append(variable[neighbour])
                values.append(-weight)
            else:
                rhs[k] += weight * flat[:, neighbour]
    matrix = sp.csc_matrix((values, (rows, cols)), shape=(unknown.size, unknown.size)) + sp.diags(degree)
    solution = np.asarray(spsolve(matrix.tocsc(), rhs)).reshape(unknown.size, c)
    out = flat.copy()
    out[:, unknown] = solution.T
    return out.reshape(c, h, w)
