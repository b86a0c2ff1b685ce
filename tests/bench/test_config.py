"""Configuration: shipped files load, overrides apply, bad input is caught before any work."""
from __future__ import annotations

import pytest

from bench.cli import main
from bench.config import ConfigError, apply_overrides, from_dict, load_config
from bench.runner import prepare


@pytest.mark.parametrize("name", ["default", "quick", "gpu"])
def test_shipped_configurations_load(name: str) -> None:
    config = load_config(name)
    assert config.name == name and config.models and config.methods and config.metrics


def test_default_and_quick_are_valid_on_this_machine(tmp_path) -> None:
    for name in ("default", "quick"):
        config = apply_overrides(load_config(name), output=str(tmp_path))
        assert prepare(config) == tmp_path / name


def test_default_configuration_covers_every_registered_method_and_metric() -> None:
    import adapters
    import metrics

    config = load_config("default")
    assert set(config.methods) == set(adapters.names())
    # Text scores run in the text configuration (until the default includes the text entries).
    assert set(config.metrics) >= {name for name in metrics.names() if "image" in metrics.get(name).modalities}
    assert len({m.split("-")[0] for m in config.models}) >= 4
    text = load_config("text")
    assert set(text.methods) == {name for name in adapters.names() if "text" in adapters.get_class(name).modalities}
    assert set(text.metrics) == {name for name in metrics.names() if "text" in metrics.get(name).modalities}


def test_overrides_win_over_the_file() -> None:
    config = apply_overrides(load_config("quick"), methods=["saliency"], n_images=3, seed=7, device="cpu")
    assert list(config.methods) == ["saliency"] and config.n_images == 3 and config.seed == 7
    assert load_config("quick").n_images == 8  # the shipped file is untouched


def test_unknown_keys_and_names_are_clear_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['modles'\]"):
        from_dict({"modles": ["small_cnn"]})
    with pytest.raises(ConfigError, match="unknown configuration 'fast'"):
        load_config("fast")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \"x\"\nmodels = [\"small_cnn\"\n")
    with pytest.raises(ConfigError, match="malformed configuration"):
        load_config(str(bad))
    base = {"name": "x", "models": ["small_cnn-synthetic"], "output": str(tmp_path)}
    with pytest.raises(ConfigError, match="unknown model 'resnet9'"):
        prepare(from_dict({**base, "models": ["resnet9"], "methods": ["saliency"], "metrics": ["deletion"]}))
    with pytest.raises(ConfigError, match="unknown method 'gradcamm'"):
        prepare(from_dict({**base, "methods": ["gradcamm"], "metrics": ["deletion"]}))
    with pytest.raises(ConfigError, match="unknown metric 'deletions'"):
        prepare(from_dict({**base, "methods": ["saliency"], "metrics": ["deletions"]}))
    with pytest.raises(ConfigError, match=r"metric 'deletion': unknown parameter\(s\) \['stepz'\]"):
        prepare(from_dict({**base, "methods": ["saliency"], "metrics": {"deletion": {"stepz": 3}}}))
    with pytest.raises(ConfigError, match="method 'saliency'"):
        prepare(from_dict({**base, "methods": {"saliency": {"colour": "red"}}, "metrics": ["deletion"]}))
    with pytest.raises(ConfigError, match=r'exclude must be a list of "method:metric" or "model:method:metric" '
                                          r'patterns .*, got \["a:b:c:d"\]'):
        prepare(from_dict({**base, "methods": ["saliency"], "metrics": ["deletion"], "exclude": ["a:b:c:d"]}))


def test_unwritable_output_and_missing_device_fail_before_work(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    config = from_dict({"name": "x", "models": ["small_cnn-synthetic"], "methods": ["saliency"],
                        "metrics": ["deletion"], "output": str(blocker)})
    with pytest.raises(ConfigError, match="cannot be created"):
        prepare(config)


def test_cli_reports_errors_in_one_line(capsys, tmp_path) -> None:
    assert main(["run", "--config", "quick", "--methods", "nope", "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown method 'nope'") and "Traceback" not in err
    import torch

    if not torch.cuda.is_available():
        assert main(["run", "--config", "quick", "--device", "cuda", "--output", str(tmp_path)]) == 2
        assert "CUDA is not available" in capsys.readouterr().err
