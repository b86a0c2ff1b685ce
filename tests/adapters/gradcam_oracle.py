"""pytorch-grad-cam (``pip install grad-cam``) as a test oracle: its raw per-layer CAMs, before its
min-max scaling and OpenCV resize, so that they can be compared with ours exactly."""
from __future__ import annotations

import copy
from typing import Callable

import pytest
import torch
from torch import Tensor, nn


def reference_cam(cam_class_name: str, model: nn.Module, layer_name: str, x: Tensor, target: Tensor,
                  reshape_transform: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """(N, 1, h, w) of pytorch-grad-cam's ``cam_class_name`` (e.g. ``"GradCAM"``) on ``layer_name``:
    its ``get_cam_image`` after the ReLU it applies, at the layer's resolution. Runs on a deep copy
    (the reference backpropagates into the parameters' ``.grad``)."""
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = copy.deepcopy(model)
    layer = model.get_submodule(layer_name)
    cam = getattr(pgc, cam_class_name)(model=model, target_layers=[layer], reshape_transform=reshape_transform)
    try:
        targets = [ClassifierOutputTarget(int(t)) for t in target]
        outputs = cam.activations_and_grads(x)
        model.zero_grad()
        loss = sum(t(o) for t, o in zip(targets, outputs))
        loss.backward(retain_graph=True)
        activations = cam.activations_and_grads.activations[0].numpy()
        gradients = cam.activations_and_grads.gradients[0].numpy()
        raw = cam.get_cam_image(x, layer, targets, activations, gradients, eigen_smooth=False)
    finally:
        cam.activations_and_grads.release()
    return torch.from_numpy(raw).float().clamp(min=0).unsqueeze(1)


def vit_reshape(prefix: int, h: int, w: int) -> Callable[[Tensor], Tensor]:
    """pytorch-grad-cam's ViT ``reshape_transform``: drop the prefix tokens, tokens to (N, D, h, w)."""
    def reshape(tokens: Tensor) -> Tensor:
        return tokens[:, prefix:].reshape(tokens.shape[0], h, w, tokens.shape[2]).permute(0, 3, 1, 2)
    return reshape


def nhwc_reshape(grid: Tensor) -> Tensor:
    """pytorch-grad-cam's Swin ``reshape_transform`` for an (N, h, w, C) output."""
    return grid.permute(0, 3, 1, 2)
