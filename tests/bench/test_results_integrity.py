"""Results you can trust: a cell file is read only when it provably is the planned cell, intact.

Stale cells (other settings) are never blended into the tables, damaged ones are named and
recomputed, a partial run says so, and a run killed anywhere resumes to bit-identical tables.
"""
from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench import cells as cells_module
from bench.cellfile import checksum
from bench.cli import main
from bench.collect import collect_run
from bench.config import from_dict
from bench.manifest import read_manifest
from bench.report.load import load_run
from bench.runner import run
from bench.settings import canonical

BASE = {"name": "t", "models": ["small_cnn"], "datasets": ["synthetic"], "n_images": 3, "batch_size": 2,
        "device": "cpu", "seed": 5, "report": False, "timing": {"enabled": False},
        "methods": {"saliency": {}, "integrated_gradients": {"n_steps": 4}, "random": {}},
        "metrics": {"deletion": {"n_steps": 4}, "pointing_game": {}}}


def _data(output: Path, **changes) -> dict:
    data = json.loads(json.dumps(BASE))
    for key, value in changes.items():
        data[key] = value
    data["output"] = str(output)
    return data


def _run(output: Path, echo=None, **changes) -> Path:
    return run(from_dict(_data(output, **changes)), echo=echo or (lambda *_: None))


def _tables(run_dir: Path) -> tuple[bytes, bytes]:
    return (run_dir / "scores.csv").read_bytes(), (run_dir / "curves.csv").read_bytes()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted run of BASE: the tables every other run must reproduce bit for bit."""
    return _run(tmp_path_factory.mktemp("reference"))


def _cell_files(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "cells").glob("*.json"))


# --- 1. stale cells --------------------------------------------------------------------------------------


@pytest.mark.parametrize("change", [
    {"metrics": {"deletion": {"n_steps": 8}, "pointing_game": {}}},            # a metric parameter
    {"methods": {"saliency": {}, "integrated_gradients": {"n_steps": 8}, "random": {}}},  # a method parameter
    {"n_images": 4},                                                            # the images
    {"seed": 6},                                                                # the seed
], ids=["metric-param", "method-param", "n-images", "seed"])
def test_changed_settings_never_blend_old_cells_into_the_tables(tmp_path, reference, change) -> None:
    _run(tmp_path)  # BASE under the run name "t"
    again = _run(tmp_path, **change)  # the same run name, other settings
    fresh = _run(tmp_path / "fresh", **change)
    assert _tables(again) == _tables(fresh)  # exactly the new settings' numbers, nothing of the old cells
    scores = pd.read_csv(again / "scores.csv")
    n_images = change.get("n_images", BASE["n_images"])
    assert len(scores) == 3 * 2 * n_images and set(scores.image) == set(range(n_images))
    completeness = json.loads((again / "completeness.json").read_text())
    assert completeness["complete"] and completeness["not_in_plan"] > 0  # the old files are there, not read
    config = json.loads((again / "config.json").read_text())
    assert {k: config[k] for k in change} == change


def test_the_maps_shown_are_those_of_the_current_settings(tmp_path) -> None:
    _run(tmp_path)
    run_dir = _run(tmp_path, methods={"saliency": {}, "integrated_gradients": {"n_steps": 8}, "random": {}})
    import torch

    shown = load_run(run_dir).maps
    manifest = read_manifest(run_dir)
    assert sorted(shown) == sorted(run_dir / g.maps_file for g in manifest.groups)
    assert len(list((run_dir / "maps").glob("*.pt"))) == 4  # the 4-step IG maps are still on disk, not shown
    ig = next(p for p in shown if "integrated_gradients" in p.name)
    assert torch.load(ig, weights_only=True)["settings_hash"] == next(
        g.settings_hash for g in manifest.groups if g.method == "integrated_gradients")


def test_timings_of_other_settings_are_not_read(tmp_path) -> None:
    run_dir = _run(tmp_path)
    benchmark = {"benchmarks": [{"extra_info": {"model": "small_cnn", "method": "saliency", "batch_size": 2,
                                                "forward_passes": 1, "backward_passes": 1, "roofline_s": 0.1,
                                                "efficiency": 1.0}, "stats": {"median": 0.1, "iqr": 0.0}}]}
    (run_dir / "benchmark.json").write_text(json.dumps(benchmark))  # e.g. left by a run of other settings
    record = collect_run(run_dir)
    assert not (run_dir / "timings.csv").exists() and record["timings"].startswith("stale")
    (run_dir / "timing.json").write_text(json.dumps({"timing_hash": read_manifest(run_dir).timing_hash}))
    assert collect_run(run_dir)["timings"] == "current" and (run_dir / "timings.csv").is_file()


def test_a_timing_run_that_writes_nothing_leaves_no_old_timings_behind(tmp_path, monkeypatch) -> None:
    run_dir = _run(tmp_path)
    (run_dir / "benchmark.json").write_text(json.dumps({"benchmarks": []}))  # an earlier run's
    import bench.runner as runner_module

    monkeypatch.setattr(runner_module, "run_timing", lambda config, run_dir: 1)  # the suite crashed at once
    _run(tmp_path, timing={"enabled": True})
    assert not (run_dir / "timing.json").exists() and not (run_dir / "benchmark.json").exists()
    assert json.loads((run_dir / "completeness.json").read_text())["timings"] == "none"


# --- 2. damaged cells ------------------------------------------------------------------------------------


def _rewrite(path: Path, change) -> None:
    """Edit the parsed document with ``change`` and write it back with a valid checksum (a forgery
    that only the settings, row and value checks can catch)."""
    document = json.loads(path.read_text())
    change(document)
    document["checksum"] = checksum(document)
    path.write_text(canonical(document))


def _drop_row_keep_count(document: dict) -> None:
    document["content"]["rows"].pop()
    document["n_rows"] -= 1


def _extra_rows(document: dict) -> None:
    rows = document["content"]["rows"]
    rows += [dict(rows[0], image=len(rows) + i) for i in range(3)]
    document["n_rows"] = len(rows)


def _other_settings(document: dict) -> None:
    document["settings"]["metric_params"]["n_steps"] = 64


def _bad_score(document: dict) -> None:
    document["content"]["rows"][0]["score"] = "0.5"


def _error_with_rows(document: dict) -> None:
    document["content"]["status"] = "error"


CORRUPTIONS = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "empty": lambda p: p.write_bytes(b""),
    "binary": lambda p: p.write_bytes(bytes(range(256))),
    "not-a-cell": lambda p: p.write_text("[1, 2, 3]"),
    "row-dropped": lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "n_rows": 2})),
    "score-edited": lambda p: p.write_text(p.read_text().replace('"score":', '"score":0.123456,"was":', 1)),
    "rows-dropped-and-resealed": lambda p: _rewrite(p, _drop_row_keep_count),
    "made-up-rows-resealed": lambda p: _rewrite(p, _extra_rows),
    "other-settings-resealed": lambda p: _rewrite(p, _other_settings),
    "string-score-resealed": lambda p: _rewrite(p, _bad_score),
    "error-status-with-rows": lambda p: _rewrite(p, _error_with_rows),
}


def test_every_kind_of_damaged_cell_is_named_and_recomputed(tmp_path, reference) -> None:
    run_dir = _run(tmp_path)
    rng = random.Random(14)
    for name, corrupt in CORRUPTIONS.items():
        victim = rng.choice([p for p in _cell_files(run_dir) if "deletion" in p.name])
        corrupt(victim)
        # `bench report` on the damaged directory: no crash, the file is refused and named.
        assert collect_run(run_dir)["damaged"][0]["file"] == f"cells/{victim.name}", name
        messages: list[str] = []
        _run(tmp_path, echo=messages.append)
        assert any(victim.name in m and "recomputing" in m for m in messages), (name, messages)
        assert _tables(run_dir) == _tables(reference), name
        assert json.loads((run_dir / "metadata.json").read_text())["cells"]["computed"] == 1, name
    assert len(list((run_dir / "damaged").iterdir())) == len(CORRUPTIONS)  # kept for inspection


def test_a_stored_score_outside_its_metrics_range_is_refused(tmp_path, reference) -> None:
    run_dir = _run(tmp_path)
    victim = next(p for p in _cell_files(run_dir) if "pointing_game" in p.name)

    def impossible(document: dict) -> None:
        document["content"]["rows"][0]["score"] = 2.0  # a hit rate of 200%

    _rewrite(victim, impossible)
    assert collect_run(run_dir)["damaged"] == [{"file": f"cells/{victim.name}",
                                                 "problem": "a score lies outside the metric's range [0, 1]"}]
    _run(tmp_path)
    assert _tables(run_dir) == _tables(reference)


# --- 3. partial runs -------------------------------------------------------------------------------------


def test_a_partial_run_is_reported_as_partial(tmp_path, capsys) -> None:
    run_dir = _run(tmp_path)
    removed = _cell_files(run_dir)[:2]
    for path in removed:
        path.unlink()
    (run_dir / "metadata.json").unlink()
    assert main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "PARTIAL RUN: 4 of 6 planned cells done, 0 failed, 0 not applicable, 2 missing" in out
    markdown = (run_dir / "report.md").read_text()
    assert "**PARTIAL RUN**: 2 of 6 planned cells" in markdown
    assert all(f"cells/{p.name}" in markdown for p in removed)


def test_a_run_directory_without_a_plan_is_refused_by_report(tmp_path, capsys) -> None:
    (tmp_path / "cells").mkdir()
    (tmp_path / "cells" / "x.json").write_text("{}")
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "no plan.json" in err and len(err.strip().splitlines()) == 1


def test_cells_of_other_library_versions_are_marked(tmp_path, monkeypatch) -> None:
    run_dir = _run(tmp_path)
    _cell_files(run_dir)[0].unlink()
    monkeypatch.setattr(cells_module, "library_versions", lambda: {"torch": "9.9.9"})
    _run(tmp_path, report=True)
    record = json.loads((run_dir / "completeness.json").read_text())
    assert record["complete"] and record["mixed_versions"] and len(record["versions"]) == 2
    assert "**MIXED VERSIONS**" in (run_dir / "report.md").read_text()


# --- 4. killed anywhere, resumed to the same tables ------------------------------------------------------


@pytest.mark.slow
def test_killed_at_20_random_points_the_resumed_run_gives_identical_tables(tmp_path, reference) -> None:
    config, kills = tmp_path / "config.json", tmp_path / "kills.json"
    config.write_text(json.dumps(_data(tmp_path)))
    rng = random.Random(20)
    # Each (resumed) run writes config.json, metadata.json, zoo.json and plan.json first, then maps and
    # cells: events 1-4 kill it while it starts, later ones between or inside result writes.
    points = [[rng.randint(1, 9), rng.choice(["before", "partial", "written", "after"])] for _ in range(20)]
    kills.write_text(json.dumps(points))
    script = Path(__file__).with_name("fault_injection.py")
    done = subprocess.run([sys.executable, str(script), str(config), str(kills)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2], timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    statuses = json.loads(done.stdout.strip().splitlines()[-1])
    assert statuses[-1] == 0 and len(statuses) == 21  # the last run went to the end
    killed = [point for point, status in zip(points, statuses) if status == -9]
    assert len(killed) >= 15 and any(event > 4 and phase in ("partial", "written") for event, phase in killed)
    assert _tables(tmp_path / "t") == _tables(reference)
    assert json.loads((tmp_path / "t" / "completeness.json").read_text())["complete"]
    assert not list((tmp_path / "t" / "cells").glob(".*.tmp"))  # no half-written leftovers
