"""``only``: run some (method, metric) cells with some models and/or methods of the grid, leave (and
list) the rest."""
from __future__ import annotations

import pytest

from bench import grid
from bench.config import ConfigError, apply_overrides, load_config

MODELS = ["small_cnn-synthetic", "small_cnn-textures"]


def _config(**only):
    config = apply_overrides(load_config("quick"), models=MODELS, methods=["saliency", "gradcam"],
                             metrics=["deletion", "pointing_game"])
    config.only = only
    return config


def test_cells_run_only_on_the_models_listed_and_the_rest_are_listed_with_the_reason():
    config = _config(**{"gradcam:deletion": ["small_cnn-synthetic"]})
    assert grid.validate(config) == []
    planned = {(g.model, g.method): g.metrics for g in grid.plan(config)}
    assert planned[("small_cnn-synthetic", "gradcam")] == ("deletion", "pointing_game")
    assert planned[("small_cnn-textures", "gradcam")] == ("pointing_game",)
    assert planned[("small_cnn-textures", "saliency")] == ("deletion", "pointing_game")
    [left] = [u for u in grid.unplanned(config) if u["metric"] == "deletion"]
    assert left["model"] == "small_cnn-textures" and "small_cnn-synthetic only" in left["reason"]


def test_wildcards_select_every_metric_of_a_method():
    config = _config(**{"gradcam:*": ["small_cnn-textures"]})
    planned = {(g.model, g.method): g.metrics for g in grid.plan(config)}
    assert planned[("small_cnn-synthetic", "gradcam")] == ()
    assert planned[("small_cnn-textures", "gradcam")] == ("deletion", "pointing_game")


def test_listed_methods_restrict_the_methods_and_listed_models_the_models():
    config = _config(**{"*:deletion": ["small_cnn-synthetic", "saliency"]})
    planned = {(g.model, g.method): g.metrics for g in grid.plan(config)}
    assert planned[("small_cnn-synthetic", "saliency")] == ("deletion", "pointing_game")
    assert planned[("small_cnn-synthetic", "gradcam")] == ("pointing_game",)
    assert planned[("small_cnn-textures", "saliency")] == ("pointing_game",)
    only_methods = _config(**{"*:deletion": ["gradcam"]})
    planned = {(g.model, g.method): g.metrics for g in grid.plan(only_methods)}
    assert planned[("small_cnn-textures", "gradcam")] == ("deletion", "pointing_game")
    assert planned[("small_cnn-textures", "saliency")] == ("pointing_game",)


def test_a_name_outside_the_grid_or_a_malformed_pattern_is_refused():
    with pytest.raises(ConfigError, match="neither a model nor a method of the grid"):
        grid.validate(_config(**{"gradcam:deletion": ["resnet18_slim-synthetic"]}))
    with pytest.raises(ConfigError, match="must be a \"method:metric\" pattern"):
        grid.validate(_config(**{"gradcam": ["small_cnn-synthetic"]}))


def test_a_pattern_that_matches_nothing_is_a_warning():
    warnings = grid.validate(_config(**{"lime:deletion": ["small_cnn-synthetic"]}))
    assert warnings == ["only: pattern 'lime:deletion' matches no cell of the grid"]


def test_the_type_of_only_is_checked_with_the_other_keys(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('models = ["small_cnn-synthetic"]\nmethods = ["saliency"]\nmetrics = ["deletion"]\n'
                    '[only]\n"saliency:deletion" = "small_cnn-synthetic"\n')
    with pytest.raises(ConfigError, match="only"):
        grid.validate(load_config(str(path)))
