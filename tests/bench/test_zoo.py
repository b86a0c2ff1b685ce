"""The embedded zoo: deterministic training, cache reuse, accuracy, the shortcut's collapse."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from bench import zoo
from bench.cli import main
from bench.train import TrainConfig, recalibrate_batch_norm

TINY = zoo.ZooEntry("small_cnn-synthetic", "small_cnn", n_train=96, n_test=32, train=TrainConfig(epochs=1, batch_size=32))


def test_tiny_entry_trains_in_seconds_and_the_cache_is_reused(tmp_path, monkeypatch) -> None:
    first = zoo.load(TINY, root=tmp_path)
    assert first.path.is_file() and first.path.with_suffix(".json").is_file()
    assert first.metadata["seed"] == 0 and first.metadata["data_config"]["n"] == 96
    assert "torch" in first.metadata["versions"]

    def no_training(*args, **kwargs):
        raise AssertionError("a cached entry was trained again")

    monkeypatch.setattr(zoo, "_train_entry", no_training)
    second = zoo.load(TINY, root=tmp_path)
    for key, value in first.model.state_dict().items():
        assert torch.equal(second.model.state_dict()[key], value)
    assert second.accuracy == first.accuracy
    # Changed metadata (here the seed) means a different cache file: never a stale model.
    with pytest.raises(AssertionError, match="trained again"):
        zoo.load(replace(TINY, train=replace(TINY.train, seed=1)), root=tmp_path)


def test_training_is_deterministic_whatever_the_callers_thread_count(tmp_path) -> None:
    torch.set_num_threads(1)
    a = zoo.load(TINY, root=tmp_path / "a")
    assert torch.get_num_threads() == 1  # restored after training
    torch.set_num_threads(2)
    b = zoo.load(TINY, root=tmp_path / "b")
    for key, value in a.model.state_dict().items():
        assert torch.equal(b.model.state_dict()[key], value), key


def test_not_trained_and_not_allowed_to_train_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="is not trained"):
        zoo.load(TINY, root=tmp_path, train_if_missing=False)


def test_unknown_entry_and_config_name_the_problem() -> None:
    with pytest.raises(KeyError, match="unknown zoo entry 'alexnet-synthetic'"):
        zoo.load("alexnet-synthetic")
    with pytest.raises(KeyError, match="unknown zoo configuration 'huge'"):
        zoo.ensure("huge")


@pytest.mark.slow
def test_small_zoo_classifiers_reach_95_percent(zoo_small_cnn, zoo_textures) -> None:
    assert zoo_small_cnn.accuracy >= 0.95 and zoo_textures.accuracy >= 0.95
    assert zoo_textures.dataset().name == "textures"
    x, y, masks = zoo_small_cnn.batch(n=8)
    assert x.shape == (8, 3, 64, 64) and masks.shape == (8, 1, 64, 64)
    with torch.no_grad():
        assert (zoo_small_cnn.model(x).argmax(1) == y).float().mean() >= 0.75


@pytest.mark.slow
def test_shortcut_model_leans_on_the_watermark(zoo_shortcut) -> None:
    meta = zoo_shortcut.metadata
    assert zoo_shortcut.accuracy >= 0.95
    # Removing the watermark leaves the model at chance; moving it to the next class's corner
    # makes it predict that class.
    assert meta["accuracy_watermark_none"] < 0.5
    assert meta["accuracy_watermark_shifted"] < 0.1
    x, y, _ = zoo_shortcut.batch(n=16, watermark="shifted")
    with torch.no_grad():
        predicted = zoo_shortcut.model(x).argmax(1)
    assert (predicted == (y + 1) % 4).float().mean() > 0.9


@pytest.mark.slow
def test_cli_zoo_json_lists_the_entries(capsys, zoo_small_cnn, zoo_shortcut, zoo_textures) -> None:
    assert main(["zoo", "--config", "small", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    names = {row["name"] for row in rows}
    assert {"small_cnn-synthetic", "small_cnn-shortcut", "small_cnn-textures"} <= names
    for row in rows:
        assert {"model", "dataset", "accuracy", "path"} <= set(row)


@pytest.mark.slow
def test_shuffled_label_model_memorises_its_permuted_labels() -> None:
    shuffled = zoo.load("small_cnn-synthetic-shuffled")
    assert shuffled.entry.role == "shuffled-labels"
    assert shuffled.metadata["train_accuracy"] >= 0.9  # fitted to the permuted labels...
    assert shuffled.accuracy < 0.5                     # ...which carry nothing to the held-out data


def test_batch_norm_recalibration_gives_the_exact_statistics_and_keeps_the_weights() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4, momentum=0.01)).eval()
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "tracked" not in k}
    x = torch.randn(40, 3, 5, 5, generator=torch.Generator().manual_seed(0)) * 3 + 1
    recalibrate_batch_norm(model, x, batch_size=8)
    with torch.no_grad():
        features = model[0](x)
    norm = model[1]
    torch.testing.assert_close(norm.running_mean, features.mean(dim=(0, 2, 3)), rtol=1e-5, atol=1e-5)
    assert norm.momentum == 0.01 and not model.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())


def test_shared_rendering_serves_shorter_datasets_with_identical_images() -> None:
    entry = zoo.ENTRIES["small_cnn-synthetic"]
    direct = entry.data("test", 12).batch(range(12))
    with zoo.shared_rendering():
        short_images, _ = zoo._render(entry.data("test", 5))
        long_images, long_labels = zoo._render(entry.data("test", 12))
        again, _ = zoo._render(entry.data("test", 7))
    assert torch.equal(long_images, direct.images) and torch.equal(long_labels, direct.labels)
    assert torch.equal(short_images, direct.images[:5]) and torch.equal(again, direct.images[:7])
    assert zoo._rendered is None  # nothing held once the block ends


def test_image_entries_keep_their_fingerprints() -> None:
    """A field added to ZooEntry for one family (text's token_dropout) must not change the other
    entries' fingerprints: that silently retrains every cached model. Changing a recipe on purpose
    changes its fingerprint here too, on purpose."""
    from bench import zoo as zoo_module

    pinned = {"small_cnn-synthetic": "cd9c16d896bb", "vit_slim-synthetic": "4d3bd0a2e821",
              "small_cnn-shortcut": "0ee5501f14a3", "small_cnn-textures": "4fcd427eb909",
              "small_cnn-synthetic-shuffled": "e988ee8aef61", "resnet18_slim-synthetic": "219363dfafe5"}
    assert {name: zoo_module.ENTRIES[name].fingerprint() for name in pinned} == pinned
