"""The summary's localisation verdict is measured from chance (the random control), not from 0."""
from __future__ import annotations

import pandas as pd

from bench.report.findings import localisation


def _cells(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"category": "localisation", "n_images": 8, "method": method, "metric": metric, "mean": mean}
                         for method, metric, mean in rows])


def test_a_method_localises_when_it_is_halfway_from_chance_to_perfect() -> None:
    # AUC's chance is 0.5: 0.7 is 0.4 of the way to 1 (does not localise), 0.8 is 0.6 (localises);
    # on the pointing game chance is 0.2 here, so 0.65 is 0.56 of the way.
    cells = _cells([("random", "auc", 0.5), ("random", "pointing_game", 0.2),
                    ("sharp", "auc", 0.8), ("sharp", "pointing_game", 0.65),
                    ("blurry", "auc", 0.7), ("blurry", "pointing_game", 0.55)])
    localises, does_not = localisation(cells, ["sharp", "blurry", "random"])
    assert localises == ["sharp"] and does_not == ["blurry"]


def test_without_a_random_control_chance_is_zero() -> None:
    localises, does_not = localisation(_cells([("a", "auc", 0.55), ("b", "auc", 0.45)]), ["a", "b"])
    assert localises == ["a"] and does_not == ["b"]
