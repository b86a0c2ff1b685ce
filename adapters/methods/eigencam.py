"""Eigen-CAM (Muhammad and Yeasin, IJCNN 2020) on the Grad-CAM layer, upsampled to the input."""
from __future__ import annotations

import torch
from torch import Tensor

from ..cam_family import SinglePassCamMethod
from ..registry import register


def principal_projection(activations: Tensor) -> tuple[Tensor, Tensor]:
    """Per image, the (h*w, C) activation matrix centred per channel, projected onto its first
    right-singular vector: returns (projection (N, 1, h, w), loadings (N, C)), both with the SVD's
    arbitrary sign. Computed in float64 (NaN activations read as 0, as pytorch-grad-cam does)."""
    n, c, h, w = activations.shape
    a = activations.double()
    a = torch.where(torch.isnan(a), torch.zeros_like(a), a)
    matrix = a.reshape(n, c, h * w).transpose(1, 2)  # (N, hw, C)
    centred = matrix - matrix.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    loadings = vh[:, 0, :]  # (N, C)
    projection = (centred @ loadings.unsqueeze(-1)).reshape(n, 1, h, w)
    return projection, loadings


def orientation(projection: Tensor, loadings: Tensor) -> Tensor:
    """+1 or -1 per image (N,): the sign that makes the projection's largest-magnitude value positive
    (flip when |min| > |max|); an exact tie goes to the sign that makes the loadings sum positive,
    then to +1."""
    flat = projection.flatten(1)
    sign = (flat.amax(dim=1) + flat.amin(dim=1)).sign()
    sign = torch.where(sign == 0, loadings.sum(dim=1).sign(), sign)
    return torch.where(sign == 0, torch.ones_like(sign), sign)


@register("eigencam")
class EigenCamMethod(SinglePassCamMethod):
    """Eigen-CAM: ReLU of each image's layer activations projected onto their first principal
    component: the (h*w, C) matrix of A, centred per channel over the grid, times its first
    right-singular vector v (pytorch-grad-cam 1.5.5's ``get_2d_projection``, which Eigen-CAM uses).
    No gradients and no target: the map is class-agnostic (``target`` is validated and ignored).

    Sign (a defect of the reference): an SVD's singular vectors are defined up to sign, and
    pytorch-grad-cam's Eigen-CAM takes whatever LAPACK returns, so its maps come out inverted
    depending on the backend (pytorch-grad-cam issue #315; the ReLU then keeps the wrong side).
    Here each image's projection is oriented so that its largest-magnitude value is positive (flip
    when |min| > |max|; pytorch-grad-cam's own ``get_2d_projection_with_sign_correction``, which only
    its Seg-Eigen-CAM uses): the strongest response survives the ReLU. An exact tie takes the sign
    that makes the loadings sum positive. Orienting by the loadings alone (the map correlating with
    the summed activations) was rejected: on a transformer's layer norm every token's channels sum
    to the same value, so that sum is rounding noise. The result is deterministic and
    backend-independent wherever the first singular value is simple; it equals pytorch-grad-cam's
    projection up to that per-image sign (tested, including images whose reference sign is the
    other one). The SVD runs in float64, batched over the images.

    Layer, layout, upsampling and memory knob as for ``gradcam``. Cost: 1 forward per image, no
    backward.
    """

    uses_gradients = False

    def coarse_map(self, activations: Tensor, gradients: Tensor | None) -> Tensor:
        projection, loadings = principal_projection(activations)
        return (projection * orientation(projection, loadings).view(-1, 1, 1, 1)).to(activations.dtype)
