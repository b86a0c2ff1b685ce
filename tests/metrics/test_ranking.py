"""Pixel ranking: highest first, all channels of a pixel together, seeded reproducible tie-breaking."""
import torch

from metrics.ranking import pixel_ranks, rank_pixels, rank_positions


def test_distinct_values_are_ranked_highest_first():
    a = torch.tensor([[[[0.1, 0.9], [0.5, -0.3]]]])
    assert rank_pixels(a).tolist() == [[1, 2, 0, 3]]
    assert rank_pixels(a, descending=False).tolist() == [[3, 0, 2, 1]]


def test_ties_follow_a_seeded_order_that_is_reproducible_and_differs_between_seeds():
    constant = torch.zeros(1, 1, 8, 8)
    first, again, other = rank_pixels(constant, seed=3), rank_pixels(constant, seed=3), rank_pixels(constant, seed=4)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert sorted(first[0].tolist()) == list(range(64))  # a permutation: every position once
    # Not the memory order argsort would give: ties are really shuffled.
    assert not torch.equal(first[0], torch.arange(64))


def test_ties_never_override_real_differences():
    a = torch.zeros(1, 1, 8, 8)
    a[0, 0, 2:4, 2:4] = 1.0  # four tied top pixels
    order = rank_pixels(a, seed=0)[0]
    assert set(order[:4].tolist()) == {18, 19, 26, 27}


def test_an_image_is_ranked_the_same_alone_and_in_any_batch():
    a = torch.randint(0, 3, (5, 1, 6, 6)).float()  # many ties
    batch = rank_pixels(a, seed=7)
    for i in range(5):
        assert torch.equal(rank_pixels(a[i:i + 1], seed=7)[0], batch[i])


def test_rank_positions_inverts_the_order():
    a = torch.rand(3, 1, 5, 5)
    order = rank_pixels(a)
    ranks = rank_positions(order)
    assert torch.equal(order.gather(1, ranks), torch.arange(25).expand(3, 25))
    assert pixel_ranks(a).shape == (3, 1, 5, 5)
    assert torch.equal(pixel_ranks(a).flatten(1), ranks)
