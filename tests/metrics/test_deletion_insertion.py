"""Deletion and insertion: closed forms on a linear model, the RISE protocol, and Quantus.

Quantus's PixelFlipping is deletion with another baseline ("black" = the image minimum), without the
curve's first point and with an un-normalised AUC; with those set alike the curves are equal.
"""
import numpy as np
import pytest
import torch
from quantus_oracle import Recorder, all_rows, quantus
from score_helpers import images, linear_model, maps, tiny_cnn

import metrics
from metrics.perturb import rise_blur


def expected_deletion_logits(w: torch.Tensor, x: torch.Tensor, a: torch.Tensor, n_steps: int) -> torch.Tensor:
    """Logit of a linear model after deleting (setting to 0) the top-k pixels of ``a``, k on RISE's grid."""
    contributions = (w * x).flatten()
    order = torch.argsort(a.flatten(), descending=True)
    hw = contributions.numel()
    return torch.stack([contributions[order[k * hw // n_steps:]].sum() for k in range(n_steps + 1)])


def test_deletion_curve_of_a_linear_model_is_the_sum_of_the_contributions_left():
    w, x = torch.randn(1, 8, 8), torch.rand(1, 1, 8, 8)
    a = maps(1, 8)
    result = metrics.deletion(model=linear_model(w), x=x, target=0, attributions=a, n_steps=16, score="logit",
                              target_class="target")
    assert torch.allclose(result.curves[0], expected_deletion_logits(w, x[0], a, 16), atol=1e-5)
    assert torch.allclose(result.curve_x, torch.linspace(0, 1, 17))


def test_insertion_goes_from_the_blurred_image_to_the_clean_image_in_the_same_order():
    w, x = torch.randn(1, 8, 8), torch.rand(1, 1, 8, 8)
    a = maps(1, 8)
    model = linear_model(w)
    result = metrics.insertion(model=model, x=x, target=0, attributions=a, n_steps=8, score="logit",
                               target_class="target")
    blurred = rise_blur(x)
    order = torch.argsort(a.flatten(), descending=True)
    for k in range(9):
        shown = torch.zeros(64, dtype=torch.bool)
        shown[order[:k * 8]] = True
        image = torch.where(shown.view(1, 1, 8, 8), x, blurred)
        with torch.no_grad():
            assert abs(float(result.curves[0, k]) - float(model(image)[0, 0])) < 1e-5


def test_auc_is_normalised_to_the_unit_axis_and_does_not_grow_with_steps():
    # Every pixel contributes 1: the deletion curve is the line 64 * (1 - fraction), AUC 32, for any S.
    model, x = linear_model(torch.ones(1, 8, 8)), torch.ones(1, 1, 8, 8)
    aucs = [float(metrics.deletion(model=model, x=x, target=0, attributions=maps(1, 8), n_steps=s, score="logit",
                                   target_class="target").scores[0]) for s in (4, 16, 64)]
    assert aucs == pytest.approx([32.0] * 3, abs=1e-4)


@torch.no_grad()
def test_the_score_is_the_probability_of_the_clean_prediction_by_default():
    model, x = tiny_cnn(), images(4)
    predicted = model(x).argmax(1)
    wrong = (predicted + 1) % 3
    result = metrics.deletion(model=model, x=x, target=wrong, attributions=maps(4))
    assert torch.equal(result.extras["classes"], predicted)
    assert torch.allclose(result.curves[:, 0], model(x).softmax(1).gather(1, predicted.view(-1, 1))[:, 0], atol=1e-6)
    by_target = metrics.deletion(model=model, x=x, target=wrong, attributions=maps(4), target_class="target")
    assert torch.allclose(by_target.curves[:, 0], model(x).softmax(1).gather(1, wrong.view(-1, 1))[:, 0], atol=1e-6)


def test_all_channels_of_a_pixel_are_deleted_together():
    recorder = Recorder(tiny_cnn())
    x = images(1, size=8) + 5.0  # no value is 0 before deletion
    metrics.deletion(model=recorder, x=x, target=0, attributions=maps(1, 8), n_steps=4)
    rows = all_rows(recorder)
    zeros_per_pixel = (rows == 0).sum(1)  # channels set to the substrate, per pixel
    assert set(zeros_per_pixel.unique().tolist()) <= {0, 3}
    assert (zeros_per_pixel == 3).any()


@torch.no_grad()
def test_substrates():
    x = images(2, size=8)
    model, a = tiny_cnn(), maps(2, 8)
    grey = torch.full((3, 8, 8), 0.25)
    full = metrics.deletion(model=model, x=x, target=0, attributions=a, n_steps=2, substrate=grey)
    expected = model(grey.expand(2, 3, 8, 8)).softmax(1).gather(1, full.extras["classes"].view(-1, 1))
    assert torch.allclose(full.curves[:, -1], expected[:, 0], atol=1e-6)
    mean = metrics.deletion(model=model, x=x, target=0, attributions=a, n_steps=2, substrate="mean")
    expected = model(x.mean((2, 3), keepdim=True).expand_as(x)).softmax(1).gather(1, mean.extras["classes"].view(-1, 1))
    assert torch.allclose(mean.curves[:, -1], expected[:, 0], atol=1e-6)


@pytest.mark.oracle
def test_equals_quantus_pixel_flipping_when_the_protocol_is_matched(monkeypatch):
    q = quantus(monkeypatch)
    model, x, a = tiny_cnn(channels=1), images(4, channels=1), maps(4)  # grayscale: C*H*W = H*W features
    y = torch.tensor([0, 1, 2, 0])
    ref = q.PixelFlipping(features_in_step=32, perturb_baseline="black", disable_warnings=True)
    theirs = np.asarray(ref(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(), device="cpu"))
    image_min = x.amin((1, 2, 3), keepdim=True).expand_as(x)  # Quantus's "black"
    ours = metrics.deletion(model=model, x=x, target=y, attributions=a, n_steps=8, substrate=image_min,
                            target_class="target")
    assert theirs.shape == (4, 8)  # no point for the unmodified image
    np.testing.assert_allclose(theirs, ours.curves[:, 1:].numpy(), atol=1e-5)


@pytest.mark.oracle
def test_quantus_auc_grows_with_the_step_count_ours_does_not(monkeypatch):
    q = quantus(monkeypatch)
    model, x, a = tiny_cnn(channels=1), images(2, channels=1), maps(2)
    y = model(x).argmax(1)
    theirs, ours = [], []
    for steps in (8, 32):
        ref = q.PixelFlipping(features_in_step=256 // steps, perturb_baseline="black", return_auc_per_sample=True,
                              disable_warnings=True)
        theirs.append(np.asarray(ref(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(),
                                     device="cpu")))
        ours.append(metrics.deletion(model=model, x=x, target=y, attributions=a, n_steps=steps,
                                     substrate=x.amin((1, 2, 3), keepdim=True).expand_as(x), target_class="target").scores)
    # dx=1 integration: 4x the steps gives about 4x the "AUC" for the same curve.
    assert (theirs[1] / theirs[0] > 3.0).all()
    # On the [0, 1] axis the two estimates of the same area agree.
    assert torch.allclose(ours[0], ours[1], atol=0.05)


@pytest.mark.oracle
def test_quantus_black_is_the_image_minimum_not_zero(monkeypatch):
    q = quantus(monkeypatch)
    recorder = Recorder(tiny_cnn(channels=1))
    x, a = images(1, channels=1, size=8), maps(1, 8)
    ref = q.PixelFlipping(features_in_step=16, perturb_baseline="black", disable_warnings=True)
    ref(model=recorder, x_batch=x.numpy(), y_batch=np.array([0]), a_batch=a.numpy(), device="cpu")
    last = recorder.seen[-1]  # every pixel deleted
    assert torch.allclose(last, x.min().expand_as(last))
    assert float(x.min()) < -1.0  # i.e. far from the zero (mean) substrate of RISE that we use
    recorder.seen.clear()
    metrics.deletion(model=recorder, x=x, target=0, attributions=a, n_steps=4)
    assert torch.equal(recorder.seen[-1][-1], torch.zeros_like(x[0]))


@pytest.mark.oracle
def test_quantus_flattens_channels_so_a_step_can_delete_part_of_a_pixel(monkeypatch):
    q = quantus(monkeypatch)
    recorder = Recorder(tiny_cnn())
    x, a = images(1, size=8) + 5.0, maps(1, 8)  # RGB, a map of pixel positions
    ref = q.PixelFlipping(features_in_step=8, perturb_baseline="black", disable_warnings=True)
    curve = np.asarray(ref(model=recorder, x_batch=x.numpy(), y_batch=np.array([0]), a_batch=a.numpy(), device="cpu"))
    assert curve.shape == (1, 24)  # 3 * 64 channel values in steps of 8: three times the pixel steps
    first = recorder.seen[1][0]  # after the first step (row 0 is Quantus's shape probe)
    changed_channels = (first != x[0]).sum(0)
    assert ((changed_channels == 1) | (changed_channels == 2)).any()  # a pixel partly deleted
    recorder.seen.clear()
    metrics.deletion(model=recorder, x=x, target=0, attributions=a, n_steps=8, substrate=torch.full_like(x, -100.0))
    ours_first = recorder.seen[-1][0]  # the steps run in one batch after the clean pass; row 0 = step 1
    assert set((ours_first != x[0]).sum(0).unique().tolist()) == {0, 3}
