"""The GPU check script, exercised on the CPU: its plan (dry run), the whole path in quick mode, and
its Markdown table."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import gpu_check


def test_dry_run_plans_the_three_networks_at_batch_32_and_64(tmp_path: Path, capsys) -> None:
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "cuda tests:" in printed and " -m cuda " in printed
    configs = {path.stem.removeprefix("config_"): json.loads(path.read_text()) for path in tmp_path.glob("config_*.json")}
    assert set(configs) == {f"{model}_{part}" for model in gpu_check.MODELS for part in ("single-pass", "sampling")}
    for name, config in configs.items():
        assert config["device"] == "cuda" and config["timing"]["batch_sizes"] == [32, 64]
        assert not set(config["methods"]) & set(gpu_check.SKIPPED)
        assert config["models"][0] in name
    single = configs["resnet50_single-pass"]["methods"]
    assert {"saliency", "gradcam", "guided_backprop", "integrated_gradients"} <= set(single)
    assert "raw_attention" not in single and "raw_attention" in configs["vit_b_16_single-pass"]["methods"]
    assert single["integrated_gradients"] == {"n_steps": 32}
    assert "lime" in configs["resnet50_sampling"]["methods"] and "lime" not in single
    assert configs["resnet50_single-pass"]["weights"] == {}


@pytest.mark.slow
def test_quick_cpu_run_writes_json_and_markdown(tmp_path: Path) -> None:
    code = gpu_check.main(["--device", "cpu", "--quick", "--models", "small_cnn", "--tests",
                           "tests/bench/test_device.py", "--out", str(tmp_path), "--budget-s", "240"])
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert code == 0, report
    # the CUDA-marked test of that file: skipped without CUDA, run where there is a GPU
    assert "1 skipped" in report["tests"]["summary"] or "1 passed" in report["tests"]["summary"]
    rows = report["timing"]["rows"]
    assert {(r["model"], r["method"], r["batch_size"]) for r in rows} == {("small_cnn", "saliency", 2),
                                                                          ("small_cnn", "gradcam", 2)}
    assert all(r["images_per_s"] > 0 and r["efficiency"] > 0 for r in rows)
    table = (tmp_path / "gpu_check.md").read_text()
    assert "## Batch 2: images/s" in table and "| saliency |" in table


def test_markdown_table_from_rows() -> None:
    row = {"model": "resnet50", "method": "saliency", "batch_size": 64, "median_s": 0.05, "iqr_s": 0.001,
           "images_per_s": 1280.0, "efficiency": 0.97, "forward_passes": 1, "backward_passes": 1,
           "peak_memory_mib": 5000.0}
    report = {"environment": {"device_name": "H200", "device": "cuda:0"}, "seconds": 300.0, "budget_s": 480.0,
              "tests": {"summary": "3 passed"},
              "timing": {"skipped": {"scorecam": "slow"}, "parts": [], "rows": [row, {**row, "model": "vit_b_16"}]}}
    text = gpu_check.markdown(report)
    assert "| method | resnet50 | vit_b_16 |" in text
    assert "| saliency | 1.28e+03 (0.97) | 1.28e+03 (0.97) |" in text
    assert "not timed: scorecam (slow)" in text
