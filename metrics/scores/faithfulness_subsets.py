"""Faithfulness scores that perturb subsets of pixels from the clean image (or build the image up
from a substrate): faithfulness estimate, monotonicity, monotonicity correlation and sufficiency.

A feature is a pixel position (all channels together); the H*W positions are ranked by attribution
(ties broken by ``seed``) and cut into ``n_steps`` chunks of consecutive ranks of equal size
(:func:`metrics.perturb.step_counts`). Every (image, chunk, sample) row is built on the model's
device and evaluated in batches that span images and steps. Random fills are drawn from ``seed`` and
shared by every image (each image maps them to its own value range), so a score never depends on
the other images of the batch.

Quantus 0.6 flattens C*H*W (a "feature" is one channel of one pixel), takes "black" to mean the
image minimum, and its Monotonicity never puts a value of x into the image (the score is always
True); the tests show each next to our definition.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..outputs import class_score, score_classes, score_param, target_class_param
from ..params import Float, Fractions, Int, Substrate
from ..perturb import clean_logits, evaluate_pairs, rows_per_chunk, step_counts
from ..ranking import rank_pixels, rank_positions
from ..registry import MetricResult, as_scores, register
from ..validation import MetricInputError, check_attributions, check_model_inputs
from .deletion_insertion import BLUR, SUBSTRATES, make_substrate
from .faithfulness_correlation import pearson

# A correlation needs two chunks. Each chunk (and sample) costs a forward pass per image: 2**16 chunks
# give every pixel its own up to 256 x 256 px; monotonicity correlation also ranks its chunks
# pairwise (n_steps^2 comparisons per image), hence its lower bound.
N_STEPS = Int(64, low=2, high=2**16)
MAX_SAMPLES = 1024
FILLS = ("uniform", *SUBSTRATES)


def _check_steps(n_steps: int, x: Tensor) -> None:
    if n_steps > x.shape[2] * x.shape[3]:
        raise MetricInputError(f"n_steps ({n_steps}) exceeds the number of pixel positions ({x.shape[2] * x.shape[3]})")


def chunk_of_pixels(attributions: Tensor, n_steps: int, seed: int, descending: bool = True) -> Tensor:
    """The chunk (0..n_steps-1) of every pixel, (N, 1, H, W): chunk k holds the ranks
    [counts[k], counts[k+1]) of :func:`metrics.perturb.step_counts`, most relevant first (``descending``)."""
    n, _, h, w = attributions.shape
    ranks = rank_positions(rank_pixels(attributions, seed, descending=descending))
    counts = step_counts(h * w, n_steps, attributions.device)
    return (torch.searchsorted(counts, ranks, right=True) - 1).view(n, 1, h, w)


def chunk_sums(values: Tensor, chunks: Tensor, n_steps: int) -> Tensor:
    """Sum of ``values`` (N, 1, H, W) over each chunk: (N, n_steps), float64."""
    n = values.shape[0]
    sums = values.new_zeros(n, n_steps, dtype=torch.float64)
    return sums.scatter_add_(1, chunks.flatten(1), values.flatten(1).double())


def uniform_fields(n_samples: int, x: Tensor, seed: int) -> Tensor:
    """U(0, 1) fields (S, C, H, W) drawn on the CPU from ``seed`` and shared by every image; image i
    reads sample s as min(x_i) + u_s * (max(x_i) - min(x_i)), a uniform draw over its own range."""
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.rand((n_samples, *x.shape[1:]), generator=generator).to(device=x.device, dtype=x.dtype)


def _ranges(x: Tensor) -> tuple[Tensor, Tensor]:
    low = x.amin((1, 2, 3), keepdim=True)
    return low, x.amax((1, 2, 3), keepdim=True) - low


def average_ranks(values: Tensor) -> Tensor:
    """Ranks 1..R of each row of ``values`` (N, R), ties given their average rank (as scipy's
    ``rankdata``), float64; pairwise, in groups of rows that keep the comparison under 2**26 entries."""
    values = values.double()
    n, r = values.shape
    rows = max(1, 2**26 // max(r * r, 1))
    out = []
    for part in values.split(rows):
        less = (part.unsqueeze(1) < part.unsqueeze(2)).sum(2)
        equal = (part.unsqueeze(1) == part.unsqueeze(2)).sum(2)
        out.append(less + (equal + 1) / 2)
    return torch.cat(out)


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation of the rows of ``a`` and ``b`` (N, R): (N,), NaN for a constant row."""
    return pearson(average_ranks(a), average_ranks(b))


_CORRELATION = {"n_steps": N_STEPS, "baseline": Substrate("zeros", SUBSTRATES), "score": score_param("logit"),
                "target_class": target_class_param("target")}


@register("faithfulness_estimate", category="faithfulness", direction="higher", params=_CORRELATION,
          bounds=(-1.0, 1.0))  # a Pearson correlation
def faithfulness_estimate(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor, seed: int = 0,
                          device_budget_bytes: int | None = None, n_steps: int = 64, baseline: str | Tensor = "zeros",
                          score: str = "logit", target_class: str = "target") -> MetricResult:
    """Faithfulness estimate (Alvarez-Melis & Jaakkola 2018): the Pearson correlation, over the
    features, between a feature's relevance and the output drop when that feature alone is removed.

    Features: ``n_steps`` chunks of pixel positions of consecutive rank (the paper removes one
    feature at a time: ``n_steps = H*W``). Each chunk, alone, is set to ``baseline`` in the clean
    image; score = Pearson(sum of a over chunk k, f(x) - f(x_without_k)) over k. Higher is better, in
    [-1, 1]; NaN ("no score") when the chunk sums or the drops do not vary (e.g. a constant map).
    Scores (N,); extras ``attribution_sums`` and ``output_drops`` (N, n_steps).

    Quantus ``FaithfulnessEstimate`` (``features_in_step`` channel values per chunk, "black" = the
    image minimum, logits) computes the same correlation: equal on a grayscale image with the same
    chunks and baseline. Cost: n_steps forward passes per image, plus the clean pass.
    """
    target = check_model_inputs(model, x, target)
    attributions = check_attributions(attributions, x)
    _check_steps(n_steps, x)
    n = x.shape[0]
    chunk = rows_per_chunk(model, x, device_budget_bytes)
    logits = clean_logits(model, x, chunk)
    classes = score_classes(logits, target, target_class)
    fill = make_substrate(x, baseline, BLUR["blur_kernel"].default, BLUR["blur_sigma"].default)
    chunks = chunk_of_pixels(attributions, n_steps, seed)

    def build(images: Tensor, k: Tensor) -> Tensor:
        return torch.where(chunks[images] == k.view(-1, 1, 1, 1), fill[images], x[images])

    def read(logits: Tensor, images: Tensor) -> Tensor:
        return class_score(logits, classes[images], score)

    drops = class_score(logits, classes, score).unsqueeze(1) - evaluate_pairs(model, n, n_steps, build, read, chunk,
                                                                             x.device)
    sums = chunk_sums(attributions, chunks, n_steps)
    return MetricResult(scores=as_scores(pearson(sums, drops.double())),
                        extras={"attribution_sums": sums.float().cpu(), "output_drops": drops.cpu(),
                                "classes": classes.cpu()})


@register("monotonicity", category="faithfulness", direction="higher", bounds=(0.0, 1.0),
          params={"n_steps": Int(32, low=1, high=2**16), "substrate": Substrate("zeros", SUBSTRATES),
                  "tolerance": Float(1e-6, low=0.0, high=1.0), "score": score_param("probability"),
                  "target_class": target_class_param("predicted")})
def monotonicity(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor, seed: int = 0,
                 device_budget_bytes: int | None = None, n_steps: int = 32, substrate: str | Tensor = "zeros",
                 tolerance: float = 1e-6, score: str = "probability", target_class: str = "predicted") -> MetricResult:
    """Monotonicity (Arya et al. 2019, AIX360): starting from the substrate, put the pixels of x
    back in increasing order of attribution; the class probability should never fall.

    Steps: chunk k (``n_steps`` chunks of consecutive ranks, least relevant first) is inserted at
    step k, curve p_c(x^(k)) for k = 0..n_steps (k = n_steps is x). Arya et al.'s score is whether
    every step is non-decreasing (``extras["monotonic"]``, bool); a map of a CNN almost never is,
    so the score is the share of the n_steps steps that do not fall by more than ``tolerance``
    (1.0 exactly when Arya's criterion holds; the tolerance absorbs float rounding between batch
    shapes). Higher is better, in [0, 1], never NaN. Curves (N, n_steps + 1) over the fraction inserted.

    Quantus ``Monotonicity`` starts from a baseline-filled copy and "replaces" the chunks by the
    baseline taken from that copy, so no value of x is ever inserted: its curve is constant and
    its score is True for every map. Cost: n_steps forward passes per image, plus the clean pass.
    """
    target = check_model_inputs(model, x, target)
    attributions = check_attributions(attributions, x)
    _check_steps(n_steps, x)
    n, _, h, w = x.shape
    chunk = rows_per_chunk(model, x, device_budget_bytes)
    logits = clean_logits(model, x, chunk)
    classes = score_classes(logits, target, target_class)
    start = make_substrate(x, substrate, BLUR["blur_kernel"].default, BLUR["blur_sigma"].default)
    ranks = rank_positions(rank_pixels(attributions, seed, descending=False)).view(n, 1, h, w)
    counts = step_counts(h * w, n_steps, x.device)

    def build(images: Tensor, k: Tensor) -> Tensor:
        return torch.where(ranks[images] < counts[k].view(-1, 1, 1, 1), x[images], start[images])

    def read(logits: Tensor, images: Tensor) -> Tensor:
        return class_score(logits, classes[images], score)

    curves = torch.cat([evaluate_pairs(model, n, n_steps, build, read, chunk, x.device),
                        class_score(logits, classes, score).unsqueeze(1)], dim=1)
    rising = curves.diff(dim=1) >= -tolerance
    return MetricResult(scores=as_scores(rising.double().mean(1)), curves=as_scores(curves),
                        curve_x=(counts.double() / (h * w)).float().cpu(),
                        extras={"monotonic": rising.all(1).cpu(), "classes": classes.cpu()})


@register("monotonicity_correlation", category="faithfulness", direction="higher", bounds=(-1.0, 1.0),
          params={"n_steps": Int(32, low=2, high=1024), "n_samples": Int(8, low=1, high=MAX_SAMPLES),
                  "score": score_param("probability"), "target_class": target_class_param("target")})
def monotonicity_correlation(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor, seed: int = 0,
                             device_budget_bytes: int | None = None, n_steps: int = 32, n_samples: int = 8,
                             score: str = "probability", target_class: str = "target") -> MetricResult:
    """Monotonicity correlation (Nguyen & Martinez 2020): the Spearman correlation between a
    feature's absolute relevance and how much the output varies when that feature is re-drawn.

    Features: ``n_steps`` chunks of pixel positions. Chunk k alone is replaced ``n_samples`` times
    by uniform noise over the image's value range (the paper samples the feature's distribution);
    v_k = mean_s (f(x_k,s) - f(x))^2 (the paper divides by f(x)^2, which a rank correlation ignores).
    Score = Spearman(sum of |a| over chunk k, v_k) over k. Higher is better, in [-1, 1]; NaN ("no
    score") when either side does not vary. Scores (N,); extras ``attribution_sums``,
    ``output_variances`` (N, n_steps).

    Quantus ``MonotonicityCorrelation`` (chunks of channel values, "uniform" = one U(0, 1) value for
    a whole chunk) computes the same correlation given the same draws; it raises a shape error once
    any f(x) < eps (1e-5), where it divides by f(x)^2. Cost: n_steps * n_samples forward passes per
    image, plus the clean pass.
    """
    target = check_model_inputs(model, x, target)
    attributions = check_attributions(attributions, x)
    _check_steps(n_steps, x)
    n = x.shape[0]
    chunk = rows_per_chunk(model, x, device_budget_bytes)
    logits = clean_logits(model, x, chunk)
    classes = score_classes(logits, target, target_class)
    chunks = chunk_of_pixels(attributions, n_steps, seed, descending=False)
    fields = uniform_fields(n_samples, x, seed)
    low, spread = _ranges(x)

    def build(images: Tensor, steps: Tensor) -> Tensor:
        k, s = steps // n_samples, steps % n_samples
        noise = low[images] + fields[s] * spread[images]
        return torch.where(chunks[images] == k.view(-1, 1, 1, 1), noise, x[images])

    def read(logits: Tensor, images: Tensor) -> Tensor:
        return class_score(logits, classes[images], score)

    perturbed = evaluate_pairs(model, n, n_steps * n_samples, build, read, chunk, x.device).view(n, n_steps, n_samples)
    clean = class_score(logits, classes, score).view(n, 1, 1)
    variances = (perturbed.double() - clean.double()).square().mean(2)
    sums = chunk_sums(attributions.abs(), chunks, n_steps)
    return MetricResult(scores=as_scores(spearman(sums, variances)),
                        extras={"attribution_sums": sums.float().cpu(), "output_variances": variances.float().cpu(),
                                "classes": classes.cpu()})


@register("sufficiency", category="faithfulness", direction="higher", bounds=(0.0, 1.0),
          params={"fractions": Fractions((0.1, 0.2, 0.3, 0.5), max_length=256),
                  "n_samples": Int(8, low=1, high=MAX_SAMPLES), "fill": Substrate("uniform", FILLS)})
def sufficiency(*, model: nn.Module, x: Tensor, target: Tensor | int, attributions: Tensor, seed: int = 0,
                device_budget_bytes: int | None = None, fractions: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5),
                n_samples: int = 8, fill: str | Tensor = "uniform") -> MetricResult:
    """Sufficiency (Dasgupta et al. 2022): how often the model keeps its prediction on inputs to
    which the explanation applies.

    Dasgupta et al. define local sufficiency as Pr_{x'}[f(x') = f(x) | the explanation of x applies
    to x']. For a feature-highlighting explanation it applies to every x' that agrees with x on the
    highlighted features: here the top ``fraction`` of pixel positions (ties by ``seed``), for each
    of ``fractions``, with the rest drawn from ``fill`` (``"uniform"``: ``n_samples`` draws of
    uniform noise over the image's value range, shared by every image; a fixed substrate needs, and
    uses, one sample). Score = the share of these (fraction, sample) inputs whose predicted class is
    the clean prediction. Higher is better, in [0, 1], never NaN. Curves (N, len(fractions)): the
    share per fraction.

    Quantus ``Sufficiency`` instead counts, among the other images of the batch whose explanation is
    within a distance threshold (standardised Euclidean, divided by the batch's largest distance),
    those with the same predicted class: a score that depends on the batch by construction (and is 0
    for every image once one attribution pixel is constant across the batch, where the per-feature
    variance is 0). Ours needs no other image. Cost: len(fractions) * n_samples forward passes per
    image (len(fractions) for a fixed fill), plus the clean pass.
    """
    target = check_model_inputs(model, x, target)
    attributions = check_attributions(attributions, x)
    n, _, h, w = x.shape
    chunk = rows_per_chunk(model, x, device_budget_bytes)
    predicted = clean_logits(model, x, chunk).argmax(1)
    ranks = rank_positions(rank_pixels(attributions, seed)).view(n, 1, h, w)
    kept = torch.tensor([max(1, int(h * w * f)) for f in fractions], device=x.device)
    uniform = isinstance(fill, str) and fill == "uniform"
    samples = n_samples if uniform else 1
    if uniform:
        fields, (low, spread) = uniform_fields(n_samples, x, seed), _ranges(x)
    else:
        substrate = make_substrate(x, fill, BLUR["blur_kernel"].default, BLUR["blur_sigma"].default)

    def build(images: Tensor, steps: Tensor) -> Tensor:
        k, s = steps // samples, steps % samples
        other = low[images] + fields[s] * spread[images] if uniform else substrate[images]
        return torch.where(ranks[images] < kept[k].view(-1, 1, 1, 1), x[images], other)

    def read(logits: Tensor, images: Tensor) -> Tensor:
        return (logits.argmax(1) == predicted[images]).float()

    same = evaluate_pairs(model, n, len(fractions) * samples, build, read, chunk, x.device)
    same = same.view(n, len(fractions), samples)
    curves = same.double().mean(2)
    return MetricResult(scores=as_scores(curves.mean(1)), curves=as_scores(curves),
                        curve_x=torch.tensor(list(fractions), dtype=torch.float32),
                        extras={"classes": predicted.cpu()})
