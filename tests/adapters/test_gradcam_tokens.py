"""Grad-CAM on transformers: the automatic layer is a late token layer (not the patch embedding),
tokens are put on the patch grid, and the maps equal pytorch-grad-cam's with its reshape_transform."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import adapters
from adapters.layers import auto_layer
from adapters.maps import upsample

from gradcam_oracle import nhwc_reshape, reference_cam, vit_reshape


def tiny_vit(seed: int = 0, layers: int = 2) -> nn.Module:
    torch.manual_seed(seed)
    model = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=layers, num_heads=2,
                                                 hidden_dim=16, mlp_dim=32, num_classes=5)
    model.heads.head.reset_parameters()  # torchvision zero-initialises it: every gradient would be 0
    return model.eval()


def tiny_swin(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return torchvision.models.SwinTransformer(patch_size=[4, 4], embed_dim=8, depths=[1, 1], num_heads=[2, 2],
                                              window_size=[2, 2], num_classes=5).eval()


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))


def test_auto_layer_on_a_vit_is_the_last_blocks_first_norm_not_the_patch_embedding(x):
    model = tiny_vit(layers=3)
    assert auto_layer(model, x) == "encoder.layers.encoder_layer_2.ln_1"
    method = adapters.get("gradcam")
    maps = method.attribute(model, x, torch.tensor([0, 1, 2]))
    assert method.diagnostics["layer"] == "encoder.layers.encoder_layer_2.ln_1"
    assert method.diagnostics["layout"] == "tokens" and method.diagnostics["grid"] == (4, 4)
    assert maps.shape == (3, 1, 32, 32) and (maps >= 0).all()
    assert maps.flatten(1).std(dim=1).min() > 0, "a non-constant map for every image"


def test_vit_gradcam_equals_pytorch_grad_cam_with_its_reshape_transform(x):
    model = tiny_vit()
    target = torch.tensor([4, 0, 2])
    layer = "encoder.layers.encoder_layer_1.ln_1"
    ours = adapters.get("gradcam", layer=layer, upsample="nearest").attribute(model, x, target)
    reference = reference_cam("GradCAM", model, layer, x, target, vit_reshape(1, 4, 4))
    torch.testing.assert_close(ours, upsample(reference, (32, 32), "nearest"), rtol=1e-4, atol=1e-6)


def test_last_block_output_gives_the_patch_tokens_no_gradient(x):
    """Why the automatic layer is the last block's first norm: past the last attention, only the
    class token reaches the head, so Grad-CAM on the last block's output is zero everywhere."""
    maps = adapters.get("gradcam", layer="encoder.layers.encoder_layer_1").attribute(tiny_vit(), x, 0)
    assert maps.abs().max() == 0


def test_swin_channels_last_grid_equals_pytorch_grad_cam(x):
    model = tiny_swin()
    target = torch.tensor([1, 3, 0])
    method = adapters.get("gradcam", layer="norm", upsample="nearest")
    ours = method.attribute(model, x, target)
    assert method.diagnostics["layout"] == "nhwc" and method.diagnostics["grid"] == (4, 4)
    reference = reference_cam("GradCAM", model, "norm", x, target, nhwc_reshape)
    torch.testing.assert_close(ours, upsample(reference, (32, 32), "nearest"), rtol=1e-4, atol=1e-6)
    assert auto_layer(model, x).endswith("norm1"), "the last Swin block's first norm feeds its attention"


def test_timm_vit_auto_layer_and_maps(x):
    timm = pytest.importorskip("timm", reason="timm is an optional extra (pip install -e .[timm])")
    torch.manual_seed(0)
    model = timm.models.vision_transformer.VisionTransformer(img_size=32, patch_size=8, embed_dim=16, depth=2,
                                                             num_heads=2, num_classes=5).eval()
    assert auto_layer(model, x) == "blocks.1.norm1"
    target = torch.tensor([0, 1, 2])
    ours = adapters.get("gradcam", upsample="nearest").attribute(model, x, target)
    reference = reference_cam("GradCAM", model, "blocks.1.norm1", x, target, vit_reshape(1, 4, 4))
    torch.testing.assert_close(ours, upsample(reference, (32, 32), "nearest"), rtol=1e-4, atol=1e-6)


def test_a_layer_that_is_not_a_grid_is_a_clear_error(x):
    with pytest.raises(adapters.AttributionError, match="neither a .N, C, h, w. feature map nor tokens"):
        adapters.get("gradcam", layer="heads").attribute(tiny_vit(), x, 0)
    with pytest.raises(adapters.AttributionError, match="layout must be"):
        adapters.get("gradcam", layout="chw")
