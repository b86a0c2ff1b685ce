"""Every method parameter refuses wrong types, NaN/inf and absurd counts in ``__init__``, with one
line that names the parameter (and, for a count, the accepted range).

The first table is built by walking the registry and each method's ``__init__`` annotations, so a
new method or parameter gets these cases without editing this file.
"""
from __future__ import annotations

import math
import re
import typing

import pytest
import torch

import adapters
from adapters import AttributionError

#: Wrong values for each annotation; ints also get a count far past any bound (a seed's bound is
#: the signed 64-bit range, so it gets 2**64 instead of 10**9).
BAD_VALUES: dict[str, list[object]] = {
    "int": ["4", 2.5, True, None, 2**64],
    "int | None": ["4", 2.5, True, 0, 10**9],
    "float": [math.nan, math.inf, -math.inf, "0.5", True, None],
    "bool": ["yes", 1, 0.0, None],
    "str": [4, None, ["sum"], "no-such-choice"],
    "str | None": [4, ["layer4"]],
}
#: What the one line says is accepted, per annotation ({} is the parameter's name).
ACCEPTED: dict[str, str] = {
    "int": r"{} must be an integer in \[-?\d+, \d+\]",
    "int | None": r"{} must be an integer in \[\d+, \d+\] or None",
    "float": r"{} must be a finite number",
    "bool": r"{} must be True or False",
    "str": r"{} must be one of \[",
    "str | None": r"{} must be (a module name \(str\) or None|None \(detect\) or one of)",
}
#: Parameters whose annotation is none of the above; each has its own cases below or in
#: test_extremal_bad_input.py (areas).
OWN_CASES = {"areas", "segmentation_kwargs", "mean", "std"}


def _annotation(hint: object) -> str:
    text = hint.__name__ if isinstance(hint, type) else str(hint)
    return text.replace("typing.Optional[", "").rstrip("]") + " | None" if "Optional" in text else text


def _parameters() -> list[tuple[str, str, str]]:
    found = []
    for name in adapters.names():
        hints = typing.get_type_hints(adapters.get_class(name).__init__)
        found += [(name, param, _annotation(hint)) for param, hint in hints.items() if param != "return"]
    return found


def _cases() -> list[tuple[str, str, str, object]]:
    cases = []
    for method, param, kind in _parameters():
        values = list(BAD_VALUES.get(kind, []))
        if kind == "int" and param != "seed":
            values.append(10**9)
        cases += [(method, param, kind, value) for value in values]
    return cases


def _build(method: str, **params: object) -> adapters.Method:
    return adapters.get(method, **{**adapters.get_class(method).quick_params(), **params})


def _refused(method: str, param: str, **params: object) -> str:
    with pytest.raises(AttributionError) as caught:
        _build(method, **params)
    message = str(caught.value)
    assert re.search(rf"\b{param}\b", message), f"the message does not name {param!r}: {message}"
    assert "\n" not in message
    return message


def test_every_parameter_has_bad_value_cases():
    unclassified = {(m, p, k) for m, p, k in _parameters() if k not in ACCEPTED and p not in OWN_CASES}
    assert not unclassified, f"add bad values for these annotations: {sorted(unclassified)}"


@pytest.mark.parametrize("method, param, kind, value", _cases(), ids=lambda v: repr(v)[:20])
def test_bad_parameter_value_is_refused_naming_it(method, param, kind, value):
    message = _refused(method, param, **{param: value})
    assert re.search(ACCEPTED[kind].format(param), message), message


@pytest.mark.parametrize("method, param, value, accepted", [
    ("integrated_gradients", "n_steps", 10**6, r"in \[1, 2048\] \(the paper uses 20 to 300\), got 1000000"),
    ("smoothgrad", "n_samples", 10**5, r"in \[1, 10000\]"),
    ("lime", "n_samples", 10**6, r"in \[2, 100000\]"),
    ("lime_captum", "n_samples", 1, r"in \[2, 100000\]"),
    ("occlusion", "window", 10**5, r"in \[1, 4096\]"),
    ("occlusion", "stride", 9, r"in \[1, 8\] \(at most window"),
    ("extremal", "iterations", 10**6, r"in \[1, 10000\] \(TorchRay uses 800\)"),
    ("extremal", "levels", 1000, r"in \[2, 64\]"),
    ("extremal", "step", 1000, r"in \[1, 64\]"),
    ("extremal", "history_every", 10**9, r"in \[1, 10000\]"),
    ("extremal", "fast_iterations", 0, r"in \[1, 10000\]"),
    ("extremal", "sigma", 1e4, r"in \(0, 256\]"),
    ("extremal", "max_blur", 1e4, r"in \(0, 256\]"),
    ("extremal", "smoothing", 5.0, r"in \[0, 1\]"),
    ("extremal", "penalty_growth", 1e20, r"overflows the area penalty"),
    ("smoothgrad", "noise_level", 1e300, r"in \[0, 10\]"),
    ("saliency", "batch_size", 10**7, r"in \[1, 65536\] or None"),
    ("random", "seed", 2**63, r"in \[-9223372036854775808, 9223372036854775807\]"),
    ("saliency", "memory_mb", math.inf, r"finite number > 0"),
    ("center", "sigma", math.inf, r"finite number > 0"),
])
def test_absurd_values_name_the_accepted_range(method, param, value, accepted):
    assert re.search(accepted, _refused(method, param, **{param: value}))


@pytest.mark.parametrize("method, params, param", [
    ("lime", {"segmentation_kwargs": {"n_segments": 10**6}}, "n_segments"),
    ("lime", {"segmentation_kwargs": {"n_segments": "50"}}, "n_segments"),
    ("lime_captum", {"segmentation_kwargs": {"compactness": math.nan}}, "compactness"),
    ("lime", {"segmentation": "quickshift", "segmentation_kwargs": {"ratio": 2.0}}, "ratio"),
    ("lime", {"segmentation_kwargs": {"n_segmnts": 10}}, "segmentation_kwargs"),
    ("lime", {"segmentation_kwargs": {"channel_axis": 0}}, "segmentation_kwargs"),
    ("lime", {"segmentation_kwargs": "n_segments=10"}, "segmentation_kwargs"),
    ("lime", {"mean": "abc"}, "mean"),
    ("lime", {"mean": [0.5, math.nan, 0.5], "std": [0.2] * 3}, "mean"),
    ("lime_captum", {"std": [0.2, 0.0, 0.2], "mean": [0.5] * 3}, "std"),
    ("lime_captum", {"std": [], "mean": [0.5] * 3}, "std"),
])
def test_lime_segmentation_parameters(method, params, param):
    _refused(method, param, **params)


def test_smoothgrad_refuses_noise_that_exceeds_its_budget(model, images):
    method = adapters.get("smoothgrad", n_samples=10_000, memory_mb=1.0)
    with pytest.raises(AttributionError, match=r"n_samples=10000 noisy copies .* needs 117 MiB, over memory_mb=1; "
                                               "lower n_samples or raise memory_mb"):
        method.attribute(model, images[:1], 0)


def test_lime_refuses_a_sample_matrix_that_exceeds_its_budget(model, images):
    method = adapters.get("lime_captum", n_samples=100_000, segmentation_kwargs={"n_segments": 16}, memory_mb=1.0)
    with pytest.raises(AttributionError, match=r"lime's 100000 samples x \d+ superpixels needs \d+ MiB, over memory_mb=1"):
        method.attribute(model, images[:1], 0)


def test_the_largest_step_count_is_accepted():
    # Built, not run: 2048 steps of a backward pass take seconds even on the tiny CNN.
    assert adapters.get("integrated_gradients", n_steps=2048).cost().backward == 2048


@pytest.mark.parametrize("method, params", [
    ("random", {"seed": 2**63 - 1}),
    ("random", {"seed": -2**63}),
    ("occlusion", {"window": 8, "stride": 8}),
    ("lime", {"mean": torch.tensor([0.5, 0.5, 0.5]), "std": (0.2, 0.2, 0.2), "segmentation_input": "denormalize"}),
])
def test_values_at_the_bounds_are_accepted(method, params, model, images):
    maps = _build(method, **params).attribute(model, images[:1], 0)
    assert torch.isfinite(maps).all()
