"""Vision transformers: the zoo's slim ViT, torchvision's ViT-B and Swin-T, and any timm ViT by name.

Randomisation blocks follow the architecture: the head (final norm and classifier) first, then one
block per encoder layer from the last down, then the embedding (patch projection, class token,
position embedding), so every parameter is in exactly one block. The Grad-CAM layer is the last
block's first layer norm, as in pytorch-grad-cam's ViT tutorial: the last block's output reaches
the head only through the class token, so its patch tokens get no gradient there.
"""
from __future__ import annotations

from functools import partial

import torchvision.models as tvm
from torch import nn
from torchvision.models.vision_transformer import ConvStemConfig, VisionTransformer

from .blocks import Block
from .registry import register_model, register_resolver
from .spec import ModelSpec

#: The zoo's ViT: 64x64 input, a 3-convolution stem (stride 8 -> 8x8 patch tokens + class token).
#: A convolutional stem trains far faster on two CPU cores than a plain patch embedding (measured:
#: 0.93 held-out after 6 epochs of 12000 images against 0.54 after 9 for a patch-8 embedding).
VIT_SLIM = dict(image_size=64, patch_size=8, num_layers=4, num_heads=4, hidden_dim=64, mlp_dim=128)
VIT_SLIM_STEM = (16, 32, 64)


def torchvision_vit_blocks(num_layers: int) -> tuple[Block, ...]:
    """Blocks of a torchvision ``VisionTransformer`` with ``num_layers`` encoder layers."""
    layers = tuple(Block(f"encoder_layer_{i}", (f"encoder.layers.encoder_layer_{i}",))
                   for i in reversed(range(num_layers)))
    embedding = Block("embedding", ("conv_proj", "class_token", "encoder.pos_embedding"))
    return (Block("head", ("encoder.ln", "heads")), *layers, embedding)


def _vit_slim(num_classes: int) -> nn.Module:
    stem = [ConvStemConfig(out_channels=c, kernel_size=3, stride=2) for c in VIT_SLIM_STEM]
    model = VisionTransformer(**VIT_SLIM, num_classes=num_classes, conv_stem_configs=stem)
    # torchvision zero-initialises the head: every input gradient of a fresh model would be zero,
    # and the randomisation checks' re-initialised head would be constant. Draw it like a linear layer.
    model.heads.head.reset_parameters()
    return model


@register_model
def vit_slim() -> ModelSpec:
    layers = VIT_SLIM["num_layers"]
    return ModelSpec(name="vit_slim", builder=_vit_slim, family="vit", num_classes=4, input_size=(64, 64),
                     gradcam_layer=f"encoder.layers.encoder_layer_{layers - 1}.ln_1",
                     blocks=torchvision_vit_blocks(layers),
                     description=f"ViT, {layers} layers x {VIT_SLIM['num_heads']} heads, width "
                                 f"{VIT_SLIM['hidden_dim']}, conv stem to 8x8 patches (zoo variant)")


def _torchvision_vit(name: str, weights_enum: str, num_layers: int) -> ModelSpec:
    builder = getattr(tvm, name)
    return ModelSpec(name=name, builder=lambda k, b=builder: b(weights=None, num_classes=k), family="vit",
                     gradcam_layer=f"encoder.layers.encoder_layer_{num_layers - 1}.ln_1",
                     blocks=torchvision_vit_blocks(num_layers), torchvision_weights=weights_enum)


register_model(partial(_torchvision_vit, "vit_b_16", "ViT_B_16_Weights", 12))
register_model(partial(_torchvision_vit, "vit_b_32", "ViT_B_32_Weights", 12))

SWIN_T_DEPTHS = (2, 2, 6, 2)


def swin_blocks(depths: tuple[int, ...]) -> tuple[Block, ...]:
    """torchvision Swin: ``features.0`` embeds patches, odd ``features.k`` are stages of Swin blocks,
    even ones (from 2) merge patches; then ``norm`` and ``head``."""
    blocks: list[Block] = []
    for stage, depth in enumerate(depths):
        index = 2 * stage + 1
        if stage:
            blocks.append(Block(f"patch_merging_{stage}", (f"features.{index - 1}",)))
        blocks += [Block(f"stage_{stage + 1}_block_{j}", (f"features.{index}.{j}",)) for j in range(depth)]
    blocks.insert(0, Block("embedding", ("features.0",)))
    return (Block("head", ("norm", "head")), *reversed(blocks))


@register_model
def swin_t() -> ModelSpec:
    # The final norm's output is the (N, 7, 7, 768) channels-last grid the head pools over.
    return ModelSpec(name="swin_t", builder=lambda k: tvm.swin_t(weights=None, num_classes=k), family="swin",
                     gradcam_layer="norm", blocks=swin_blocks(SWIN_T_DEPTHS), torchvision_weights="Swin_T_Weights",
                     gradcam_layout="nhwc")


def timm_blocks(model: nn.Module) -> tuple[Block, ...]:
    """Blocks of a timm ``VisionTransformer``: head norms and classifier, ``blocks.i`` from the last
    down, then the patch embedding with the class/distillation/register tokens and position embedding."""
    own = dict(model.named_parameters(recurse=False))
    children = dict(model.named_children())
    head = tuple(n for n in ("norm", "fc_norm", "head_drop", "head", "head_dist") if n in children
                 and any(True for _ in children[n].parameters()))
    layers = tuple(Block(f"block_{i}", (f"blocks.{i}",)) for i in reversed(range(len(model.blocks))))
    embedding = ("patch_embed", *(n for n in ("norm_pre",) if n in children and any(True for _ in children[n].parameters())),
                 *sorted(own))
    return (Block("head", head), *layers, Block("embedding", embedding))


def timm_spec(name: str) -> ModelSpec:
    """A spec for ``timm/<model name>`` (any timm ViT or DeiT): random init or a local weights file,
    never downloaded (``pretrained=False``). Needs the optional extra: ``pip install -e .[timm]``."""
    try:
        import timm
    except ImportError:
        raise KeyError(f"model {name!r} needs timm, an optional extra: pip install -e '.[timm]'") from None
    arch = name.split("/", 1)[1]
    if arch not in timm.list_models():
        raise KeyError(f"timm has no model {arch!r} (timm {timm.__version__}); e.g. deit_tiny_patch16_224")
    probe = timm.create_model(arch, pretrained=False, num_classes=2)
    if not hasattr(probe, "blocks") or not hasattr(probe, "patch_embed"):
        raise KeyError(f"timm model {arch!r} is not a ViT-style model (blocks + patch_embed); only ViT/DeiT "
                       f"families are supported")
    config = getattr(probe, "pretrained_cfg", {}) or {}
    size = tuple(config.get("input_size", (3, 224, 224))[1:])
    depth = len(probe.blocks)
    return ModelSpec(name=name, builder=lambda k: timm.create_model(arch, pretrained=False, num_classes=k),
                     family="vit", input_size=size, mean=tuple(config.get("mean", (0.485, 0.456, 0.406))),
                     std=tuple(config.get("std", (0.229, 0.224, 0.225))), gradcam_layer=f"blocks.{depth - 1}.norm1",
                     blocks=timm_blocks(probe), description=f"timm {arch} (timm {timm.__version__}), no download")


register_resolver("timm/", timm_spec)
