"""Block randomisation: exact restoration, order of the cascade, seeds, batch-norm treatment, bad blocks."""
from __future__ import annotations

from contextlib import closing

import pytest
import torch
from torch import nn

from metrics import randomisation
from metrics.randomisation import BlockError
from sanity_helpers import BLOCKS, Tiny


def trained_tiny() -> nn.Module:
    """A Tiny whose weights and batch-norm statistics are nothing like a fresh initialisation."""
    torch.manual_seed(0)
    model = Tiny()
    with torch.no_grad():
        for tensor in list(model.parameters()) + [b for b in model.buffers() if b.is_floating_point()]:
            tensor.copy_(torch.rand_like(tensor) * 2 + 0.5)
    return model.eval()


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _changed_blocks(model: nn.Module, before: dict[str, torch.Tensor]) -> list[str]:
    """Blocks with at least one tensor different from ``before``."""
    now = model.state_dict()
    return [name for name, _ in BLOCKS if any(not torch.equal(now[k], before[k]) for k in before if k.startswith(name + "."))]


def _assert_bit_identical(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    now = model.state_dict()
    assert now.keys() == before.keys()
    for key, value in before.items():
        assert torch.equal(now[key], value) and now[key].dtype == value.dtype, key


@pytest.mark.parametrize("mode", ["cascading", "independent"])
@pytest.mark.parametrize("order", ["top_down", "bottom_up"])
def test_state_dict_bit_identical_after_all_steps(mode: str, order: str) -> None:
    model = trained_tiny()
    before = _state(model)
    params_before = [id(p) for p in model.parameters()]
    flags = [p.requires_grad for p in model.parameters()]
    for _, stepped in randomisation.randomisation_steps(model, BLOCKS, mode=mode, order=order, seed=3):
        assert stepped is model  # in place, no copy
        assert _changed_blocks(model, before)  # something really was randomised
    _assert_bit_identical(model, before)
    assert [id(p) for p in model.parameters()] == params_before
    assert [p.requires_grad for p in model.parameters()] == flags


def test_restored_after_early_exit_and_after_an_exception() -> None:
    model = trained_tiny()
    before = _state(model)
    with closing(randomisation.randomisation_steps(model, BLOCKS)) as steps:
        next(steps)
        next(steps)
        assert _changed_blocks(model, before) == ["fc", "body"]
    _assert_bit_identical(model, before)
    with pytest.raises(RuntimeError, match="boom"):
        with closing(randomisation.randomisation_steps(model, BLOCKS)) as steps:
            for _ in steps:
                raise RuntimeError("boom")
    _assert_bit_identical(model, before)
    with pytest.raises(RuntimeError, match="boom"):
        with randomisation.randomised(model, BLOCKS, ["body"]):
            assert _changed_blocks(model, before) == ["body"]
            raise RuntimeError("boom")
    _assert_bit_identical(model, before)


def test_a_replaced_parameter_object_is_put_back() -> None:
    class Replacing(nn.Linear):
        def reset_parameters(self) -> None:  # rebinds instead of writing in place
            self.weight = nn.Parameter(torch.zeros_like(self.weight))

    model = nn.Sequential(Replacing(4, 2)).eval()
    weight = model[0].weight
    before = _state(model)
    with randomisation.randomised(model, [("all", ["0"])]):
        assert model[0].weight is not weight
    assert model[0].weight is weight
    _assert_bit_identical(model, before)


@pytest.mark.parametrize("order, expected", [("top_down", ["fc", "body", "stem"]), ("bottom_up", ["stem", "body", "fc"])])
def test_cascading_accumulates_in_order(order: str, expected: list[str]) -> None:
    model = trained_tiny()
    before = _state(model)
    steps = [(name, _changed_blocks(model, before))
             for name, _ in randomisation.randomisation_steps(model, BLOCKS, mode="cascading", order=order)]
    assert [name for name, _ in steps] == expected
    for k, (_, changed) in enumerate(steps):
        assert sorted(changed) == sorted(expected[: k + 1])


def test_independent_randomises_one_block_at_a_time() -> None:
    model = trained_tiny()
    before = _state(model)
    for name, _ in randomisation.randomisation_steps(model, BLOCKS, mode="independent"):
        assert _changed_blocks(model, before) == [name]


def test_seeded_weights_are_per_block_and_reproducible() -> None:
    model = trained_tiny()

    def weights_at_each_step(mode: str, seed: int) -> dict[str, torch.Tensor]:
        return {name: m.body[0].weight.detach().clone()
                for name, m in randomisation.randomisation_steps(model, BLOCKS, mode=mode, seed=seed)}

    cascading = weights_at_each_step("cascading", seed=7)
    independent = weights_at_each_step("independent", seed=7)
    # the block gets the same random draw whether it is reached in the cascade or alone
    assert torch.equal(cascading["body"], independent["body"])
    assert torch.equal(cascading["body"], weights_at_each_step("cascading", seed=7)["body"])
    assert not torch.equal(cascading["body"], weights_at_each_step("cascading", seed=8)["body"])


def test_global_rng_is_untouched() -> None:
    model = trained_tiny()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    for _ in randomisation.randomisation_steps(model, BLOCKS):
        pass
    assert torch.equal(torch.rand(3), expected)


def test_reinitialisation_on_the_cpu_draws_the_stream_of_manual_seed() -> None:
    layer = nn.Linear(5, 4)
    randomisation.reinitialise([layer], seed=11)
    torch.manual_seed(11)
    expected = nn.Linear(5, 4)  # its constructor draws exactly what reset_parameters draws
    assert torch.equal(layer.weight, expected.weight) and torch.equal(layer.bias, expected.bias)


@pytest.mark.parametrize("batchnorm", ["reset", "keep_stats", "keep"])
def test_batchnorm_treatment(batchnorm: str) -> None:
    model = trained_tiny()
    bn = model.body[1]
    trained = {k: v.clone() for k, v in bn.state_dict().items()}
    conv_before = model.body[0].weight.detach().clone()
    with randomisation.randomised(model, BLOCKS, ["body"], batchnorm=batchnorm):
        assert not torch.equal(model.body[0].weight, conv_before)  # the convolution is always re-drawn
        if batchnorm == "keep":
            assert all(torch.equal(bn.state_dict()[k], v) for k, v in trained.items())
        else:
            assert torch.equal(bn.weight, torch.ones_like(bn.weight))
            assert torch.equal(bn.bias, torch.zeros_like(bn.bias))
            stats_kept = batchnorm == "keep_stats"
            assert torch.equal(bn.running_mean, trained["running_mean"]) is stats_kept
            assert torch.equal(bn.running_var, trained["running_var"]) is stats_kept
            if not stats_kept:
                assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
                assert torch.equal(bn.running_var, torch.ones_like(bn.running_var))


def test_parameters_without_an_initialiser_are_redrawn() -> None:
    class WithToken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.token = nn.Parameter(torch.full((64,), 5.0) + torch.linspace(0, 1, 64))
            self.fc = nn.Linear(4, 2)

    model = WithToken().eval()
    token = model.token.detach().clone()
    with randomisation.randomised(model, [("all", [""])]):  # "" is the root module
        assert not torch.equal(model.token, token)
        assert model.token.abs().mean() < 2.0  # zero-mean draw, not the trained offset of 5


def test_copy_leaves_the_callers_model_alone() -> None:
    model = trained_tiny()
    before = _state(model)
    for _, stepped in randomisation.randomisation_steps(model, BLOCKS, copy=True):
        assert stepped is not model
        _assert_bit_identical(model, before)


@pytest.mark.parametrize("blocks, message", [
    (None, "no randomisation blocks"),
    ([], "no randomisation blocks"),
    ([("fc", ["fc"]), ("head", ["classifier"])], "does not have"),
    ([("fc", ["fc"]), ("fc", ["body"])], "appears twice"),
    ([("body", ["body"]), ("conv", ["body.0"])], "also belongs"),
    ([("fc", [])], "lists no modules"),
    (["fc"], "a block is"),
])
def test_bad_blocks_are_clear_errors(blocks: object, message: str) -> None:
    model = trained_tiny()
    before = _state(model)
    with pytest.raises(BlockError, match=message):
        list(randomisation.randomisation_steps(model, blocks))
    _assert_bit_identical(model, before)


def test_bad_options_and_unknown_block_names() -> None:
    model = trained_tiny()
    with pytest.raises(ValueError, match="mode"):
        list(randomisation.randomisation_steps(model, BLOCKS, mode="sideways"))
    with pytest.raises(ValueError, match="order"):
        list(randomisation.randomisation_steps(model, BLOCKS, order="random"))
    with pytest.raises(ValueError, match="batchnorm"):
        list(randomisation.randomisation_steps(model, BLOCKS, batchnorm="freeze"))
    with pytest.raises(BlockError, match="unknown block"):
        with randomisation.randomised(model, BLOCKS, ["layer4"]):
            pass


def test_block_objects_from_a_spec_are_accepted() -> None:
    class Block:  # the shape of bench.models.Block: name + module names
        def __init__(self, name: str, modules: tuple[str, ...]) -> None:
            self.name, self.modules = name, modules

    model = trained_tiny()
    names = [n for n, _ in randomisation.randomisation_steps(model, [Block(n, tuple(m)) for n, m in BLOCKS])]
    assert names == ["fc", "body", "stem"]
