"""Maps depend on (method params, model, image, target) only: not on the batch an image is in, its
position there, the internal chunking, or the global RNG; stochastic methods follow their seed."""
from __future__ import annotations

import pytest
import torch

import adapters

METHODS = adapters.names()


@pytest.mark.parametrize("name", METHODS)
def test_batch_sizes_1_3_8_agree(name, model, images, targets, build, run, maps_close):
    method = build(name)
    whole = run(method, model, images, targets)
    for size in (1, 3):
        pieces = [run(method, model, images[i:i + size], targets[i:i + size]) for i in range(0, len(images), size)]
        maps_close(torch.cat(pieces), whole)


@pytest.mark.parametrize("name", METHODS)
def test_position_in_batch_does_not_matter(name, model, images, targets, build, run, maps_close):
    method = build(name)
    order = torch.tensor([3, 0, 2, 1])
    maps_close(run(method, model, images[order], targets[order]), run(method, model, images[:4], targets[:4])[order])


@pytest.mark.parametrize("name", [n for n in METHODS if adapters.get_class(n).memory_knobs])
def test_internal_chunking_does_not_matter(name, model, images, targets, build, run, maps_close):
    reference = run(build(name), model, images[:5], targets[:5])
    for knob in adapters.get_class(name).memory_knobs:
        for value in (1, 2):
            maps_close(run(build(name, **{knob: value}), model, images[:5], targets[:5]), reference)


@pytest.mark.parametrize("name", [n for n in METHODS if adapters.get_class(n).memory_knobs])
def test_memory_budget_only_changes_speed(name, model, images, targets, build, run, maps_close):
    small = build(name, memory_mb=0.05)  # a budget of a few rows
    maps_close(run(small, model, images[:5], targets[:5]), run(build(name), model, images[:5], targets[:5]))


@pytest.mark.parametrize("name", METHODS)
def test_same_seed_same_map_whatever_the_global_rng(name, model, images, targets, build, run):
    torch.manual_seed(123)
    first = run(build(name), model, images[:3], targets[:3])
    torch.manual_seed(456)
    second = run(build(name), model, images[:3], targets[:3])
    assert torch.equal(first, second)


@pytest.mark.parametrize("name", [n for n in METHODS if adapters.get_class(n).stochastic])
def test_another_seed_another_map(name, model, images, targets, build, run):
    first = run(build(name, seed=0), model, images[:3], targets[:3])
    second = run(build(name, seed=1), model, images[:3], targets[:3])
    assert not torch.allclose(first, second)


def test_random_control_differs_between_images(model, images, build, run):
    maps = run(build("random"), model, images[:2], 0)
    assert not torch.allclose(maps[0], maps[1])
