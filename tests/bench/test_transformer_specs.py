"""Transformer specs: the zoo's ViT, torchvision's ViT-B/Swin-T and timm ViTs by name (never downloaded)."""
from __future__ import annotations

import pytest
import torch

import adapters
from bench.models import get_spec
from metrics.randomisation import check_blocks, randomisation_steps


def _covered_once(model: torch.nn.Module, blocks: list) -> None:
    seen: dict[int, str] = {}
    for name, modules in check_blocks(model, blocks):
        for module in modules:
            for param in module.parameters():
                assert id(param) not in seen, f"parameter in {seen[id(param)]} and {name}"
                seen[id(param)] = name
    assert set(seen) == {id(p) for p in model.parameters()}


def test_vit_slim_blocks_run_from_the_head_down_one_per_encoder_layer():
    spec = get_spec("vit_slim")
    model = spec.build(seed=0)
    names = [name for name, _ in spec.randomisation_blocks(model)]
    assert names == ["head", "encoder_layer_3", "encoder_layer_2", "encoder_layer_1", "encoder_layer_0", "embedding"]
    _covered_once(model, spec.randomisation_blocks(model))


def test_class_token_and_position_embedding_are_randomised_and_restored():
    spec = get_spec("vit_slim")
    model = spec.build(seed=0)
    token, position = model.class_token.detach().clone(), model.encoder.pos_embedding.detach().clone()
    changed = {}
    for name, randomised in randomisation_steps(model, spec.randomisation_blocks(model)):
        changed[name] = (not torch.equal(randomised.class_token, token),
                         not torch.equal(randomised.encoder.pos_embedding, position))
    assert changed["embedding"] == (True, True) and changed["head"] == (False, False)
    assert torch.equal(model.class_token, token) and torch.equal(model.encoder.pos_embedding, position)


def test_vit_slim_head_is_not_zero_initialised():
    """torchvision zero-initialises a ViT's head: every input gradient of a fresh model would be 0."""
    model = get_spec("vit_slim").build(seed=0)
    assert model.heads.head.weight.abs().sum() > 0
    x = torch.randn(2, 3, 64, 64)
    maps = adapters.get("saliency").attribute(model, x, 0)
    assert maps.flatten(1).amax(1).min() > 0


@pytest.mark.parametrize("name, layer", [("vit_b_16", "encoder.layers.encoder_layer_11.ln_1"),
                                         ("vit_b_32", "encoder.layers.encoder_layer_11.ln_1"), ("swin_t", "norm")])
def test_imagenet_transformer_specs_name_a_token_layer(name, layer):
    spec = get_spec(name)
    assert spec.gradcam_layer == layer and spec.input_size == (224, 224)
    assert spec.torchvision_weights is not None, "real weights come from the user's torch cache"


def test_swin_blocks_cover_every_parameter():
    spec = get_spec("swin_t")
    model = spec.build(seed=0)
    blocks = spec.randomisation_blocks(model)
    assert blocks[0][0] == "head" and blocks[-1][0] == "embedding" and len(blocks) == 2 + 12 + 3
    _covered_once(model, blocks)


def test_timm_vit_by_name_random_init_never_downloaded():
    pytest.importorskip("timm", reason="timm is an optional extra (pip install -e .[timm])")
    spec = get_spec("timm/deit_tiny_patch16_224")
    assert spec.input_size == (224, 224) and spec.gradcam_layer == "blocks.11.norm1"
    model = spec.with_overrides(num_classes=3, input_size=(32, 32)).build(seed=0)
    assert not model.training
    blocks = spec.randomisation_blocks(model)
    assert [b for b, _ in blocks][:2] == ["head", "block_11"] and blocks[-1][0] == "embedding"
    _covered_once(model, blocks)
    assert get_spec("timm/deit_tiny_patch16_224") is spec, "resolved once"


def test_timm_names_that_are_not_vits_or_unknown_are_clear_errors():
    pytest.importorskip("timm", reason="timm is an optional extra (pip install -e .[timm])")
    with pytest.raises(KeyError, match="timm has no model 'no_such_net'"):
        get_spec("timm/no_such_net")
    with pytest.raises(KeyError, match="not a ViT-style model"):
        get_spec("timm/resnet18")


def test_a_local_weights_file_loads_into_a_timm_vit(tmp_path):
    timm = pytest.importorskip("timm", reason="timm is an optional extra (pip install -e .[timm])")
    spec = get_spec("timm/deit_tiny_patch16_224")
    trained = timm.create_model("deit_tiny_patch16_224", pretrained=False, num_classes=1000)
    path = tmp_path / "deit.pt"
    torch.save(trained.state_dict(), path)
    loaded = spec.build(str(path), seed=123)
    assert torch.equal(loaded.head.weight, trained.head.weight)
