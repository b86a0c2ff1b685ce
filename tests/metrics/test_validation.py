"""Bad input gives a clear error (or, for an empty mask, a documented NaN: see test_localisation)."""
import pytest
import torch
from score_cases import case, score_names

import metrics
from metrics.validation import MetricInputError

NAMES = score_names()
MODEL_SCORES = [n for n in NAMES if metrics.get(n).category not in ("localisation", "complexity")]  # these read no model
MASK_SCORES = [n for n in NAMES if "mask" in metrics.get(n).inputs]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(5, 1, 16, 15), (4, 1, 16, 16), (5, 2, 16, 16), (16, 16)])
def test_attributions_of_the_wrong_shape(name, shape):
    kwargs = case(name)
    kwargs["attributions"] = torch.rand(shape)
    with pytest.raises(MetricInputError, match="attributions must have shape"):
        metrics.get(name).compute(**kwargs)


@pytest.mark.parametrize("name", NAMES)
def test_attributions_on_another_device(name):
    kwargs = case(name)
    kwargs["attributions"] = torch.rand(5, 1, 16, 16, device="meta")
    with pytest.raises(MetricInputError, match="device|are on"):
        metrics.get(name).compute(**kwargs)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_attributions(name, bad):
    kwargs = case(name)
    kwargs["attributions"] = kwargs["attributions"].clone()
    kwargs["attributions"][3, 0, 2, 2] = bad
    with pytest.raises(MetricInputError, match=r"NaN or infinite values \(images \[3\]\)"):
        metrics.get(name).compute(**kwargs)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_parameter(name):
    with pytest.raises(TypeError, match="unknown parameter"):
        metrics.get(name).compute(**case(name), n_stepz=3)


@pytest.mark.parametrize("name", MASK_SCORES)
@pytest.mark.parametrize("shape", [(5, 1, 16, 8), (5, 1, 32, 32), (2, 1, 16, 16)])
def test_masks_of_the_wrong_size(name, shape):
    kwargs = case(name)
    kwargs["mask"] = torch.ones(shape, dtype=torch.bool)
    with pytest.raises(MetricInputError, match="mask must have shape"):
        metrics.get(name).compute(**kwargs)


@pytest.mark.parametrize("name", MASK_SCORES)
def test_masks_that_are_not_binary(name):
    kwargs = case(name)
    kwargs["mask"] = torch.rand(5, 1, 16, 16)
    with pytest.raises(MetricInputError, match="0 and 1"):
        metrics.get(name).compute(**kwargs)


@pytest.mark.parametrize("name", MASK_SCORES)
def test_a_missing_mask(name):
    kwargs = case(name)
    kwargs["mask"] = None
    with pytest.raises(ValueError, match="needs"):
        metrics.get(name).compute(**kwargs)


@pytest.mark.parametrize("name, parameter", [("deletion", "substrate"), ("insertion", "substrate"),
                                             ("faithfulness_correlation", "baseline")])
@pytest.mark.parametrize("shape", [(3, 16, 8), (2, 3, 16, 16), (1, 16, 16)])
def test_substrate_of_the_wrong_shape(name, parameter, shape):
    with pytest.raises(MetricInputError, match="must have shape"):
        metrics.get(name).compute(**case(name), **{parameter: torch.zeros(shape)})


@pytest.mark.parametrize("name", MODEL_SCORES)
def test_model_in_training_mode(name):
    kwargs = case(name)
    kwargs["model"].train()
    with pytest.raises(MetricInputError, match="training mode"):
        metrics.get(name).compute(**kwargs)


@pytest.mark.parametrize("name, bad", [("deletion", {"n_steps": 0}), ("deletion", {"n_steps": 10_000}),
                                       ("insertion", {"substrate": "grey"}), ("deletion", {"score": "logprob"}),
                                       ("deletion", {"target_class": "label"}), ("road_morf", {"fractions": [0.5, 1.0]}),
                                       ("road", {"fractions": []}), ("faithfulness_correlation", {"subset_fraction": 0}),
                                       ("infidelity", {"n_samples": 0})])
def test_bad_parameter_values(name, bad):
    with pytest.raises(MetricInputError):
        metrics.get(name).compute(**{**case(name), **bad})


def test_target_out_of_range():
    kwargs = case("deletion")
    kwargs["target"] = torch.tensor([0, 1, 2, 3, 7])
    with pytest.raises(MetricInputError, match="target out of range"):
        metrics.get("deletion").compute(**kwargs)
