"""Targets: integer class indices in any container, with the same rules for each.

Whole floats are their class (a label column read from a file is often float); fractional floats,
NaN, bools, strings, None, ragged lists and other types are refused with one line naming the entry,
never truncated to a class (``[0.9] * 4`` used to give class 0's maps).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import adapters
from adapters import AttributionError

PREFIX = "target must hold integer class indices, got "

BAD_TARGETS = [
    ([0.9, 0.9], r"0\.9 \(a fractional float\) at position 0"),
    (np.array([0.9, 0.9]), r"0\.9 \(a fractional float\) at position 0"),
    (np.array([1.0, 2.5], dtype=np.float32), r"2\.5 \(a fractional float\) at position 1"),
    (torch.tensor([0.0, 1.5]), r"1\.5 \(a fractional float\) at position 1"),
    ((0, 1.25), r"1\.25 \(a fractional float\) at position 1"),
    (0.9, r"0\.9 \(a fractional float\)$"),
    (np.float64(0.5), r"0\.5 \(a fractional float\)$"),
    (torch.tensor(0.5), r"0\.5 \(a fractional float\)$"),
    ([float("nan"), 0], r"nan \(not finite\) at position 0"),
    (np.array([1.0, np.inf]), r"inf \(not finite\) at position 1"),
    (torch.tensor([0.0, float("-inf")]), r"-inf \(not finite\) at position 1"),
    ([0, 1e30], r"1e\+30 \(beyond the int64 range\) at position 1"),
    ([0, 2**70], r"1180591620717411303424 \(beyond the int64 range\) at position 1"),
    (True, r"True \(a bool, not a class index\)$"),
    ([True, False], r"True \(a bool, not a class index\) at position 0"),
    (np.array([False, True]), r"False \(a bool, not a class index\) at position 0"),
    (torch.tensor([True, True]), r"True \(a bool, not a class index\) at position 0"),
    ("1", r"'1' \(a str\)$"),
    (["0", "1"], r"'0' \(a str\) at position 0"),
    (np.array(["0", "1"]), r"'0' \(a str\) at position 0"),
    ([0, "1"], r"'1' \(a str\) at position 1"),
    (b"\x00\x01", r"b'\\x00\\x01' \(a bytes\)$"),
    (None, r"None$"),
    ([None, 1], r"None at position 0"),
    ([[0, 1], [1]], r"a ragged nested list \(rows of shapes"),
    ([0, [1]], r"a ragged nested list \(it mixes numbers and lists\)"),
    ({0: 1}, r"\{0: 1\} \(a dict\)$"),
    ({0, 1}, r"\{0, 1\} \(a set\)$"),
    (1 + 0j, r"\(1\+0j\) \(a complex\)$"),
    (torch.tensor([1 + 0j, 0j]), r"a complex Tensor"),
    (object(), r"<object object at .*> \(a object\)$"),
]


@pytest.fixture
def saliency() -> adapters.Method:
    return adapters.get("saliency")


@pytest.mark.parametrize("target, detail", BAD_TARGETS, ids=[f"{type(t).__name__}-{i}" for i, (t, _) in
                                                            enumerate(BAD_TARGETS)])
def test_bad_targets_are_refused_with_one_line(saliency, model, images, target, detail):
    with pytest.raises(AttributionError, match=PREFIX + detail) as caught:
        saliency.attribute(model, images[:2], target)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("target", [[[0.5, 1], [1, 2]], np.array([[1, 2], [0.5, 1]]), [[True, 1], [1, 2]]])
def test_multi_target_explanations_follow_the_same_rules(model, images, target):
    extremal = adapters.get("extremal", **adapters.get_class("extremal").quick_params())
    with pytest.raises(AttributionError, match=PREFIX + r".* at position \("):
        extremal.explain(model, images[:2], target)


EQUIVALENT_TO_1_2 = [
    [1.0, 2.0],
    (1.0, 2),
    np.array([1.0, 2.0]),
    np.array([1, 2], dtype=np.uint8),
    torch.tensor([1.0, 2.0]),
    torch.tensor([1.0, 2.0], dtype=torch.float16),
    torch.tensor([1, 2], dtype=torch.int32),
    [torch.tensor(1.0), np.int64(2)],
]


@pytest.mark.parametrize("target", EQUIVALENT_TO_1_2, ids=lambda t: type(t).__name__)
def test_integer_valued_targets_are_those_classes(saliency, model, images, target):
    expected = saliency.attribute(model, images[:2], torch.tensor([1, 2]))
    assert torch.equal(saliency.attribute(model, images[:2], target), expected)


@pytest.mark.parametrize("target", [3, 3.0, np.int64(3), np.float32(3.0), torch.tensor(3), torch.tensor(3.0),
                                    np.array(3)], ids=lambda t: type(t).__name__)
def test_scalar_targets_broadcast(saliency, model, images, target):
    expected = saliency.attribute(model, images[:2], torch.tensor([3, 3]))
    assert torch.equal(saliency.attribute(model, images[:2], target), expected)


@pytest.mark.parametrize("name", adapters.names())
def test_whole_float_targets_give_exactly_the_int_maps(name, model, images, build, run):
    x = images[:2]
    expected = run(build(name), model, x, torch.tensor([1, 3]))
    for target in (torch.tensor([1.0, 3.0]), np.array([1.0, 3.0]), [1.0, 3.0]):
        assert torch.equal(run(build(name), model, x, target), expected), type(target).__name__


def test_range_checks_still_apply_to_whole_floats(saliency, model, images):
    with pytest.raises(AttributionError, match="target out of range: model has 5 classes"):
        saliency.attribute(model, images[:2], torch.tensor([0.0, 5.0]))
    with pytest.raises(AttributionError, match="negative class indices"):
        saliency.attribute(model, images[:2], [-1.0, 0.0])
