"""Contract tests that walk the model registry: every spec gets them for free."""
from __future__ import annotations

import functools

import pytest
import torch

from metrics.randomisation import check_blocks
from adapters.tokens import layer_layout, to_channels_first
from bench.models import ModelSpec, WeightsError, get_spec, list_models, register_model


@functools.lru_cache(maxsize=None)
def _built(name: str) -> torch.nn.Module:
    """Each registered architecture is built once per test session (ImageNet-sized ones are slow)."""
    return get_spec(name).build(seed=0)


def _output_of(model: torch.nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    captured = {}

    def hook(_module, _inputs, output):
        captured["out"] = output

    handle = dict(model.named_modules())[layer].register_forward_hook(hook)
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        handle.remove()
    captured["logits"] = logits
    return captured


@pytest.mark.parametrize("name", list_models())
def test_spec_builds_and_maps_a_batch_to_logits(name: str) -> None:
    spec = get_spec(name)
    model = _built(name)
    assert not model.training
    if spec.modality == "text":  # token ids (N, L) with [CLS] first; no Grad-CAM layer on tokens
        ids = torch.randint(0, model.vocab_size, (2, *spec.input_size))
        ids[:, 0] = model.cls_id
        with torch.no_grad():
            assert model(ids).shape == (2, spec.num_classes)
        return
    x = torch.randn(2, 3, *spec.input_size)
    captured = _output_of(model, spec.gradcam_layer, x)
    assert captured["logits"].shape == (2, spec.num_classes)
    # Transformers' Grad-CAM layers hold tokens (N, T, D) or a channels-last grid (N, h, w, C).
    layout = layer_layout(captured["out"], *spec.input_size)
    assert layout is not None, f"Grad-CAM layer {spec.gradcam_layer} of {name} is not spatial: {tuple(captured['out'].shape)}"
    grid = to_channels_first(captured["out"], spec.gradcam_layout or layout, *spec.input_size)
    assert grid.shape[-1] > 1 and grid.shape[-2] > 1, \
        f"Grad-CAM layer {spec.gradcam_layer} of {name} is not spatial: {tuple(captured['out'].shape)}"


@pytest.mark.parametrize("name", list_models())
def test_blocks_cover_every_parameter_exactly_once(name: str) -> None:
    spec = get_spec(name)
    model = _built(name)
    blocks = spec.randomisation_blocks(model)
    assert len(blocks) >= 3
    seen: dict[int, str] = {}
    for block_name, block_modules in check_blocks(model, blocks):
        for module in block_modules:
            for param in module.parameters():
                assert id(param) not in seen, f"{name}: parameter in both {seen[id(param)]} and {block_name}"
                seen[id(param)] = block_name
    assert set(seen) == {id(p) for p in model.parameters()}
    # From the logits down: the first block holds the last linear layer.
    last_linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    assert seen[id(last_linear.weight)] == blocks[0][0]


def test_seeded_build_is_deterministic() -> None:
    spec = get_spec("small_cnn")
    a, b, c = spec.build(seed=1), spec.build(seed=1), spec.build(seed=2)
    for (ka, va), (_, vb), (_, vc) in zip(a.state_dict().items(), b.state_dict().items(), c.state_dict().items()):
        assert torch.equal(va, vb), ka
    assert any(not torch.equal(va, vc) for va, vc in zip(a.state_dict().values(), c.state_dict().values()))


def test_unknown_model_name_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="unknown model 'resnet19'.*resnet18"):
        get_spec("resnet19")


def test_duplicate_registration_raises() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model(lambda: get_spec("small_cnn"))


def test_local_weights_file_round_trip(tmp_path) -> None:
    spec = get_spec("small_cnn")
    trained = spec.build(seed=3)
    path = tmp_path / "small.pt"
    torch.save(trained.state_dict(), path)
    loaded = spec.build(weights=str(path), seed=0)
    for key, value in trained.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_weights_of_the_wrong_architecture_name_the_problem(tmp_path) -> None:
    path = tmp_path / "vgg.pt"
    torch.save(get_spec("vgg_slim").build().state_dict(), path)
    with pytest.raises(WeightsError, match=r"do not fit architecture 'small_cnn'.*missing keys"):
        get_spec("small_cnn").build(weights=str(path))
    wrong_classes = get_spec("small_cnn").with_overrides(num_classes=7).build().state_dict()
    torch.save(wrong_classes, path)
    with pytest.raises(WeightsError, match=r"shape mismatches.*classifier"):
        get_spec("small_cnn").build(weights=str(path))


def test_missing_weights_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(WeightsError, match="weights file not found"):
        get_spec("small_cnn").build(weights=str(tmp_path / "absent.pt"))


def test_torchvision_weights_not_cached_fail_at_once(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(WeightsError, match=r"not in the torch cache \(expected .*resnet18-.*\.pth\).*never downloads"):
        get_spec("resnet18").build(weights="IMAGENET1K_V1")
    with pytest.raises(WeightsError, match="unknown weights 'IMAGENET9K'"):
        get_spec("resnet18").build(weights="IMAGENET9K")


def test_torchvision_weights_load_from_the_cache(tmp_path, monkeypatch) -> None:
    import torchvision

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    spec = get_spec("resnet18")
    reference = spec.build(seed=5)
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    (tmp_path / "checkpoints").mkdir()
    torch.save(reference.state_dict(), tmp_path / "checkpoints" / url.rsplit("/", 1)[-1])
    loaded = spec.build(weights="IMAGENET1K_V1", seed=0)
    assert torch.equal(loaded.fc.weight, reference.fc.weight)


def test_preprocess_resizes_and_normalises() -> None:
    spec: ModelSpec = get_spec("resnet18")
    images = torch.rand(2, 3, 100, 80)
    x = spec.preprocess(images)
    assert x.shape == (2, 3, 224, 224)
    same = torch.rand(1, 3, 224, 224)
    assert torch.allclose(spec.unpreprocess(spec.preprocess(same)), same, atol=1e-6)
    with pytest.raises(ValueError, match="expects RGB images"):
        spec.preprocess(torch.rand(2, 1, 224, 224))
