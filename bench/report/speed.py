"""Speed tables from ``timings.csv``: one number per (model, method).

A cell may be timed at several batch sizes; the table quotes the batch size with the highest
throughput (and says which), the full list stays in the detailed timing table.
"""
from __future__ import annotations

import pandas as pd


def best_timings(timings: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, method): the timing row with the highest images/s."""
    order = timings.sort_values("images_per_s", ascending=False, na_position="last", kind="stable")
    return order.drop_duplicates(["model", "method"]).reset_index(drop=True)


def speed_matrix(timings: pd.DataFrame, value: str, methods: list[str], models: list[str]) -> pd.DataFrame:
    """method x model matrix of one timing column (``images_per_s``, ``efficiency``, ...)."""
    best = best_timings(timings)
    wide = best.pivot_table(index="method", columns="model", values=value, aggfunc="first", dropna=False)
    rows = [m for m in methods if m in wide.index] + [m for m in wide.index if m not in methods]
    cols = [m for m in models if m in wide.columns] + [m for m in wide.columns if m not in models]
    return wide.reindex(index=rows, columns=cols)
