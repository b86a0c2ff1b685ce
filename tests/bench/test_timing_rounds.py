"""Adaptive timing rounds, progress lines in logs, and ``bench compare`` on scores: no model needed."""
from __future__ import annotations

import io
import itertools
import json

import numpy as np
import pandas as pd
import pytest

from bench.progress import LineProgress, duration, mode
from bench.report.compare import compare_scores, compare_text
from bench.timing import MIN_SETTLE_ROUNDS, RoundPolicy, Rounds, extend_rounds, iqr_fraction


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _timer(times, clock: FakeClock):
    """A timed call that 'takes' the next of ``times`` seconds on the fake clock."""
    source = iter(times)

    def timed() -> float:
        seconds = next(source)
        clock.now += seconds
        return seconds
    return timed


def test_steady_cell_stops_as_soon_as_the_spread_settles() -> None:
    clock = FakeClock()
    policy = RoundPolicy(min_rounds=2, max_rounds=30, target_iqr=0.1, max_seconds=60)
    rounds = Rounds()
    extend_rounds(rounds, _timer(itertools.repeat(0.1), clock), _timer(itertools.repeat(0.05), clock), policy, 0.0,
                  clock)
    # Two rounds give no usable quartiles: a settled verdict needs MIN_SETTLE_ROUNDS.
    assert len(rounds.method) == len(rounds.roofline) == MIN_SETTLE_ROUNDS
    assert rounds.summary(policy)["noisy"] is False


def test_noisy_cell_runs_to_the_cap_and_is_marked() -> None:
    clock = FakeClock()
    policy = RoundPolicy(min_rounds=3, max_rounds=9, target_iqr=0.1, max_seconds=1e9)
    rounds = Rounds()
    extend_rounds(rounds, _timer(itertools.cycle([0.06, 1.0]), clock), None, policy, 0.0, clock)  # 15 vs 250 img/s
    summary = rounds.summary(policy)
    assert summary["rounds"] == 9 and summary["noisy"] is True
    assert summary["method_iqr_fraction"] > 0.1 and rounds.roofline == []


def test_time_budget_caps_the_rounds_but_never_below_the_minimum() -> None:
    clock = FakeClock()
    policy = RoundPolicy(min_rounds=5, max_rounds=100, target_iqr=0.01, max_seconds=2.0)
    rounds = Rounds()
    extend_rounds(rounds, _timer(itertools.cycle([1.0, 1.5]), clock), None, policy, 0.0, clock)
    assert len(rounds.method) == 5  # the budget was spent after 2 rounds; the minimum still holds
    assert rounds.summary(policy)["noisy"] is True


def test_noisy_series_of_the_roofline_counts_too() -> None:
    policy = RoundPolicy(min_rounds=4)
    assert policy.settled([1.0] * 6, [1.0] * 6)
    assert not policy.settled([1.0] * 6, [1.0, 3.0] * 3)
    assert iqr_fraction([1.0]) != iqr_fraction([1.0])  # NaN: one round has no spread


def test_line_progress_prints_start_heartbeat_and_end() -> None:
    stream, clock = io.StringIO(), FakeClock()
    bar = LineProgress(total=4, desc="cells", unit="group", stream=stream, every_s=0.01, clock=clock)
    clock.now = 90.0
    bar.update(1)
    import time

    time.sleep(0.1)  # the heartbeat thread prints while no group finishes
    bar.close()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "cells: started, 4 group(s) planned"
    assert any(line.startswith("cells: 1/4 group(s), elapsed 1m30s, ETA 4m30s") for line in lines[1:-1])
    assert lines[-1] == "cells: done, 1/4 group(s), elapsed 1m30s, ETA 4m30s"
    assert duration(3725) == "1h02m"


def test_progress_off_silences_and_logs_get_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_PROGRESS", "off")
    assert mode() == "off"
    monkeypatch.setenv("BENCH_PROGRESS", "auto")
    assert mode() == "lines"  # pytest captures the output: not a terminal


def _scores(root, shift: float, images=range(8)) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for method, quality in {"a": 0.8, "b": 0.3}.items():
        noise = rng.normal(0, 0.05, 8)
        for i in images:
            for metric, moved in {"deletion": shift, "insertion": 0.0}.items():
                rows.append(dict(model="m", dataset="d", method=method, metric=metric, image=i, seed=0,
                                 score=quality + moved + noise[i] * (metric == "insertion") + 0.01 * i,
                                 category="faithfulness", direction="higher", params="{}", method_params="{}",
                                 status="ok", error=""))
    root.mkdir()
    pd.DataFrame(rows).to_csv(root / "scores.csv", index=False)
    (root / "metadata.json").write_text(json.dumps({"run": root.name}))


def test_compare_flags_the_cells_a_change_moved(tmp_path) -> None:
    _scores(tmp_path / "a", 0.0)
    _scores(tmp_path / "b", 0.1)
    frame = compare_scores(tmp_path / "a", tmp_path / "b", n_resamples=200)
    moved = frame.set_index(["method", "metric"])
    assert moved.loc[("a", "deletion"), "difference"] == pytest.approx(0.1)
    assert moved.loc[("a", "deletion"), "flagged"] and moved.loc[("b", "deletion"), "flagged"]
    assert not moved.loc[("a", "insertion"), "flagged"] and moved.loc[("a", "insertion"), "paired"]
    text = compare_text(frame)
    assert text.splitlines()[1].startswith("* m/d") and "2 of 4 cell(s) moved" in text
