"""A model whose logits are NaN or infinite is an error that names the model output and the images.

Whole batch: the probe's one-image forward sees it before any method runs, for every method. One
image only: every method that calls the model notices it in its own passes and names the image,
even where the gradient through the bad logits is zero and the map would look fine. The controls
never call the model (cost 0 passes), so only the probe's check reaches them: they are left out of
the one-image table.
"""
from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import adapters
from adapters import AttributionError
from conftest import model_for

LOGITS_ERROR = r"the model's output \(logits\) is not finite \(NaN or inf\) for images \[{}\]"
#: Image 2 of the test batch is shifted by this much; the model's logits are bad for such images.
MARKER = 100.0


class BadLogits(nn.Module):
    """``net`` with logits ``value`` (NaN or inf) for images with a mean above MARKER / 2, or
    for every image with ``everywhere``. ``torch.where`` passes no gradient to the bad rows, so a
    gradient map of those images is zero, not NaN: only the logits show the fault."""

    def __init__(self, net: nn.Module, value: float, everywhere: bool = False) -> None:
        super().__init__()
        self.net, self.value, self.everywhere = net, value, everywhere

    def forward(self, x: Tensor) -> Tensor:
        logits = self.net(x)
        bad = torch.ones(len(x), dtype=torch.bool) if self.everywhere else x.flatten(1).mean(1) > MARKER / 2
        return torch.where(bad[:, None], torch.full_like(logits, self.value), logits)


def _batch(images: Tensor) -> Tensor:
    x = images[:3].clone()
    x[2] += MARKER  # survives blurring, noise, occluding a window, interpolating past halfway
    return x


def _calls_model(name: str) -> bool:
    method = adapters.get(name, **adapters.get_class(name).quick_params())
    return method.cost(height=32, width=32, channels=3, n_classes=5, model=model_for(name)).forward > 0


MODEL_METHODS = [name for name in adapters.names() if _calls_model(name)]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("name", adapters.names())
def test_whole_batch_non_finite_logits(name, value, model, images, build, run):
    with pytest.raises(AttributionError, match=LOGITS_ERROR.format("0, 1, 2")):
        run(build(name), BadLogits(model, value, everywhere=True).eval(), images[:3], 0)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("name", MODEL_METHODS)
def test_one_image_with_non_finite_logits_is_named(name, value, model, images, build, run):
    x = _batch(images)
    with pytest.raises(AttributionError, match=LOGITS_ERROR.format("2") + ": the attribution would be meaningless$"):
        run(build(name), BadLogits(model, value).eval(), x, torch.tensor([0, 1, 2]))


def test_the_bad_image_is_named_wherever_it_sits(model, images):
    x = _batch(images)[[0, 2, 1]]
    with pytest.raises(AttributionError, match=LOGITS_ERROR.format("1")):
        adapters.get("saliency").attribute(BadLogits(model, float("nan")).eval(), x, 0)


def test_extremal_explain_names_the_image_too(model, images):
    extremal = adapters.get("extremal", **adapters.get_class("extremal").quick_params())
    with pytest.raises(AttributionError, match=LOGITS_ERROR.format("2")):
        extremal.explain(BadLogits(model, float("nan")).eval(), _batch(images), [[0, 1]] * 3)


def test_a_model_that_recovers_is_accepted_again(model, images):
    # The probe does not cache a non-finite look: once the weights are repaired the model works.
    model = BadLogits(model, float("nan"), everywhere=True).eval()
    saliency = adapters.get("saliency")
    with pytest.raises(AttributionError, match="logits"):
        saliency.attribute(model, images[:2], 0)
    model.everywhere = False
    assert torch.isfinite(saliency.attribute(model, images[:2], 0)).all()


def test_metrics_path_refuses_too(model, images):
    # check_inputs is what the scores call: they get the same message before any perturbation.
    with pytest.raises(AttributionError, match=LOGITS_ERROR.format("0, 1")):
        adapters.check_inputs(BadLogits(model, float("nan"), everywhere=True).eval(), images[:2], 0)


def test_good_path_runs_no_extra_forward(model, images):
    # The watch is a reduction over the logits in the method's own passes, not a pass of its own:
    # saliency still runs one probe image and one batch forward.
    rows: list[int] = []
    handle = model.register_forward_hook(lambda _m, inputs, _o: rows.append(inputs[0].shape[0]))
    try:
        adapters.get("saliency").attribute(model, images[:4], 0)
        adapters.get("saliency").attribute(model, images[:4], 0)
    finally:
        handle.remove()
    assert rows == [1, 4, 4], rows


class Standardised(nn.Module):
    """Per-image standardisation before the net: NaN logits (0 / 0) for a constant image, such as a
    zero baseline, and finite ones for any real image."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        flat = x.flatten(1)
        mean, std = flat.mean(1).view(-1, 1, 1, 1), flat.std(1).view(-1, 1, 1, 1)
        return self.net((x - mean) / std)


def test_non_finite_logits_off_x_only_keep_a_finite_map_and_say_so(model, images):
    # Integrated gradients' convergence delta runs the zero baseline: NaN there, finite on every
    # interpolated input (standardisation undoes the scaling), so the map itself is sound.
    method = adapters.get("integrated_gradients", n_steps=4)
    maps = method.attribute(Standardised(model).eval(), images[:2], 0)
    assert torch.isfinite(maps).all()
    assert method.diagnostics["non_finite_logits_off_x"] is True


class ZeroIsNaN(nn.Module):
    """NaN logits for any image with an exact zero: every occluded or segment-hidden copy of the
    test images, never the images themselves."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x) + torch.where((x == 0).flatten(1).any(1), float("nan"), 0.0)[:, None]


def test_non_finite_map_from_perturbed_inputs_says_where_the_logits_broke(model, images):
    with pytest.raises(AttributionError, match="produced a non-finite attribution map: the model's logits were not "
                                               "finite on some inputs the method built from x"):
        adapters.get("occlusion", window=8, stride=8).attribute(ZeroIsNaN(model).eval(), images[:2], 0)


def test_a_method_that_fails_on_non_finite_perturbed_logits_says_so(model, images):
    # lime's own regression (scikit-learn) refuses NaN probabilities: the hidden segments are zeros.
    lime = adapters.get("lime", **adapters.get_class("lime").quick_params())
    with pytest.raises(AttributionError, match=r"method 'lime' failed \(ValueError: .*NaN.*\) after the model's logits "
                                               "were not finite on some inputs it built from x"):
        lime.attribute(ZeroIsNaN(model).eval(), images[:1], 0)
