"""Every configuration key is checked (type and range) before any work starts.

A bad key in a TOML file or on the command line is one line on stderr that names the key (dotted
for ``[timing]``), the file or "command line", what is accepted and what was given; exit code 2; no
run directory. Empty grids are refused; exclude patterns and timing selections that match nothing
in the grid are warned about; Ctrl-C says what was saved and how to resume.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench import runner
from bench.cli import main
from bench.config import ConfigError, RunConfig, apply_overrides, from_dict, load_config
from bench.grid import validate

# A tiny valid grid (random-init small CNN, synthetic shapes, 2 images, no timing, no report): a
# case changes one key; a check that lets a bad value through costs a few seconds, not a zoo training.
BASE = {"name": '"t"', "models": '["small_cnn"]', "datasets": '["synthetic"]', "n_images": "2", "batch_size": "2",
        "device": '"cpu"', "methods": '["saliency"]', "metrics": "{ deletion = { n_steps = 4 } }",
        "report": "false", "timing.enabled": "false"}


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # a relative output directory that slips through lands here, not in the checkout


def _toml(tmp_path: Path, changes: dict[str, str]) -> Path:
    """BASE with ``changes`` (TOML literals; "timing.KEY" goes into [timing]) written to tmp_path/run.toml."""
    values = {**BASE, "output": json.dumps(str(tmp_path / "out")), **changes}
    if "timing" in changes:  # a top-level ``timing = ...`` replaces the table
        values = {k: v for k, v in values.items() if not k.startswith("timing.")}
    top = [f"{key} = {value}" for key, value in values.items() if not key.startswith("timing.")]
    timing = [f"{key[len('timing.'):]} = {value}" for key, value in values.items() if key.startswith("timing.")]
    path = tmp_path / "run.toml"
    path.write_text("\n".join(top + (["[timing]", *timing] if timing else [])) + "\n")
    return path


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in captured.err, captured.err
    return err


@dataclass(frozen=True)
class Case:
    id: str
    changes: dict[str, str]
    key: str               # named in the message
    says: str = ""         # and this (what was given, or what is wrong)
    names_file: bool = True  # type and range errors name the file; grid-level ones (empty, unknown) need not


TOML_CASES = [
    # issue 14's examples
    Case("n_images-string", {"n_images": '"4"'}, "n_images", 'got "4" (a string)'),
    Case("batch_size-string", {"batch_size": '"4"'}, "batch_size", 'got "4" (a string)'),
    Case("n_images-float", {"n_images": "2.5"}, "n_images", "got 2.5 (a float)"),
    Case("n_images-bool", {"n_images": "true"}, "n_images", "got true (a boolean)"),
    Case("seed-string", {"seed": '"abc"'}, "seed", 'got "abc" (a string)'),
    Case("models-bare-string", {"models": '"small_cnn"'}, "models", 'write a list, ["small_cnn"]'),
    Case("exclude-int", {"exclude": "[3]"}, "exclude", "item 1 is 3, an integer"),
    Case("timing-batch_sizes-zero", {"timing.batch_sizes": "[0]"}, "timing.batch_sizes", "item 1 is 0, out of range"),
    # counts: bounded, integers, no booleans
    Case("n_images-zero", {"n_images": "0"}, "n_images", "out of range"),
    Case("n_images-huge", {"n_images": "1_000_000_000"}, "n_images", "out of range"),
    Case("batch_size-zero", {"batch_size": "0"}, "batch_size", "out of range"),
    Case("batch_size-bool", {"batch_size": "false"}, "batch_size", "a boolean"),
    Case("maps_per_model-zero", {"maps_per_model": "0"}, "maps_per_model", "out of range"),
    Case("maps_per_model-float", {"maps_per_model": "6.0"}, "maps_per_model", "a float"),
    Case("filters_steps-zero", {"filters_steps": "0"}, "filters_steps", "out of range"),
    Case("filters_steps-string", {"filters_steps": '"many"'}, "filters_steps", "a string"),
    Case("seed-bool", {"seed": "true"}, "seed", "a boolean"),
    Case("seed-negative", {"seed": "-1"}, "seed", "out of range"),
    Case("seed-float", {"seed": "1.5"}, "seed", "a float"),
    # names and lists of names
    Case("models-int-item", {"models": "[3]"}, "models", "item 1 is 3, an integer"),
    Case("models-empty-name", {"models": '["small_cnn", ""]'}, "models", 'item 2 is ""'),
    Case("datasets-bare-string", {"datasets": '"synthetic"'}, "datasets", 'write a list, ["synthetic"]'),
    Case("exclude-bare-string", {"exclude": '"saliency:deletion"'}, "exclude", "write a list"),
    Case("exclude-four-parts", {"exclude": '["a:b:c:d"]'}, "exclude", 'item 1 is "a:b:c:d"'),
    Case("exclude-no-colon", {"exclude": '["saliency"]'}, "exclude", 'item 1 is "saliency"'),
    Case("notes-bare-string", {"notes": '"hello"'}, "notes", "write a list"),
    Case("notes-int-item", {"notes": '["ok", 3]'}, "notes", "item 2 is 3, an integer"),
    Case("name-escapes", {"name": '"../up"'}, "name", "a safe directory name"),
    Case("name-slash", {"name": '"a/b"'}, "name", "a safe directory name"),
    Case("name-empty", {"name": '""'}, "name", 'got ""'),
    Case("name-int", {"name": "3"}, "name", "an integer"),
    Case("name-too-long", {"name": json.dumps("a" * 101)}, "name", "at most 100 characters"),
    # methods and metrics: a list of names or a table of parameter tables
    Case("methods-bare-string", {"methods": '"saliency"'}, "methods", 'write a list, ["saliency"]'),
    Case("methods-int-item", {"methods": "[1]"}, "methods", "item 1 is 1, an integer"),
    Case("methods-params-not-table", {"methods": "{ saliency = 3 }"}, "methods", "'saliency' is 3, an integer"),
    Case("metrics-bare-string", {"metrics": '"deletion"'}, "metrics", "write a list"),
    Case("metrics-params-not-table", {"metrics": '{ deletion = "fast" }'}, "metrics", "'deletion' is \"fast\""),
    Case("metrics-number", {"metrics": "5"}, "metrics", "got 5 (an integer)"),
    # parameter values: checked by the metric or the method itself, named here
    Case("metric-param-range", {"metrics": "{ deletion = { n_steps = 0 } }"}, "metric 'deletion'", "n_steps",
         names_file=False),
    Case("method-param-range", {"methods": "{ integrated_gradients = { n_steps = 1_000_000 } }"},
         "method 'integrated_gradients'", "n_steps", names_file=False),
    # tables
    Case("weights-string", {"weights": '"x.pth"'}, "weights", "a string"),
    Case("weights-int-value", {"weights": "{ small_cnn = 3 }"}, "weights", "'small_cnn' is 3, an integer"),
    Case("dataset_params-string", {"dataset_params": '"x"'}, "dataset_params", "a string"),
    Case("dataset_params-value", {"dataset_params": "{ synthetic = 3 }"}, "dataset_params", "'synthetic' is 3"),
    # choices, strings, booleans
    Case("device-int", {"device": "3"}, "device", "an integer"),
    Case("device-unknown", {"device": '"gpu"'}, "device", 'got "gpu"'),
    Case("target-typo", {"target": '"labels"'}, "target", 'got "labels"'),
    Case("target-int", {"target": "1"}, "target", "an integer"),
    Case("output-int", {"output": "3"}, "output", "an integer"),
    Case("output-empty", {"output": '""'}, "output", 'got ""'),
    Case("report-string", {"report": '"yes"'}, "report", 'got "yes" (a string)'),
    Case("filters-int", {"filters": "1"}, "filters", "got 1 (an integer)"),
    # [timing]
    Case("timing-not-table", {"timing": "3"}, "timing", "got 3 (an integer)"),
    Case("timing-batch_sizes-empty", {"timing.batch_sizes": "[]"}, "timing.batch_sizes", "an empty list"),
    Case("timing-batch_sizes-bare", {"timing.batch_sizes": "8"}, "timing.batch_sizes", "got 8 (an integer)"),
    Case("timing-batch_sizes-float", {"timing.batch_sizes": "[8.0]"}, "timing.batch_sizes", "a float"),
    Case("timing-batch_sizes-huge", {"timing.batch_sizes": "[100_000]"}, "timing.batch_sizes", "out of range"),
    Case("timing-rounds-zero", {"timing.rounds": "0"}, "timing.rounds", "out of range"),
    Case("timing-warmup-negative", {"timing.warmup_rounds": "-1"}, "timing.warmup_rounds", "out of range"),
    Case("timing-enabled-string", {"timing.enabled": '"no"'}, "timing.enabled", 'got "no" (a string)'),
    Case("timing-methods-bare", {"timing.methods": '"saliency"'}, "timing.methods", "write a list"),
    Case("timing-models-int-item", {"timing.models": "[1]"}, "timing.models", "item 1 is 1, an integer"),
    Case("timing-models-unknown", {"timing.models": '["small_cnn", "nope"]'}, "timing.models", "'nope'",
         names_file=False),
    Case("timing-methods-unknown", {"timing.methods": '["saliencyy"]'}, "timing.methods", "'saliencyy'",
         names_file=False),
    # empty grids
    Case("models-empty", {"models": "[]"}, "models is empty", names_file=False),
    Case("datasets-empty", {"datasets": "[]"}, "datasets is empty", names_file=False),
    Case("methods-empty", {"methods": "[]"}, "methods is empty", names_file=False),
    Case("metrics-empty", {"metrics": "[]"}, "metrics is empty", names_file=False),
    Case("everything-excluded", {"exclude": '["*:*"]'}, "exclude", "every cell of the grid is left out",
         names_file=False),
]


@pytest.mark.parametrize("case", TOML_CASES, ids=[case.id for case in TOML_CASES])
def test_a_bad_key_in_a_file_is_one_line_before_any_work(case: Case, tmp_path, capsys) -> None:
    path = _toml(tmp_path, case.changes)
    assert main(["run", "--config", str(path)]) == 2
    err = _one_error_line(capsys)
    assert case.key in err and case.says in err
    assert str(path) in err or not case.names_file
    assert not (tmp_path / "out").exists()  # no run directory, so no cells/


CLI_CASES = [
    # (id, flags, named in the message, and this)
    ("n-images-zero", ["--n-images", "0"], "command line: n_images", "got 0 (out of range)"),
    ("n-images-float", ["--n-images", "2.5"], "--n-images", "'2.5'"),
    ("batch-size-negative", ["--batch-size", "-1"], "command line: batch_size", "got -1"),
    ("seed-negative", ["--seed", "-1"], "command line: seed", "got -1"),
    ("seed-string", ["--seed", "abc"], "--seed", "'abc'"),
    ("seed-without-value", ["--seed"], "--seed", "expected one argument"),
    ("methods-empty", ["--methods", ""], "methods is empty", "--methods"),
    ("metrics-only-commas", ["--metrics", ",,"], "metrics is empty", "--metrics"),
    ("models-empty", ["--models", ""], "models is empty", "--models"),
    ("datasets-empty", ["--datasets", ""], "datasets is empty", "--datasets"),
    ("name-escapes", ["--name", "../up"], "command line: name", "a safe directory name"),
    ("name-space", ["--name", "a b"], "command line: name", 'got "a b"'),
    ("device-unknown", ["--device", "gpu"], "command line: device", 'got "gpu"'),
    ("output-empty", ["--output", ""], "command line: output", 'got ""'),
    ("unknown-flag", ["--images", "3"], "--images", "unrecognized"),
]


@pytest.mark.parametrize("flags, key, says", [case[1:] for case in CLI_CASES], ids=[case[0] for case in CLI_CASES])
def test_a_bad_flag_is_one_line_before_any_work(flags: list[str], key: str, says: str, tmp_path, capsys) -> None:
    path = _toml(tmp_path, {})
    assert main(["run", "--config", str(path), *flags]) == 2
    err = _one_error_line(capsys)
    assert key in err and says in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "t").exists()


def _grid(**changes) -> RunConfig:
    data = {"name": "t", "models": ["small_cnn"], "datasets": ["synthetic"], "n_images": 2, "batch_size": 2,
            "device": "cpu", "methods": ["saliency"], "metrics": {"deletion": {"n_steps": 4}}, "report": False,
            "timing": {"enabled": False}}
    return from_dict({**data, **changes}, source="grid.toml")


def test_overrides_from_the_api_pass_the_same_checks() -> None:
    with pytest.raises(ConfigError, match=r'^overrides: n_images must be an integer from 1 to \d+, got "4" \(a string\)$'):
        apply_overrides(_grid(), n_images="4")
    with pytest.raises(ConfigError, match=r'models must be .*got "small_cnn" \(a string: write a list'):
        apply_overrides(_grid(), models="small_cnn")
    with pytest.raises(ConfigError, match=r'timing\.enabled must be true or false, got "yes"'):
        apply_overrides(_grid(), timing_enabled="yes")


def test_a_config_built_in_python_is_checked_by_validate() -> None:
    built = RunConfig(models=["small_cnn"], datasets=["synthetic"], methods={"saliency": {}},
                      metrics={"deletion": {}}, n_images="4")
    with pytest.raises(ConfigError, match=r'^configuration: n_images must be .*, got "4" \(a string\)'):
        validate(built)
    listed = RunConfig(models=["small_cnn"], datasets=["synthetic"], methods=["saliency"], metrics=["deletion"])
    assert validate(listed) == [] and listed.methods == {"saliency": {}} and listed.metrics == {"deletion": {}}


def test_every_bad_key_is_found_in_one_pass_and_the_first_is_explained() -> None:
    with pytest.raises(ConfigError) as caught:
        _grid(n_images=0, seed="abc", timing={"rounds": 0, "enabled": False})
    message = str(caught.value)
    assert message.startswith("grid.toml: n_images must be") and message.endswith("also refused: seed, timing.rounds")
    assert "\n" not in message


def test_a_metric_refusing_its_parameters_is_a_config_error_naming_it(monkeypatch) -> None:
    import metrics

    def refuse(self, params):
        raise ValueError(f"n_steps must be an integer in [1, 65536], got {params['n_steps']!r}")

    monkeypatch.setattr(type(metrics.get("deletion")), "check_params", refuse)
    with pytest.raises(ConfigError, match=r"^metric 'deletion': n_steps must be an integer in \[1, 65536\], got 4$"):
        validate(_grid())


def test_the_defaults_pass_their_own_declarations() -> None:
    assert RunConfig().check() == RunConfig()


def test_shipped_configurations_survive_their_own_check_and_a_round_trip() -> None:
    for name in ("default", "quick", "gpu"):
        config = load_config(name)
        assert from_dict(json.loads(json.dumps(config.to_dict())), source="config.json") == config


def test_exclude_patterns_that_match_nothing_are_warned_about() -> None:
    config = _grid(methods=["saliency", "random"], exclude=["saliency:deletoin", "lime:*", "random:deletion"])
    warnings = validate(config)
    assert warnings[0] == "exclude pattern 'saliency:deletoin' matches no registered model, method or metric (a typo?)"
    assert warnings[1].startswith("exclude: 1 pattern(s) leave nothing out of this grid") and "'lime:*'" in warnings[1]
    assert len(warnings) == 2  # random:deletion leaves a cell out: no warning
    assert validate(_grid(exclude=["small_cnn:saliency:deletion"], methods=["saliency", "random"])) == []


def test_timing_selections_outside_the_grid_are_warned_about_when_timing_runs() -> None:
    timing = {"enabled": True, "models": ["small_cnn-synthetic"], "methods": ["saliency", "gradcam"]}
    assert validate(_grid(timing=timing)) == [
        "timing.models selects none of the grid's models: nothing will be timed",
        "timing.methods: gradcam not in the grid's methods (not timed)"]
    assert validate(_grid(timing={**timing, "enabled": False})) == []


def test_warnings_are_echoed_by_a_run_that_goes_on(tmp_path, capsys) -> None:
    path = _toml(tmp_path, {"exclude": '["saliency:deletoin"]'})
    assert main(["run", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "warning: exclude pattern 'saliency:deletoin' matches no registered model, method or metric" in out
    assert list((tmp_path / "out" / "t" / "cells").glob("*.json"))


def test_ctrl_c_during_a_run_is_one_line_saying_what_was_saved(tmp_path, capsys, monkeypatch) -> None:
    def interrupted_run(config, **options):
        cells = config.run_dir / "cells"
        cells.mkdir(parents=True)
        for name in ("a__deletion-1.json", "b__deletion-2.json"):
            (cells / name).write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run", interrupted_run)
    path = _toml(tmp_path, {})
    assert main(["run", "--config", str(path), "--seed", "1"]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
    assert err.strip() == (f"interrupted: 2 cell file(s) saved in {tmp_path / 'out' / 't' / 'cells'}; run the same "
                           f"command again to resume: python -m bench run --config {path} --seed 1")


def test_report_on_a_folder_that_is_not_a_run_is_one_line(tmp_path, capsys) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "is not a run directory" in _one_error_line(capsys)
