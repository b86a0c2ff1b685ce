"""The grid runner end to end on a random-init small CNN: tidy results, resume, error rows, timing."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from bench import cells as cells_module
from bench.config import from_dict
from bench.grid import plan, unplanned
from bench.runner import run


def _config(tmp_path, **changes):
    data = {"name": "t", "models": ["small_cnn"], "datasets": ["synthetic"], "n_images": 4, "batch_size": 3,
            "device": "cpu", "seed": 3, "output": str(tmp_path), "report": False,
            "methods": {"saliency": {}, "random": {}, "oracle": {}},
            "metrics": {"deletion": {"n_steps": 4}, "pointing_game": {}},
            "timing": {"enabled": False}}
    data.update(changes)
    return from_dict(data)


def test_run_writes_tidy_scores_and_resumes_without_recomputing(tmp_path, monkeypatch) -> None:
    config = _config(tmp_path)
    run_dir = run(config, echo=lambda *_: None)
    scores = pd.read_csv(run_dir / "scores.csv")
    assert set(scores.method) == {"saliency", "random", "oracle"} and set(scores.metric) == {"deletion", "pointing_game"}
    assert len(scores) == 3 * 2 * 4 and (scores.status == "ok").all()
    assert set(scores.image) == {0, 1, 2, 3} and set(scores.seed) == {3}
    assert json.loads(scores.params[scores.metric == "deletion"].iloc[0])["n_steps"] == 4
    curves = pd.read_csv(run_dir / "curves.csv")
    assert set(curves.metric) == {"deletion"} and curves.x.min() == 0 and curves.x.max() == 1
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["config"]["seed"] == 3 and "torch" in meta["versions"] and meta["cells"]["computed"] == 6

    def forbidden(*args, **kwargs):
        raise AssertionError("a finished cell was recomputed")

    monkeypatch.setattr(cells_module, "run_metric", forbidden)
    again = run(config, echo=lambda *_: None)
    assert json.loads((again / "metadata.json").read_text())["cells"]["reused"] == 6
    pd.testing.assert_frame_equal(pd.read_csv(again / "scores.csv"), scores)


def test_scores_do_not_depend_on_the_batch_size(tmp_path) -> None:
    a = run(_config(tmp_path / "a", batch_size=1), echo=lambda *_: None)
    b = run(_config(tmp_path / "b", batch_size=4), echo=lambda *_: None)
    sa, sb = pd.read_csv(a / "scores.csv"), pd.read_csv(b / "scores.csv")
    pd.testing.assert_series_equal(sa.score, sb.score)


def test_a_failing_cell_becomes_an_error_row_and_the_run_goes_on(tmp_path) -> None:
    config = _config(tmp_path, datasets=["skimage"], dataset_params={"skimage": {"names": ["astronaut", "coffee"]}},
                     n_images=2)
    run_dir = run(config, echo=lambda *_: None)
    scores = pd.read_csv(run_dir / "scores.csv", keep_default_na=False)
    errors = scores[scores.status == "error"]
    # No masks on photographs: the oracle and the pointing game cannot run; the rest did.
    assert set(errors.method[errors.metric == "deletion"]) == {"oracle"}
    assert "mask" in errors.error.iloc[0]
    assert set(errors.metric) == {"deletion", "pointing_game"}
    ok = scores[scores.status == "ok"]
    assert set(ok.method) == {"saliency", "random"} and set(ok.metric) == {"deletion"}


def test_a_method_refusing_the_architecture_is_recorded_as_not_applicable(tmp_path) -> None:
    """Guided Backprop has no rule for a ViT's GELU: adapters.NotApplicable -> a "not_applicable"
    row, counted apart from failures; the run is complete and the other cells ran."""
    config = _config(tmp_path, models=["small_cnn", "vit_slim"], methods={"saliency": {}, "guided_backprop": {}},
                     metrics={"deletion": {"n_steps": 4}}, n_images=2)
    run_dir = run(config, echo=lambda *_: None)
    scores = pd.read_csv(run_dir / "scores.csv", keep_default_na=False)
    refused = scores[scores.status == "not_applicable"]
    assert list(zip(refused.model, refused.method)) == [("vit_slim", "guided_backprop")]
    assert "NotApplicable" in refused.error.iloc[0] and "'gelu'" in refused.error.iloc[0]
    assert (scores.status[scores.status != "not_applicable"] == "ok").all() and len(scores) == 3 * 2 + 1
    completeness = json.loads((run_dir / "completeness.json").read_text())
    assert (completeness["done"], completeness["failed"], completeness["not_applicable"]) == (3, 0, 1)
    assert completeness["complete"]


@pytest.mark.slow
def test_timing_cells_are_measured_with_pytest_benchmark(tmp_path) -> None:
    # Occlusion's cost depends on the image size: the timing cell must pass it (it once did not).
    config = _config(tmp_path, methods={"saliency": {}, "occlusion": {"window": 32, "stride": 32}},
                     metrics={"deletion": {"n_steps": 4}},
                     timing={"enabled": True, "batch_sizes": [2], "rounds": 2, "warmup_rounds": 1,
                             "max_rounds": 6, "max_seconds": 30})
    run_dir = run(config, echo=lambda *_: None)
    bench = json.loads((run_dir / "benchmark.json").read_text())
    assert len(bench["benchmarks"]) == 2
    passes = {b["extra_info"]["method"]: b["extra_info"]["forward_passes"] for b in bench["benchmarks"]}
    assert passes == {"saliency": 1, "occlusion": 1 + 4}  # the clean pass + 2 x 2 windows on 64 x 64
    info = next(b for b in bench["benchmarks"] if b["extra_info"]["method"] == "saliency")["extra_info"]
    assert info["batch_size"] == 2
    assert info["efficiency"] > 0 and info["images_per_s"] > 0 and info["device"] == "cpu"
    # Adaptive rounds: at least 4 (the settling minimum), at most max_rounds; the verdict is recorded.
    assert all(4 <= b["stats"]["rounds"] <= 6 for b in bench["benchmarks"])
    assert all(isinstance(b["extra_info"]["noisy"], bool) for b in bench["benchmarks"])
    assert "torch" in bench["machine_info"] and "cudnn" in bench["machine_info"]
    timings = pd.read_csv(run_dir / "timings.csv")
    assert timings.loc[0, "model"] == "small_cnn" and timings.loc[0, "roofline_s"] > 0


def test_report_with_filter_pages_is_built_from_the_run(tmp_path) -> None:
    config = _config(tmp_path, report=True, filters=True, filters_steps=4, methods={"saliency": {}, "random": {}},
                     metrics={"deletion": {"n_steps": 4}})
    run_dir = run(config, echo=lambda *_: None)
    page = run_dir / "figures" / "filters_small_cnn__synthetic.png"
    assert page.is_file() and page.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (run_dir / "report.md").read_text()
    assert "figures/filters_small_cnn__synthetic.png" in report
    assert "saliency" in report and "deletion" in report


def test_cells_that_cannot_be_computed_are_not_planned_and_are_listed(tmp_path) -> None:
    config = _config(tmp_path, models=["small_cnn-synthetic", "vgg_slim-synthetic"],
                     metrics={"deletion": {}, "data_randomisation": {}, "random_logit": {}},
                     exclude=["random:deletion", "vgg_slim-*:saliency:random_*"])
    planned = {(g.model, g.method): set(g.metrics) for g in plan(config)}
    # Only small_cnn has a twin trained on shuffled labels; the oracle cannot be re-explained.
    assert planned[("small_cnn-synthetic", "saliency")] == {"deletion", "data_randomisation", "random_logit"}
    assert planned[("vgg_slim-synthetic", "saliency")] == {"deletion"}  # random_logit excluded for vgg only
    assert planned[("small_cnn-synthetic", "oracle")] == {"deletion"}
    assert planned[("small_cnn-synthetic", "random")] == {"data_randomisation", "random_logit"}
    left_out = {(r["model"], r["method"], r["metric"]): r["reason"] for r in unplanned(config)}
    assert "shuffled labels" in left_out[("vgg_slim-synthetic", "saliency", "data_randomisation")]
    assert "ground-truth mask" in left_out[("small_cnn-synthetic", "oracle", "random_logit")]
    assert left_out[("small_cnn-synthetic", "random", "deletion")] == "excluded by the configuration"
    assert left_out[("vgg_slim-synthetic", "saliency", "random_logit")] == "excluded by the configuration"
    # vgg: data_randomisation x 3 methods + oracle:random_logit + saliency:random_logit; small_cnn: oracle x 2;
    # random:deletion x 2 models
    assert len(left_out) == 5 + 2 + 2
