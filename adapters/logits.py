"""Non-finite logits: noticed during a method's own model passes, then named image by image.

A model whose logits are NaN or infinite makes every attribution meaningless, and the symptom
varies by method: NaN maps, maps that are silently zero (``torch.where`` and ``masked_fill`` pass
no gradient through the bad rows), or an error from deep inside lime's regression. Checking the
logits of ``x`` up front would cost a full forward pass per call, which the benchmarks would count
against every method. Instead :class:`LogitsWatch` hooks the model's output during the method's own
passes and keeps one device-side flag (a reduction over the (rows, K) logits, no synchronisation);
only when it is raised does :func:`non_finite_images` run one no-grad forward of ``x`` to say which
images are at fault.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .errors import AttributionError


class LogitsWatch:
    """``with LogitsWatch(model) as watch: ...``; afterwards ``watch.saw_non_finite``.

    The hook sits on the model itself (its output is the logits) and is removed on exit, so the
    model is left with exactly the hooks it had.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._flag: Tensor | None = None
        self._handle: Any = None

    def _hook(self, _module: nn.Module, _inputs: object, output: object) -> None:
        if isinstance(output, Tensor) and output.is_floating_point():
            bad = ~torch.isfinite(output.detach()).all()
            # Out of place: under inference_mode (lime) the result is an inference tensor.
            self._flag = bad if self._flag is None else torch.logical_or(self._flag, bad)

    def __enter__(self) -> "LogitsWatch":
        self._handle = self.model.register_forward_hook(self._hook)
        return self

    def __exit__(self, *_: object) -> None:
        self._handle.remove()

    @property
    def saw_non_finite(self) -> bool:
        return self._flag is not None and bool(self._flag)


def non_finite_images(model: nn.Module, x: Tensor, rows: int) -> list[int]:
    """Indices of the images of ``x`` (N, C, H, W) whose logits are not all finite, by no-grad
    forwards of ``rows`` images at a time."""
    bad: list[int] = []
    with torch.no_grad():
        for start in range(0, len(x), rows):
            logits = model(x[start:start + rows])
            rows_bad = (~torch.isfinite(logits)).flatten(1).any(dim=1)
            bad.extend(start + int(i) for i in rows_bad.nonzero().flatten().tolist())
    return bad


def logits_error(images: list[int]) -> AttributionError:
    """The one message for a model whose logits are not finite on the given images."""
    shown = ", ".join(str(i) for i in images[:20]) + (", ..." if len(images) > 20 else "")
    return AttributionError(f"the model's output (logits) is not finite (NaN or inf) for images [{shown}]: "
                            "the attribution would be meaningless")
