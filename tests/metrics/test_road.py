"""ROAD: the batched imputation against scipy's direct solver, the protocol, and Quantus."""
import numpy as np
import pytest
import torch
from quantus_oracle import quantus
from road_reference import spsolve_impute
from score_helpers import images, linear_model, maps, tiny_cnn

import metrics
from metrics.imputation import linear_impute, noisy_linear_impute


def fixture_masks(size: int = 24) -> torch.Tensor:
    """Removal patterns (6, 1, size, size): scattered 10 %, 50 %, 90 %, a large hole, the border, all
    but one pixel."""
    g = torch.Generator().manual_seed(0)
    masks = torch.zeros(6, 1, size, size, dtype=torch.bool)
    for k, p in enumerate((0.1, 0.5, 0.9)):
        masks[k] = torch.rand(1, size, size, generator=g) < p
    masks[3, :, 3:20, 4:22] = True
    masks[4, :, :2, :] = masks[4, :, :, -3:] = True
    masks[5] = True
    masks[5, :, 7, 11] = False
    return masks


def test_batched_imputation_equals_scipy_direct_solver():
    x = images(6, size=24, seed=3)
    removed = fixture_masks()
    ours = linear_impute(x, removed)
    for i in range(6):
        reference = spsolve_impute(x[i].double().numpy(), removed[i, 0].numpy())
        assert np.abs(ours[i].double().numpy() - reference).max() <= 1e-4, f"fixture {i}"


def large_masks(size: int = 224) -> torch.Tensor:
    """Removal patterns (3, 1, size, size) at full resolution, where convergence is hardest: the top
    90 % and 50 % of a smooth map (blobs, as real attributions give) and one large central hole."""
    noise = torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(4))
    smooth = torch.nn.functional.avg_pool2d(noise, 15, stride=1, padding=7).flatten()
    ranks = torch.empty_like(smooth).scatter_(0, smooth.argsort(descending=True),
                                              torch.arange(smooth.numel(), dtype=smooth.dtype)).view(size, size)
    masks = torch.zeros(3, 1, size, size, dtype=torch.bool)
    masks[0, 0] = ranks < 0.9 * size * size
    masks[1, 0] = ranks < 0.5 * size * size
    masks[2, 0, size // 8:7 * size // 8, size // 6:5 * size // 6] = True
    return masks


def test_batched_imputation_equals_scipy_direct_solver_at_224_px():
    x, removed = images(3, size=224, seed=6), large_masks()
    ours = linear_impute(x, removed)
    for i in range(3):
        reference = spsolve_impute(x[i].double().numpy(), removed[i, 0].numpy())
        assert np.abs(ours[i].double().numpy() - reference).max() <= 1e-4, f"fixture {i}"


def test_odd_sizes_are_padded_for_the_multigrid_levels():
    x = images(2, size=37, seed=7)
    removed = torch.nn.functional.interpolate(fixture_masks()[[2, 3]].float(), size=(37, 37)) > 0.5
    ours = linear_impute(x[..., :29], removed[..., :29])
    for i in range(2):
        reference = spsolve_impute(x[i, :, :, :29].double().numpy(), removed[i, 0, :, :29].numpy())
        assert np.abs(ours[i].double().numpy() - reference).max() <= 1e-4, f"fixture {i}"


def test_kept_pixels_are_untouched_and_noise_is_only_on_removed_pixels():
    x = images(2, size=16)
    removed = fixture_masks(16)[:2]
    noise = 0.01 * torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(1))
    clean, noisy = linear_impute(x, removed), noisy_linear_impute(x, removed, noise)
    assert torch.equal(noisy[~removed.expand_as(x)], x[~removed.expand_as(x)])
    difference = (noisy - clean)[removed.expand_as(x)]
    assert torch.allclose(difference, noise.expand_as(x)[removed.expand_as(x)], atol=1e-6)


def test_a_row_is_imputed_the_same_alone_and_in_a_batch():
    x, removed = images(6, size=24, seed=3), fixture_masks()
    batch = linear_impute(x, removed)
    for i in range(6):
        assert torch.allclose(linear_impute(x[i:i + 1], removed[i:i + 1])[0], batch[i], atol=1e-6)


def test_channels_sharing_an_image_s_fields_solve_as_they_would_alone():
    # The fields are built once per image and broadcast over its channels: each channel must come out
    # as it does when imputed as a one-channel image, and a mask given per channel must agree too.
    x, removed = images(6, size=24, seed=3), fixture_masks()
    together = linear_impute(x, removed)
    for c in range(3):
        assert torch.allclose(linear_impute(x[:, c:c + 1], removed)[:, 0], together[:, c], atol=1e-6)
    assert torch.allclose(linear_impute(x, removed.expand_as(x)), together, atol=1e-6)


def test_float64_solves_as_float32_does():
    x, removed = images(6, size=24, seed=3), fixture_masks()
    filled = linear_impute(x.double(), removed)
    assert filled.dtype == torch.float64
    assert torch.allclose(filled.float(), linear_impute(x, removed), atol=1e-4)


@pytest.mark.oracle
def test_equals_quantus_imputation_function(monkeypatch):
    quantus(monkeypatch)
    from quantus.functions.perturb_func import noisy_linear_imputation

    x, removed = images(1, size=16, seed=5), fixture_masks(16)[1:2]
    indices = np.flatnonzero(removed[0, 0].numpy())
    theirs = noisy_linear_imputation(x[0].double().numpy(), indices, noise=0.0)
    assert np.abs(linear_impute(x, removed)[0].double().numpy() - theirs).max() <= 1e-4


@torch.no_grad()
def test_morf_removes_the_top_pixels_and_lerf_the_bottom_ones():
    # The model counts the box; the map points at the box. MoRF at 50 % removes the whole box and fills
    # it from its zero surroundings; LeRF at 50 % removes only background, so the box is intact.
    box = torch.zeros(1, 16, 16)
    box[:, 4:12, 4:12] = 1.0  # 64 of 256 pixels
    x = box.unsqueeze(0).clone()
    a = box.unsqueeze(0) + 0.01 * maps(1, 16)
    model = linear_model(box)
    common = dict(model=model, x=x, target=0, attributions=a, fractions=[0.5], score="logit", target_class="target")
    morf = metrics.road_morf(**common)
    lerf = metrics.road_lerf(**common)
    assert abs(float(lerf.curves[0, 0]) - 64.0) < 1e-4
    assert abs(float(morf.curves[0, 0])) < 0.5  # 64 imputed pixels ~ 0 + N(0, 0.01^2) noise each


def test_noise_is_seeded_and_has_the_requested_scale():
    model, x, a = tiny_cnn(), images(2), maps(2)
    first = metrics.road_morf(model=model, x=x, target=0, attributions=a, seed=1)
    again = metrics.road_morf(model=model, x=x, target=0, attributions=a, seed=1)
    other = metrics.road_morf(model=model, x=x, target=0, attributions=a, seed=2)
    assert torch.equal(first.curves, again.curves)
    assert not torch.equal(first.curves, other.curves)
    from metrics.imputation import imputation_noise
    noise = imputation_noise(9, (3, 64, 64), 0.01, seed=0, device="cpu")
    assert abs(float(noise.std()) - 0.01) < 5e-4


def test_combined_road_is_half_the_gap_between_lerf_and_morf():
    model, x, a = tiny_cnn(), images(3), maps(3)
    both = metrics.road(model=model, x=x, target=0, attributions=a, fractions=[0.2, 0.6])
    morf = metrics.road_morf(model=model, x=x, target=0, attributions=a, fractions=[0.2, 0.6])
    lerf = metrics.road_lerf(model=model, x=x, target=0, attributions=a, fractions=[0.2, 0.6])
    assert torch.allclose(both.scores, (lerf.scores - morf.scores) / 2, atol=1e-6)
    assert both.extras["morf"].shape == (3, 2) and morf.extras["correct"].dtype == torch.bool


@pytest.mark.oracle
def test_accuracy_equals_quantus_road_on_grayscale_without_noise(monkeypatch):
    q = quantus(monkeypatch)
    model, x, a = tiny_cnn(channels=1), images(6, channels=1), maps(6)
    y = model(x).argmax(1)
    y[::3] = (y[::3] + 1) % 3  # some images start wrong, so accuracy is not all ones
    percentages = [10, 30, 50, 70, 90]
    ref = q.ROAD(percentages=percentages, noise=0.0, disable_warnings=True)
    theirs = ref(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(), device="cpu", batch_size=64)
    ours = metrics.road_morf(model=model, x=x, target=y, attributions=a, fractions=[p / 100 for p in percentages],
                             noise_std=0.0)
    np.testing.assert_allclose([theirs[p] for p in percentages], ours.extras["correct"].float().mean(0).numpy())


@pytest.mark.oracle
def test_quantus_road_fails_on_rgb_input(monkeypatch):
    q = quantus(monkeypatch)
    model, x, a = tiny_cnn(), images(2), maps(2)
    ref = q.ROAD(percentages=[10], disable_warnings=True)
    with pytest.raises(IndexError):  # flat C*H*W indices into an (C, H*W) imputation mask
        ref(model=model, x_batch=x.numpy(), y_batch=np.zeros(2, dtype=int), a_batch=a.numpy(), device="cpu")
    assert metrics.road_morf(model=model, x=x, target=0, attributions=a, fractions=[0.1]).scores.shape == (2,)


@pytest.mark.oracle
def test_quantus_road_averages_only_the_first_batch(monkeypatch):
    q = quantus(monkeypatch)
    model, x, a = tiny_cnn(channels=1), images(4, channels=1), maps(4)
    y = model(x).argmax(1)
    y[2:] = (y[2:] + 1) % 3  # the second batch is all wrong
    ref = q.ROAD(percentages=[10], noise=0.0, disable_warnings=True)
    theirs = ref(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(), device="cpu", batch_size=2)
    ours = metrics.road_morf(model=model, x=x, target=y, attributions=a, fractions=[0.1], noise_std=0.0)
    correct = ours.extras["correct"][:, 0].float()
    assert theirs[10] == pytest.approx(float(correct[:2].mean()))  # what Quantus reports...
    assert float(correct.mean()) != pytest.approx(theirs[10])  # ...is not the accuracy over the data


def test_a_solver_stopped_before_convergence_says_so():
    x, removed = images(1, size=24), fixture_masks()[3:4]  # a large hole needs many iterations
    with pytest.warns(RuntimeWarning, match="did not reach"):
        linear_impute(x, removed, max_iter=2)
