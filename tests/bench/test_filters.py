"""Filter views: gradient-ascent visualisation, activation maps, the figure, the report page and the CLI.

A random-init small_cnn and a few ascent steps keep this fast and independent of zoo training.
"""
from __future__ import annotations

import json

import matplotlib.image
import pytest
import torch

from bench.cli import main
from bench.datasets import SyntheticShapes
from bench.filters import (FilterError, filter_activations, most_active_filters, report_page, start_image,
                           visualise_filters)
from bench.filters.layers import count_hooks
from bench.models import get_spec

LAYER = "features.5"  # small_cnn's Grad-CAM layer: 64 channels at 16x16
FILTERS = [0, 3, 7]
STEPS = 12


@pytest.fixture(autouse=True)
def _one_thread():
    # Shared CPU: one intra-op thread is many times faster than two fighting other processes
    # (the conftest fixture restores the count afterwards).
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def spec():
    return get_spec("small_cnn")


@pytest.fixture
def model(spec):
    return spec.build(seed=0)


@pytest.fixture(scope="module")
def images_x(spec):
    return spec.preprocess(SyntheticShapes(3, seed=0).batch(range(3)).images)


def _visualise(model, spec, filters=FILTERS, **kwargs):
    kwargs.setdefault("steps", STEPS)
    return visualise_filters(model, LAYER, filters, input_size=spec.input_size, mean=spec.mean, std=spec.std, **kwargs)


def _own_means(model, spec, filters, images01):
    """Row i's mean activation of filters[i]: (F,)."""
    maps = filter_activations(model, LAYER, filters, spec.preprocess(images01))
    rows = torch.arange(len(filters))
    return maps[rows, rows].mean(dim=(1, 2))


# --- ascent --------------------------------------------------------------------------------------

def test_visualisations_are_images_in_unit_range(model, spec):
    images = _visualise(model, spec)
    assert images.shape == (len(FILTERS), 3, *spec.input_size)
    assert images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1


def test_zero_steps_is_the_seeded_start(model, spec):
    start = _visualise(model, spec, steps=0)
    assert torch.allclose(start, start_image(len(FILTERS), spec.input_size, seed=0), atol=1e-6)


def test_ascent_increases_each_filters_activation(model, spec):
    start = start_image(len(FILTERS), spec.input_size, seed=0)
    before = _own_means(model, spec, FILTERS, start)
    after = _own_means(model, spec, FILTERS, _visualise(model, spec, steps=20))
    assert (after > 1.5 * before + 1e-4).all(), (before, after)


def test_ascent_increases_activation_with_tv_and_no_blur(model, spec):
    start = start_image(len(FILTERS), spec.input_size, seed=0)
    before = _own_means(model, spec, FILTERS, start)
    after = _own_means(model, spec, FILTERS, _visualise(model, spec, blur_every=0, tv_weight=0.01))
    assert (after > before).all(), (before, after)


def test_different_filters_give_different_images(model, spec):
    images = _visualise(model, spec)
    for i in range(len(FILTERS)):
        for j in range(i + 1, len(FILTERS)):
            assert (images[i] - images[j]).abs().mean() > 1e-2, (FILTERS[i], FILTERS[j])


def test_deterministic_for_a_seed(model, spec):
    first = _visualise(model, spec, seed=3)
    assert torch.equal(first, _visualise(model, spec, seed=3))
    assert (first - _visualise(model, spec, seed=4)).abs().max() > 1e-2


def test_does_not_touch_the_global_random_state(model, spec):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    _visualise(model, spec, steps=2)
    assert torch.equal(torch.rand(3), expected)


def test_batched_equals_one_filter_at_a_time(model, spec):
    batched = _visualise(model, spec)
    single = torch.cat([_visualise(model, spec, filters=[f]) for f in FILTERS])
    assert torch.allclose(batched, single, atol=1e-4), (batched - single).abs().max()
    chunked = _visualise(model, spec, chunk_size=2)
    assert torch.allclose(batched, chunked, atol=1e-4), (batched - chunked).abs().max()


# --- activations ---------------------------------------------------------------------------------

def test_filter_activations_are_the_layers_channels(model, images_x):
    maps = filter_activations(model, LAYER, [5, 1], images_x)
    assert maps.shape == (3, 2, 16, 16)
    with torch.no_grad():
        expected = model.features(images_x)[:, [5, 1]]
    assert torch.allclose(maps, expected, atol=1e-5)
    chunked = filter_activations(model, LAYER, [5, 1], images_x, batch_size=2)
    assert torch.allclose(maps, chunked, atol=1e-5)


def test_most_active_filters_are_distinct_valid_and_sorted(model, images_x):
    chosen = most_active_filters(model, LAYER, images_x, 6)
    assert len(chosen) == 6 and len(set(chosen)) == 6
    assert chosen == sorted(chosen) and all(0 <= c < 64 for c in chosen)
    with torch.no_grad():
        peak = model.features(images_x).amax(dim=(0, 2, 3))
    assert int(peak.argmax()) in chosen  # the strongest responder is always taken first
    assert most_active_filters(model, LAYER, images_x, 100) == list(range(64))  # asking for more: all


# --- the model is left as it was -----------------------------------------------------------------

def _snapshot(model):
    return {
        "training": {name: m.training for name, m in model.named_modules()},
        "requires_grad": {name: p.requires_grad for name, p in model.named_parameters()},
        "grad": {name: None if p.grad is None else p.grad.clone() for name, p in model.named_parameters()},
        "state": {name: t.clone() for name, t in model.state_dict().items()},
        "hooks": count_hooks(model),
    }


def _assert_same(model, snapshot):
    now = _snapshot(model)
    assert now["training"] == snapshot["training"]
    assert now["requires_grad"] == snapshot["requires_grad"]
    assert now["hooks"] == snapshot["hooks"]
    for name, grad in snapshot["grad"].items():
        if grad is None:
            assert now["grad"][name] is None, f"gradient accumulated on {name}"
        else:
            assert torch.equal(now["grad"][name], grad), name
    for name, tensor in snapshot["state"].items():
        assert torch.equal(now["state"][name], tensor), f"{name} changed"


@pytest.fixture
def awkward_model(model):
    """Train mode (batch norm would update its running stats), one eval submodule, one frozen
    parameter, one parameter holding a gradient, and a user's hook that must survive."""
    model.train()
    model.features[0].eval()
    model.features[2][0].weight.requires_grad_(False)
    model.classifier.weight.grad = torch.ones_like(model.classifier.weight)
    model.features[4].register_forward_hook(lambda *args: None)
    return model


def test_visualise_leaves_the_model_as_it_was(awkward_model, spec):
    snapshot = _snapshot(awkward_model)
    assert snapshot["hooks"] == 1
    _visualise(awkward_model, spec, steps=3)
    _assert_same(awkward_model, snapshot)


def test_activations_and_choice_leave_the_model_as_it_was(awkward_model, images_x):
    snapshot = _snapshot(awkward_model)
    filter_activations(awkward_model, LAYER, [0, 1], images_x)
    most_active_filters(awkward_model, LAYER, images_x, 3)
    _assert_same(awkward_model, snapshot)


def test_the_model_is_restored_after_errors(awkward_model, spec, images_x):
    snapshot = _snapshot(awkward_model)
    with pytest.raises(RuntimeError):  # fails inside the forward pass, with the hook in place
        filter_activations(awkward_model, LAYER, [0], torch.rand(2, 1, 64, 64))
    with pytest.raises(FilterError):
        _visualise(awkward_model, spec, filters=[64])
    with pytest.raises(FilterError):
        filter_activations(awkward_model, "classifier", [0], images_x)
    _assert_same(awkward_model, snapshot)


# --- errors --------------------------------------------------------------------------------------

def test_unknown_layer_lists_valid_names(model, spec, images_x):
    with pytest.raises(FilterError, match=r"no layer 'features\.55'.*features\.5") as error:
        visualise_filters(model, "features.55", [0], input_size=spec.input_size, mean=spec.mean, std=spec.std,
                          steps=1)
    assert "modules in all" in str(error.value)
    with pytest.raises(FilterError, match="no layer 'nope'"):
        filter_activations(model, "nope", [0], images_x)


def test_layer_without_spatial_output_is_rejected(model, spec, images_x):
    with pytest.raises(FilterError, match=r"'classifier' outputs \(1, 4\).*spatial"):
        visualise_filters(model, "classifier", [0], input_size=spec.input_size, mean=spec.mean, std=spec.std, steps=1)
    with pytest.raises(FilterError, match=r"'classifier' outputs \(3, 4\).*spatial"):
        filter_activations(model, "classifier", [0], images_x)


@pytest.mark.parametrize("filters, message", [
    ([64], r"filter 64 is out of range: layer 'features\.5' has 64 channels \(valid indices 0\.\.63\)"),
    ([0, -1], "filter -1 is out of range"),
    ([], "no filters given"),
    ([1.5], "must be integers"),
])
def test_bad_filter_indices(model, spec, images_x, filters, message):
    with pytest.raises(FilterError, match=message):
        _visualise(model, spec, filters=filters, steps=1)
    with pytest.raises(FilterError, match=message):
        filter_activations(model, LAYER, filters, images_x)


def test_model_on_another_device_is_an_error(model, spec):
    with pytest.raises(FilterError, match="model is on cpu"):
        _visualise(model, spec, device="meta")


# --- figure, report page, CLI --------------------------------------------------------------------

def test_report_page_writes_png_and_summary(model, spec, images_x, tmp_path):
    path = report_page(model, spec, images_x, tmp_path, name="small_cnn-random", n_filters=3, n_images=2, steps=4)
    assert path == tmp_path / "filters_small_cnn-random.png"
    picture = matplotlib.image.imread(path)
    assert picture.ndim == 3 and picture.shape[0] > 200 and picture.shape[1] > 200
    summary = json.loads((tmp_path / "filters_small_cnn-random.json").read_text())
    assert summary["layer"] == LAYER and len(summary["filters"]) == 3 and summary["n_images"] == 2
    assert all(a > b for a, b in zip(summary["activation_visualised"], summary["activation_start"]))


def test_cli_writes_the_figure(tmp_path, capsys):
    out = tmp_path / "figs" / "small_cnn.png"
    rc = main(["filters", "small_cnn", "--filters", "0,2", "--steps", "3", "--n-images", "2", "--device", "cpu",
               "--out", str(out)])
    assert rc == 0
    assert out.is_file() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert capsys.readouterr().out.strip() == str(out)
    assert json.loads(out.with_suffix(".json").read_text())["filters"] == [0, 2]


@pytest.mark.parametrize("argv, message", [
    (["small_cnn", "--layer", "nope"], "no layer 'nope'"),
    (["small_cnn", "--filters", "0,99"], "has 64 channels"),
    (["small_cnn", "--filters", "a,b"], "comma-separated integers"),
    (["no_such_model"], "neither a zoo entry"),
])
def test_cli_errors_are_one_clear_line(tmp_path, capsys, argv, message):
    out = tmp_path / "f.png"
    rc = main(["filters", *argv, "--steps", "1", "--n-images", "1", "--device", "cpu", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error:") and message in err
    assert not out.exists()
