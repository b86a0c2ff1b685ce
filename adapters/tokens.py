"""Token layouts of vision transformers: which tokens are patches, and how they tile the image.

A ViT turns an (H, W) image into ``prefix`` extra tokens (class token, distillation token,
registers) followed by an h x w grid of patch tokens in row-major order, each patch H/h x W/w
pixels. Swin keeps the grid as (N, h, w, C) ("nhwc"). These helpers recover the grid from the
shapes alone, so that token maps and token activations can be treated like a CNN's feature maps.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from .errors import AttributionError

#: Most prefix tokens looked for in front of the patches (class + distillation + a few registers).
MAX_PREFIX = 16
#: Layouts of a layer's output: channels first (CNN), channels last (Swin) or a token sequence (ViT).
LAYOUTS = ("nchw", "nhwc", "tokens")


@dataclass(frozen=True)
class TokenGrid:
    """``prefix`` leading non-patch tokens, then an ``h`` x ``w`` grid of patches."""

    prefix: int
    h: int
    w: int

    @property
    def n_patches(self) -> int:
        return self.h * self.w


def token_grid(n_tokens: int, height: int, width: int) -> TokenGrid | None:
    """The grid that ``n_tokens`` tokens of an (height, width) input form, or None if none fits.

    The patch tokens must tile the input exactly: h divides ``height``, w divides ``width`` and the
    patches are square (height / h == width / w). The fewest prefix tokens that fit win (a 65-token
    sequence of a 64x64 input is a class token and 8x8 patches of 8 px).
    """
    for prefix in range(0, min(MAX_PREFIX, n_tokens - 1) + 1):
        patches = n_tokens - prefix
        for h in range(1, height + 1):
            if patches % h or height % h:
                continue
            w = patches // h
            if width % w == 0 and height // h == width // w:
                return TokenGrid(prefix, h, w)
    return None


def require_grid(n_tokens: int, height: int, width: int, what: str) -> TokenGrid:
    """:func:`token_grid`, or an AttributionError naming ``what`` had the tokens."""
    grid = token_grid(n_tokens, height, width)
    if grid is None:
        raise AttributionError(f"{what} has {n_tokens} tokens, which do not tile a {height}x{width} input as "
                               f"square patches after at most {MAX_PREFIX} prefix tokens")
    return grid


def patch_map(values: Tensor, height: int, width: int, what: str = "the token map") -> Tensor:
    """(N, T) per-token values -> (N, 1, h, w) over the patch grid (prefix tokens dropped)."""
    grid = require_grid(values.shape[-1], height, width, what)
    return values[:, grid.prefix:].reshape(values.shape[0], 1, grid.h, grid.w)


def layer_layout(output: Tensor | tuple[int, ...], height: int, width: int) -> str | None:
    """Which of :data:`LAYOUTS` a layer's output (or its shape) has for an (height, width) input, or None.

    3-D (N, T, D) is "tokens" when T tiles the input. 4-D is "nchw" unless only the channels-last
    reading tiles the input with square patches (Swin's (N, h, w, C)); when both readings fit
    (C == h), channels first wins: pass the layout explicitly for such a model.
    """
    shape = tuple(output.shape) if isinstance(output, Tensor) else tuple(output)
    if len(shape) == 3:
        return "tokens" if token_grid(shape[1], height, width) else None
    if len(shape) != 4:
        return None

    def tiles(h: int, w: int) -> bool:
        return height % h == 0 and width % w == 0 and height // h == width // w
    if tiles(*shape[2:]) or not tiles(*shape[1:3]):
        return "nchw"
    return "nhwc"


def to_channels_first(output: Tensor, layout: str, height: int, width: int, what: str = "the layer") -> Tensor:
    """A layer's output in ``layout`` -> (N, C, h, w) over the patch grid (prefix tokens dropped)."""
    if layout == "nchw":
        return output
    if layout == "nhwc":
        return output.permute(0, 3, 1, 2)
    if layout == "tokens":
        grid = require_grid(output.shape[1], height, width, what)
        patches = output[:, grid.prefix:]
        return patches.transpose(1, 2).reshape(output.shape[0], output.shape[2], grid.h, grid.w)
    raise AttributionError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
