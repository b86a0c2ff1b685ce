"""Removal curves: pixel flipping, region perturbation, selectivity and IROF.

Each removes features of the image cumulatively, most relevant first (pixel positions, square
blocks or superpixels; all channels of a pixel together, ties broken by ``seed``), fills them from
a substrate and reads the model after every step. All (image, step) pairs are built on the model's
device and evaluated in batches that span images and steps (:mod:`metrics.perturb`), and nothing
is normalised across images.

Quantus 0.6 computes the same curves but (i) flattens C*H*W so that a pixel-flipping "feature" is
one channel of one pixel, (ii) takes "black" to mean the image's minimum, (iii) integrates with
dx=1, so its areas grow with the number of steps, (iv) fills IROF's segments with the scalar mean of
the whole current batch (a score then depends on the other images), and (v) leaves out the
curves' first point (the clean image). The tests show each of these next to our choice.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from adapters.segmentation import Segmenter

from ..outputs import class_score, score_classes, score_param, target_class_param
from ..params import Choice, Float, Int, Substrate
from ..perturb import clean_logits, evaluate_pairs, rows_per_chunk, trapezoid_auc
from ..ranking import rank_pixels, rank_positions
from ..registry import MetricResult, as_scores, register
from ..validation import MetricInputError, check_attributions, check_model_inputs
from .deletion_insertion import BLUR, SUBSTRATES, causal_curves, make_substrate

# A block wider than any image the harness runs is a typo; 100 regions (Samek et al.'s and Quantus's
# default) at 8 x 8 px cover an eighth of a 224 px image.
PATCH = Int(8, low=1, high=1024)
_BLOCK_PARAMS = {"patch_size": PATCH, "substrate": Substrate("zeros", SUBSTRATES), "score": score_param("probability"),
                 "target_class": target_class_param("target")}


def _fill(x: Tensor, substrate: str | Tensor) -> Tensor:
    return make_substrate(x, substrate, BLUR["blur_kernel"].default, BLUR["blur_sigma"].default)


@register("pixel_flipping", category="faithfulness", direction="lower",
          params={"n_steps": Int(32, low=1, high=2**16), "substrate": Substrate("zeros", SUBSTRATES),
                  "score": score_param("probability"), "target_class": target_class_param("target")})
def pixel_flipping(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor, seed: int = 0,
                   device_budget_bytes: int | None = None, n_steps: int = 32, substrate: str | Tensor = "zeros",
                   score: str = "probability", target_class: str = "target") -> MetricResult:
    """Pixel flipping (Bach et al. 2015): the most relevant pixel positions are replaced by the
    substrate cumulatively, k = 0, HW/S, ..., HW, and the class score is read after every step.

    Definition: curve f_c(x^(k)) over the fraction of pixels flipped (both endpoints), score = its
    trapezoid area on [0, 1]. Lower is better. It is deletion (RISE) read on the given class
    (``target_class="target"``, as Bach et al. and Quantus do); ``deletion`` reads the clean
    prediction. Scores (N,), never NaN; curves (N, n_steps + 1). No closed bounds (``score="logit"``).

    Quantus ``PixelFlipping``: a feature is one channel value (C*H*W features, so a step can flip
    part of a pixel), "black" is the image minimum, the curve has no clean point and its AUC is
    ``np.trapz(dx=1)`` (it grows with the number of steps). With a grayscale image, the image minimum
    as substrate and ``features_in_step = H*W / n_steps``, its curve is ours without the first point.
    Cost: n_steps forward passes per image, plus the clean pass.
    """
    return causal_curves(model, x, target, attributions, insert=False, seed=seed,
                         device_budget_bytes=device_budget_bytes, n_steps=n_steps, substrate=substrate,
                         blur_kernel=BLUR["blur_kernel"].default, blur_sigma=BLUR["blur_sigma"].default,
                         score=score, target_class=target_class)


def block_ids(height: int, width: int, patch_size: int, device: torch.device | str = "cpu") -> tuple[Tensor, int]:
    """The block of every pixel position, (H*W,) long, and the number of blocks.

    Blocks are patch_size x patch_size squares on a grid centred as Quantus pads the image (the
    remainder split floor/ceil between the two sides), so blocks at the border are cut by the image.
    """
    def axis(size: int) -> tuple[Tensor, int]:
        pad = (-size) % patch_size
        return (torch.arange(size, device=device) + pad // 2) // patch_size, (size + pad) // patch_size

    rows, n_rows = axis(height)
    cols, n_cols = axis(width)
    return (rows.view(-1, 1) * n_cols + cols.view(1, -1)).flatten(), n_rows * n_cols


def block_ranks(attributions: Tensor, patch_size: int, seed: int) -> tuple[Tensor, int]:
    """Rank (0 = most relevant) of the block of every pixel, (N, 1, H, W), blocks ranked by their
    summed attribution with ties broken by ``seed``; and the number of blocks."""
    n, _, h, w = attributions.shape
    ids, n_blocks = block_ids(h, w, patch_size, attributions.device)
    sums = attributions.new_zeros(n, n_blocks, dtype=torch.float64).index_add_(1, ids, attributions.flatten(1).double())
    ranks = rank_positions(rank_pixels(sums, seed))
    return ranks[:, ids].view(n, 1, h, w), n_blocks


def block_curves(model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor, *, n_removed: int | None,
                 seed: int, device_budget_bytes: int | None, patch_size: int, substrate: str | Tensor,
                 score: str, target_class: str) -> tuple[Tensor, Tensor, Tensor]:
    """Class scores after removing the k most relevant blocks, k = 0..L (L = ``n_removed``, at most
    the number of blocks; None: all): (N, L + 1), the clean image first; with the classes (N,) and
    the number of blocks B (0-d)."""
    target = check_model_inputs(model, x, target)
    attributions = check_attributions(attributions, x)
    n, _, h, w = x.shape
    if patch_size > max(h, w):
        raise MetricInputError(f"patch_size ({patch_size}) exceeds the image ({h} x {w})")
    chunk = rows_per_chunk(model, x, device_budget_bytes)
    logits = clean_logits(model, x, chunk)
    classes = score_classes(logits, target, target_class)
    fill = _fill(x, substrate)
    ranks, n_blocks = block_ranks(attributions, patch_size, seed)
    steps = n_blocks if n_removed is None else min(n_removed, n_blocks)

    def build(images: Tensor, k: Tensor) -> Tensor:
        return torch.where(ranks[images] <= k.view(-1, 1, 1, 1), fill[images], x[images])  # k + 1 blocks removed

    def read(logits: Tensor, images: Tensor) -> Tensor:
        return class_score(logits, classes[images], score)

    perturbed = evaluate_pairs(model, n, steps, build, read, chunk, x.device)
    clean = class_score(logits, classes, score).unsqueeze(1)
    return torch.cat([clean, perturbed], dim=1), classes, torch.tensor(n_blocks)


@register("region_perturbation", category="faithfulness", direction="higher",
          params={"n_regions": Int(100, low=1, high=2**16), **_BLOCK_PARAMS})
def region_perturbation(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor, seed: int = 0,
                        device_budget_bytes: int | None = None, n_regions: int = 100, patch_size: int = 8,
                        substrate: str | Tensor = "zeros", score: str = "probability",
                        target_class: str = "target") -> MetricResult:
    """Region perturbation, most relevant first (Samek et al. 2016): AOPC, the area over the
    perturbation curve.

    The image is cut into patch_size x patch_size blocks ranked by their summed attribution; the
    L = min(n_regions, number of blocks) most relevant are replaced by the substrate one after the
    other, and AOPC = 1/(L+1) sum_{k=0}^{L} (f_c(x) - f_c(x^(k))). Higher is better. Samek et al.
    perturb 9 x 9 regions around the most relevant pixels with uniform noise; non-overlapping
    blocks (as in Quantus) make the steps disjoint. Scores (N,), never NaN; curves (N, L + 1) of
    f_c(x) - f_c(x^(k)) over k (curve_x = k), extras ``n_blocks``.

    Quantus ``RegionPerturbation`` returns the drops for k = 1..L (our curve without its first
    point, equal on the same substrate); its ``get_auc_score`` is a dx=1 trapezoid of them, not
    the AOPC of the paper. Cost: L forward passes per image, plus the clean pass.
    """
    curves, classes, n_blocks = block_curves(model, x, target, attributions, n_removed=n_regions, seed=seed,
                                             device_budget_bytes=device_budget_bytes, patch_size=patch_size,
                                             substrate=substrate, score=score, target_class=target_class)
    drops = curves[:, :1] - curves
    return MetricResult(scores=as_scores(drops.double().mean(1)), curves=as_scores(drops),
                        curve_x=torch.arange(drops.shape[1], dtype=torch.float32),
                        extras={"classes": classes.cpu(), "n_blocks": int(n_blocks)})


@register("selectivity", category="faithfulness", direction="lower", params=_BLOCK_PARAMS)
def selectivity(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor, seed: int = 0,
                device_budget_bytes: int | None = None, patch_size: int = 8, substrate: str | Tensor = "zeros",
                score: str = "probability", target_class: str = "target") -> MetricResult:
    """Selectivity (Montavon et al. 2018): remove every patch_size x patch_size block, most relevant
    (summed attribution) first, and integrate the class score.

    Definition: curve f_c(x^(k)) for k = 0..B blocks removed, over the fraction k / B; score = its
    trapezoid area on [0, 1]. Lower is better (a sharp drop). Scores (N,), never NaN; curves
    (N, B + 1). No closed bounds (``score="logit"``).

    Quantus ``Selectivity`` returns the curve for k = 1..B and ``get_auc_score`` integrates it with
    dx=1: the area grows with the number of blocks (4x for half the patch size). Cost: B forward
    passes per image (784 at 224 px with 8 px blocks), plus the clean pass.
    """
    curves, classes, n_blocks = block_curves(model, x, target, attributions, n_removed=None, seed=seed,
                                             device_budget_bytes=device_budget_bytes, patch_size=patch_size,
                                             substrate=substrate, score=score, target_class=target_class)
    curve_x = torch.arange(curves.shape[1], dtype=torch.float64, device=curves.device) / (curves.shape[1] - 1)
    return MetricResult(scores=as_scores(trapezoid_auc(curves.double(), curve_x)), curves=as_scores(curves),
                        curve_x=curve_x.float().cpu(), extras={"classes": classes.cpu(), "n_blocks": int(n_blocks)})


def segment_ranks(segments: Tensor, attributions: Tensor, seed: int) -> tuple[Tensor, Tensor]:
    """Rank (0 = most relevant) of every pixel's superpixel, (N, 1, H, W), superpixels ranked by
    their mean attribution, ties broken by ``seed``; and the number of superpixels per image (N,).

    segments: (N, H, W) labels 0..K_i-1. Each image is ranked on its own (the tie-break permutation
    has K_i entries), so an image's ranks never depend on how many superpixels its batch-mates have.
    """
    n, _, h, w = attributions.shape
    labels = segments.flatten(1)
    counts = labels.amax(1) + 1
    # Every image's superpixels numbered after the previous images': one sum and one count for all.
    offsets = torch.cumsum(counts, 0) - counts
    ids = (labels + offsets[:, None]).flatten()
    total = int(counts.sum())
    sums = torch.zeros(total, dtype=torch.float64, device=labels.device).index_add_(0, ids, attributions.flatten().double())
    means = sums / torch.bincount(ids, minlength=total).double()
    # Images with the same K share the tie-break permutation: rank them together.
    segment_rank = torch.empty(total, dtype=torch.long, device=labels.device)
    for k in counts.unique().tolist():
        images = (counts == k).nonzero().flatten()
        positions = offsets[images, None] + torch.arange(k, device=labels.device)
        segment_rank[positions] = rank_positions(rank_pixels(means[positions], seed))
    return segment_rank[ids].view(n, 1, h, w), counts


@register("irof", category="faithfulness", direction="higher",
          params={"n_segments": Int(100, low=1, high=4096), "compactness": Float(10.0, low=0.0, open_low=True),
                  "sigma": Float(0.0, low=0.0, high=100.0), "segmentation_input": Choice("minmax", ("minmax", "raw")),
                  "substrate": Substrate("mean", SUBSTRATES), "target_class": target_class_param("target")})
def irof(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor, seed: int = 0,
         device_budget_bytes: int | None = None, n_segments: int = 100, compactness: float = 10.0, sigma: float = 0.0,
         segmentation_input: str = "minmax", substrate: str | Tensor = "mean",
         target_class: str = "target") -> MetricResult:
    """IROF, iterative removal of features (Rieger & Hansen 2020): the area over the curve of the
    relative class probability while superpixels are removed, most relevant first.

    Superpixels: scikit-image SLIC (``n_segments``, ``compactness``, ``sigma``; the segmenter of
    :mod:`adapters.segmentation`) on each image rescaled to [0, 1] (``"minmax"``) or as given
    (``"raw"``, Quantus). They are ranked by their mean attribution and replaced by the substrate
    (default: each image's channel means) one after the other, k = 0..K. Definition: y_k =
    p_c(x^(k)) / p_c(x), score = 1 - trapezoid area of y over k / K in [0, 1]. Higher is better; at
    most 1, below 0 when removal raises the probability. NaN ("no score") when p_c(x) is 0 (the ratio
    is undefined). Scores (N,); extras ``curves`` (N, max K + 1, NaN past an image's K) and
    ``n_segments`` (N,) (an image's curve length is its own, so there is no shared curve axis).

    Quantus ``IROF``: SLIC on the normalised input (which scikit-image reads as [0, 1] RGB), fill
    "mean" = the scalar mean of the whole current batch, AOC = K - trapz(y_1..y_K, dx=1) in [0, K]
    (not normalised, no clean point). Cost: K forward passes per image (about n_segments), plus the
    clean pass and the segmentation on the CPU.
    """
    target = check_model_inputs(model, x, target)
    attributions = check_attributions(attributions, x)
    n = x.shape[0]
    segmenter = Segmenter.build("slic", {"n_segments": n_segments, "compactness": compactness, "sigma": sigma},
                                segmentation_input, None, None)
    chunk = rows_per_chunk(model, x, device_budget_bytes)
    logits = clean_logits(model, x, chunk)
    classes = score_classes(logits, target, target_class)
    clean = class_score(logits, classes, "probability")
    fill = _fill(x, substrate)
    ranks, counts = segment_ranks(segmenter.segment(x, [0] * n), attributions, seed)
    # Images have different numbers of superpixels: enumerate the (image, k) pairs, k = 1..K_i.
    pair_image = torch.repeat_interleave(torch.arange(n, device=x.device), counts)
    starts = torch.cumsum(counts, 0) - counts
    pair_step = torch.arange(pair_image.numel(), device=x.device) - starts[pair_image] + 1

    def build(_: Tensor, pairs: Tensor) -> Tensor:
        images = pair_image[pairs]
        return torch.where(ranks[images] < pair_step[pairs].view(-1, 1, 1, 1), fill[images], x[images])

    def read(logits: Tensor, _: Tensor) -> Tensor:
        return logits.float().softmax(1)

    probabilities = evaluate_pairs(model, 1, pair_image.numel(), build, read, chunk, x.device)[0]
    perturbed = probabilities.gather(1, classes[pair_image].view(-1, 1)).squeeze(1)
    k_max = int(counts.max())
    curves = torch.full((n, k_max + 1), float("nan"), dtype=torch.float64, device=x.device)
    curves[:, 0] = 1.0
    curves[pair_image, pair_step] = perturbed.double() / clean.double()[pair_image]
    aoc = torch.stack([1 - torch.trapezoid(curves[i, :k + 1], dx=1.0 / k) for i, k in enumerate(counts.tolist())])
    aoc = torch.where(clean > 0, aoc, torch.full_like(aoc, float("nan")))
    return MetricResult(scores=as_scores(aoc), extras={"curves": curves.float().cpu(), "n_segments": counts.cpu(),
                                                       "classes": classes.cpu()})
