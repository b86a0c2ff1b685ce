"""Batched perturbation machinery: chunking never changes a row, RISE's blur, the step grid, the AUC."""
import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from score_helpers import images, tiny_cnn

from metrics.perturb import evaluate_pairs, rise_blur, rise_blur_kernel, rows_per_chunk, step_counts, trapezoid_auc


def test_rise_kernel_equals_scipy_gaussian_filter_of_a_delta():
    delta = np.zeros((11, 11))
    delta[5, 5] = 1.0
    expected = gaussian_filter(delta, 5)  # exactly how RISE's gkern(11, 5) builds it
    assert np.abs(rise_blur_kernel(11, 5.0).numpy() - expected).max() < 1e-7
    assert abs(float(rise_blur_kernel(11, 5.0).sum()) - 1.0) < 1e-6


def test_rise_blur_blurs_each_channel_separately_with_zero_padding():
    x = torch.zeros(1, 3, 21, 21)
    x[0, 1, 10, 10] = 1.0
    blurred = rise_blur(x)
    assert blurred[0, 0].abs().max() == 0 and blurred[0, 2].abs().max() == 0
    assert torch.allclose(blurred[0, 1, 5:16, 5:16], rise_blur_kernel().flip(0, 1), atol=1e-7)
    # Zero padding: a constant image darkens at the border, as in RISE's conv2d(padding=5).
    ones = rise_blur(torch.ones(1, 1, 21, 21))
    assert ones[0, 0, 10, 10] > 0.99 and ones[0, 0, 0, 0] < 0.5


def test_step_counts_include_both_endpoints():
    counts = step_counts(100, 8)
    assert counts[0] == 0 and counts[-1] == 100 and counts.numel() == 9
    assert (counts.diff() >= 12).all()


def test_normalised_auc_of_a_line_is_its_mean_for_any_step_count():
    for steps in (4, 16, 64):
        x = torch.linspace(0, 1, steps + 1)
        curve = (1 - x).unsqueeze(0)
        assert abs(float(trapezoid_auc(curve, x)) - 0.5) < 1e-6


def test_evaluate_pairs_gives_the_same_rows_for_any_chunk_size():
    model, x = tiny_cnn(), images(3)
    scale = torch.linspace(0.0, 1.0, 5)

    def build(img, step):
        return x[img] * scale[step].view(-1, 1, 1, 1)

    def read(logits, img):
        return logits[:, 0]

    reference = evaluate_pairs(model, 3, 5, build, read, 15, "cpu")
    for chunk in (1, 4, 7):
        assert torch.allclose(evaluate_pairs(model, 3, 5, build, read, chunk, "cpu"), reference, atol=1e-6)
    expected = model(x[1:2] * 0.75)[0, 0]
    assert torch.allclose(reference[1, 3], expected, atol=1e-6)


def test_chunk_rows_follow_the_budget():
    model, x = tiny_cnn(), images(2)
    assert rows_per_chunk(model, x, 1) == 1
    assert rows_per_chunk(model, x, 2**20) < rows_per_chunk(model, x, 2**24)
