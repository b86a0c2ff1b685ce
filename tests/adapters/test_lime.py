"""LIME: ``lime`` equals a direct call of the lime package; ``lime_captum`` reproduces its recipe
on the device and agrees with it; the shared pieces (segmentation, kernel, ridge) are exact."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from lime.lime_image import LimeImageExplainer
from scipy.stats import pearsonr
from skimage.segmentation import slic
from sklearn.linear_model import Ridge
from sklearn.metrics import pairwise_distances
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import adapters
from adapters.lime_common import lime_kernel
from adapters.methods.lime_captum import ridge_fit
from adapters.seeding import image_seeds
from adapters import segmentation
from adapters.segmentation import Segmenter


class QuadrantModel(nn.Module):
    """Class 0's logit is 20 x the mean of the top-left quadrant; class 1's is 0: LIME's answer is
    known (segments inside the quadrant matter, the others do not)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(20.0))

    def forward(self, x):
        h, w = x.shape[-2:]
        logit = self.scale * x[:, :, : h // 2, : w // 2].mean(dim=(1, 2, 3))
        return torch.stack([logit, torch.zeros_like(logit)], dim=1)


def classifier(model):
    def fn(images):
        with torch.no_grad():
            return torch.softmax(model(torch.from_numpy(images).permute(0, 3, 1, 2).float()), 1).double().numpy()
    return fn


def test_lime_equals_a_direct_lime_package_call(model, images, targets, maps_close):
    method = adapters.get("lime", n_samples=120, seed=3)
    x, t = images[:2], targets[:2]
    maps = method.attribute(model, x, t)
    for i, seed in enumerate(image_seeds(x, 3)):
        image = x[i].permute(1, 2, 0).numpy()
        rescaled = (image - image.min()) / (image.max() - image.min())
        segments = np.unique(slic(rescaled.astype(np.float64), n_segments=50, compactness=10.0, sigma=1.0),
                             return_inverse=True)[1].reshape(32, 32)
        assert np.array_equal(segments, method.diagnostics["segments"][i].numpy())
        explanation = LimeImageExplainer(kernel_width=0.25, random_state=seed % 2**32).explain_instance(
            image, classifier(model), labels=(int(t[i]),), hide_color=0, top_labels=None, num_samples=120,
            segmentation_fn=lambda _: segments, random_seed=seed % 2**32)
        weights = dict(explanation.local_exp[int(t[i])])
        painted = torch.tensor(np.vectorize(weights.get)(segments), dtype=torch.float32)
        maps_close(maps[i, 0], painted)


def test_lime_captum_agrees_with_lime_where_the_answer_is_known(maps_close):
    model = QuadrantModel().eval()
    g = torch.Generator().manual_seed(0)
    x = nn.functional.avg_pool2d(torch.rand(2, 3, 32, 32, generator=g), 3, stride=1, padding=1) + 0.5
    params = {"n_samples": 400, "segmentation_kwargs": {"n_segments": 25}, "segmentation_input": "raw"}
    # Another seed: independent samples (as on a GPU), so this is statistical agreement.
    package, captum = adapters.get("lime", seed=0, **params), adapters.get("lime_captum", seed=1, **params)
    package.attribute(model, x, 0)
    captum.attribute(model, x, 0)
    for i in range(2):
        a, b = package.diagnostics["segment_weights"][i], captum.diagnostics["segment_weights"][i]
        # Segments outside the quadrant have zero true weight: their order is sampling noise, so
        # the linear correlation and the top segments are what must agree, not the full ranking.
        assert pearsonr(a.numpy(), b.numpy())[0] > 0.75
        segments = package.diagnostics["segments"][i]
        inside = {k for k in range(len(a)) if bool((segments[:16, :16] == k).any())}
        top_a, top_b = set(a.argsort(descending=True)[:4].tolist()), set(b.argsort(descending=True)[:4].tolist())
        assert top_a <= inside and top_b <= inside
        assert len(top_a & top_b) >= 3


def test_lime_captum_reproduces_lime_on_the_cpu(model, images, targets, maps_close):
    # Same 32-bit seed, both MT19937 taking the low bit of each draw: the very same samples.
    package, captum = adapters.get("lime", n_samples=150), adapters.get("lime_captum", n_samples=150)
    maps_close(captum.attribute(model, images[:3], targets[:3]), package.attribute(model, images[:3], targets[:3]))
    assert not torch.allclose(adapters.get("lime_captum", n_samples=150, seed=1).attribute(model, images[:3], targets[:3]),
                              package.attribute(model, images[:3], targets[:3]))


def test_ridge_fit_equals_sklearn_ridge():
    g = torch.Generator().manual_seed(0)
    z = torch.randint(0, 2, (200, 12), generator=g).float()
    y = z @ torch.randn(12, generator=g) + 0.1 * torch.randn(200, generator=g)
    w = torch.rand(200, generator=g)
    from captum._utils.models.linear_model import LinearModel

    linear = LinearModel(train_fn=ridge_fit)
    linear.fit(DataLoader(TensorDataset(z, y, w), batch_size=200))
    reference = Ridge(alpha=1.0, fit_intercept=True).fit(z.numpy(), y.numpy(), sample_weight=w.numpy())
    np.testing.assert_allclose(linear.representation().numpy().ravel(), reference.coef_, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(linear.linear.bias.detach()), reference.intercept_, rtol=1e-5, atol=1e-6)


def test_kernel_equals_lime_cosine_kernel():
    g = torch.Generator().manual_seed(0)
    z = torch.randint(0, 2, (50, 9), generator=g)
    z[0], z[1] = 1, 0  # the original and the all-hidden sample
    d = pairwise_distances(z.numpy(), np.ones((1, 9)), metric="cosine").ravel()
    np.testing.assert_allclose(lime_kernel(z, 0.25).numpy(), np.sqrt(np.exp(-(d**2) / 0.25**2)), rtol=1e-6, atol=1e-7)


def test_segmentation_inputs_and_labels(images):
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    denorm = Segmenter.build("slic", {"n_segments": 20}, "denormalize", mean, std)
    image = denorm.image(images[0])
    expected = (images[0] * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]).clamp(0, 1)
    np.testing.assert_allclose(image, expected.permute(1, 2, 0).double().numpy(), rtol=1e-6, atol=1e-6)
    for recipe in (denorm, Segmenter.build("quickshift", None, "minmax", None, None)):
        labels = recipe.segment(images[:2], [1, 2])
        for label_map in labels:
            assert label_map.unique().tolist() == list(range(int(label_map.max()) + 1)), "labels are 0..K-1"
    quick = Segmenter.build("quickshift", {"kernel_size": 2, "max_dist": 6.0}, "minmax", None, None)
    assert torch.equal(quick.segment(images[:1], [5]), quick.segment(images[:1], [5]))


def test_repeated_segmentations_come_from_the_cache_exactly(images, monkeypatch):
    monkeypatch.setattr(segmentation, "_LABELS", segmentation._LabelCache(2**20))
    calls = []
    monkeypatch.setattr(segmentation, "slic", lambda *args, **kwargs: calls.append(1) or slic(*args, **kwargs))
    recipe = Segmenter.build("slic", {"n_segments": 20}, "minmax", None, None)
    first = recipe.segment_one(images[0], 0)
    again = recipe.segment_one(images[0], 7)  # SLIC draws nothing: the seed is not part of the key
    assert calls == [1] and np.array_equal(again, first) and again.dtype == np.int64
    again[:] = -1  # a fresh array each time: the cached labels are not the caller's to change
    assert np.array_equal(recipe.segment_one(images[0], 0), first) and calls == [1]
    Segmenter.build("slic", {"n_segments": 21}, "minmax", None, None).segment_one(images[0], 0)
    recipe.segment_one(images[1], 0)
    assert calls == [1, 1, 1]
    quick = Segmenter.build("quickshift", {"kernel_size": 2, "max_dist": 6.0}, "minmax", None, None)
    assert np.array_equal(quick.segment_one(images[0], 5), quick.segment_one(images[0], 5))
    assert len(segmentation._LABELS.entries) == 4  # quickshift's seed is part of its key: one entry for seed 5


def test_the_label_cache_drops_the_least_recently_used_past_its_bytes():
    cache = segmentation._LabelCache(limit=300)
    for key in "abc":
        cache.put(key, np.zeros(100, dtype=np.int8))
    assert cache.get("a") is not None  # now the most recently used
    cache.put("d", np.zeros(100, dtype=np.int8))
    assert cache.get("b") is None and [k for k in "acd" if cache.get(k) is not None] == list("acd")
    cache.put("big", np.zeros(301, dtype=np.int8))
    assert cache.get("big") is None and cache.size == 300


def test_grayscale_images_segment(model):
    gray = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    x = torch.rand(2, 1, 24, 24)
    for name in ("lime", "lime_captum"):
        maps = adapters.get(name, **adapters.get_class(name).quick_params()).attribute(gray, x, 1)
        assert maps.shape == (2, 1, 24, 24) and torch.isfinite(maps).all()


def test_classifier_batches_are_large(model, images):
    rows = []
    handle = model.register_forward_hook(lambda _m, inputs, _o: rows.append(len(inputs[0])))
    try:
        for name in ("lime", "lime_captum"):
            method = adapters.get(name, n_samples=200)
            method.attribute(model, images[:1], 0)
            rows.clear()
            method.attribute(model, images[:1], 0)
            assert min(rows[:-1] or rows) >= 64 and sum(rows) == 200, name
    finally:
        handle.remove()


@pytest.mark.parametrize("name", ["lime", "lime_captum"])
def test_hide_value_is_the_baseline(name, images):
    # A model that only sees the top-left pixel of channel 0: every segment but the one holding
    # that pixel gets (about) zero weight.
    class Corner(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.tensor(5.0))

        def forward(self, x):
            logit = self.w * x[:, 0, 0, 0]
            return torch.stack([logit, -logit], dim=1)

    method = adapters.get(name, n_samples=150, hide_value=-2.0)
    x = images[:1].clone()
    x[0, 0, 0, 0] = 1.0
    maps = method.attribute(Corner().eval(), x, 0)
    corner = method.diagnostics["segments"][0, 0, 0]
    weights = method.diagnostics["segment_weights"][0]
    assert int(weights.abs().argmax()) == int(corner) and float(weights[corner]) > 0
    assert float(maps[0, 0, 0, 0]) == pytest.approx(float(weights[corner]), rel=1e-6)
