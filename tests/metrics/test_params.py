"""Protocol parameters are declared once (default, type, range) and every bad value is refused in one
line before any work: before the model is called, and from ``check_params`` alone (the bench's
validation pass, which has no model or data). Non-finite clean logits name the model."""
from __future__ import annotations

import inspect
import math
import re
from typing import Any

import numpy as np
import pytest
import torch
from score_cases import case
from score_helpers import GradientMethod, images, tiny_cnn
from torch import Tensor, nn

import metrics
from metrics import params as declared
from metrics.registry import register
from metrics.scores import deletion_insertion, sanity
from metrics.validation import MetricInputError
from sanity_helpers import BLOCKS


class Tripwire(nn.Module):
    """A model that fails the test if any score gets as far as calling it."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        raise AssertionError("the model was called before the bad value was refused")


class TripwireMethod:
    def attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        raise AssertionError("the method was called before the bad value was refused")


def untouched_case(name: str) -> dict[str, Any]:
    """Keyword arguments for ``name`` whose model and method must never run."""
    spec = metrics.get(name)
    if spec.category != "sanity":
        return {**case(name), "model": Tripwire(), **({"method": TripwireMethod()} if "method" in spec.inputs else {})}
    inputs = {"method": TripwireMethod(), "blocks": BLOCKS, "random_label_model": Tripwire()}
    return {"model": Tripwire(), "x": torch.randn(2, 3, 48, 48), "target": torch.tensor([0, 1]),
            "attributions": torch.rand(2, 1, 48, 48), **{k: inputs[k] for k in spec.inputs}}


NAN, INF = float("nan"), float("inf")
# (metric, parameter, bad value, what the message says is accepted)
BAD_PROTOCOL = [
    ("deletion", "blur_sigma", 0, r"a finite float in \(0, 1000\]"),
    ("deletion", "blur_sigma", -1.0, "a finite float"),
    ("insertion", "blur_sigma", NAN, "a finite float"),
    ("insertion", "blur_sigma", INF, "a finite float"),
    ("insertion", "blur_sigma", 1e6, r"in \(0, 1000\]"),
    ("insertion", "blur_kernel", 10, r"an odd integer in \[1, 255\]"),
    ("deletion", "blur_kernel", 0, "an odd integer"),
    ("deletion", "n_steps", 10**6, r"an integer in \[1, 65536\]"),
    ("deletion", "n_steps", "4", "an integer"),
    ("deletion", "n_steps", 2.5, "an integer"),
    ("insertion", "n_steps", True, "an integer"),
    ("deletion", "n_steps", 0, "an integer"),
    ("insertion", "substrate", "grey", "one of 'zeros', 'blur', 'mean' or a tensor"),
    ("deletion", "substrate", 3, "one of 'zeros'"),
    ("deletion", "score", "logprob", "one of 'probability', 'logit'"),
    ("deletion", "target_class", "label", "one of 'predicted', 'target'"),
    ("road", "fractions", [], "a non-empty list of at most 256 floats in \\(0, 1\\)"),
    ("road_morf", "fractions", [0.5, 1.0], "a non-empty list"),
    ("road_lerf", "fractions", 0.5, "a non-empty list"),
    ("road", "fractions", "0.5", "a non-empty list"),
    ("road", "fractions", [0.1] * 1000, "at most 256"),
    ("road_morf", "fractions", [0.2, NAN], "a non-empty list"),
    ("road_lerf", "fractions", [True], "a non-empty list"),
    ("road", "solver_tol", 0, r"a finite float in \(0, 1\)"),
    ("road_lerf", "solver_tol", 1.0, r"a finite float in \(0, 1\)"),
    ("road_morf", "noise_std", -0.01, "a finite float >= 0"),
    ("faithfulness_correlation", "n_runs", 1, r"an integer in \[2, 4096\]"),
    ("faithfulness_correlation", "n_runs", 10**9, r"an integer in \[2, 4096\]"),
    ("faithfulness_correlation", "subset_fraction", 1.0, r"a finite float in \(0, 1\)"),
    ("faithfulness_correlation", "baseline", "noise", "one of 'zeros'"),
    ("infidelity", "noise_std", 0, "a finite float > 0"),
    ("infidelity", "n_samples", 10**6, r"an integer in \[2, 1024\]"),
    ("infidelity", "n_samples", 1, r"an integer in \[2, 1024\]"),
    ("infidelity", "score", "prob", "one of 'probability', 'logit'"),
    ("sensitivity", "radius", 0.0, "a finite float > 0"),
    ("sensitivity", "norm", "nuc", "'fro' or a number p >= 1"),
    ("sensitivity", "norm", 0.5, "'fro' or a number p >= 1"),
    ("sensitivity", "n_samples", 0, "an integer"),
    ("pointing_game", "smooth_sigma", 1e6, r"a finite float in \[0, 32\]"),
    ("pointing_game", "reference_size", 0, "None or an integer"),
    ("pointing_game", "tolerance_px", -1, "a finite float >= 0"),
    ("pointing_game", "tolerance_px", "15", "a finite float >= 0"),
    ("model_randomisation_cascading", "measure", "l2", "one of 'spearman_abs'"),
    ("model_randomisation_cascading", "summary", "auc", "one of 'mean', 'last'"),
    ("model_randomisation_cascading", "keep_maps", 1, "a bool"),
    ("model_randomisation_cascading", "hog_cell", 10**6, r"an integer in \[1, 1024\]"),
    ("model_randomisation_independent", "order", "random", "one of 'top_down', 'bottom_up'"),
    ("model_randomisation_independent", "batchnorm", "freeze", "one of 'reset'"),
    ("empirical_mprt", "n_bins", 1, r"an integer in \[2, 65536\]"),
    ("empirical_mprt", "n_bins", 10**9, r"an integer in \[2, 65536\]"),
    ("random_logit", "seed", "abc", "None or an integer"),
    ("data_randomisation", "reseed_stochastic", "yes", "a bool"),
]
# Core arguments, which only compute sees: (metric, argument, bad value, accepted)
BAD_CORE = [
    ("deletion", "seed", "abc", "an integer"),
    ("road", "seed", True, "an integer"),
    ("faithfulness_correlation", "seed", 1.5, "an integer"),
    ("insertion", "seed", 2**64, r"an integer in \[-2\*\*63, 2\*\*63 - 1\]"),
    ("infidelity", "device_budget_bytes", 0, "None or an integer >= 1"),
    ("pointing_game", "device_budget_bytes", -5, "None or an integer >= 1"),
    ("sensitivity", "device_budget_bytes", "1GB", "None or an integer >= 1"),
]


def message(name: str, parameter: str, value: Any, accepted: str) -> str:
    return rf"^metric '{name}': {parameter} must be .*{accepted}.*, got {re.escape(declared.show(value))}$"


def cases(rows: list[tuple]) -> list[Any]:
    return [pytest.param(*row, id=f"{row[0]}-{row[1]}-{declared.show(row[2])[:20]}") for row in rows]


@pytest.mark.parametrize("name, parameter, value, accepted", cases(BAD_PROTOCOL + BAD_CORE))
def test_a_bad_value_is_refused_before_the_model_is_called(name: str, parameter: str, value: Any,
                                                           accepted: str) -> None:
    with pytest.raises(MetricInputError, match=message(name, parameter, value, accepted)) as error:
        metrics.get(name).compute(**{**untouched_case(name), parameter: value})
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("name, parameter, value, accepted", cases(BAD_PROTOCOL))
def test_check_params_alone_refuses_a_bad_value(name: str, parameter: str, value: Any, accepted: str) -> None:
    """What the bench's validation pass calls, with no model or data."""
    with pytest.raises(MetricInputError, match=message(name, parameter, value, accepted)):
        metrics.get(name).check_params({parameter: value})


def test_the_module_functions_check_their_arguments_too() -> None:
    kwargs = untouched_case("deletion")
    with pytest.raises(MetricInputError, match="blur_sigma"):
        deletion_insertion.deletion(**{**kwargs, "blur_sigma": 0})
    kwargs = untouched_case("random_logit")
    with pytest.raises(MetricInputError, match="hog_cell"):
        sanity.random_logit(**{**kwargs, "hog_cell": 2.5})


def test_check_params_returns_canonical_values() -> None:
    got = metrics.get("road").check_params({"fractions": [0.3, 1 / 2], "noise_std": 0})
    assert got == {"fractions": (0.3, 0.5), "noise_std": 0.0} and isinstance(got["noise_std"], float)
    got = metrics.get("deletion").check_params({"n_steps": np.int64(8), "blur_sigma": 3})
    assert got == {"n_steps": 8} | {"blur_sigma": 3.0}
    assert type(got["n_steps"]) is int and type(got["blur_sigma"]) is float
    assert metrics.get("sensitivity").check_params({"norm": 2}) == {"norm": 2.0}
    assert metrics.get("pointing_game").check_params({"reference_size": None}) == {"reference_size": None}


def test_check_params_refuses_unknown_names() -> None:
    with pytest.raises(TypeError, match="unknown parameter"):
        metrics.get("deletion").check_params({"n_stepz": 4})


@pytest.mark.parametrize("name", metrics.names())
def test_declared_defaults_pass_their_own_check_and_are_the_params(name: str) -> None:
    spec = metrics.get(name)
    assert spec.params == {p: d.default for p, d in spec.declarations.items()}
    for parameter, declaration in spec.declarations.items():
        assert declaration.check(parameter, declaration.default) == declaration.default, parameter
        assert declaration.accepts() and "\n" not in declaration.accepts()
    assert spec.check_params(spec.params) == spec.params


def _ints(declaration: declared.Param) -> list[declared.Int]:
    inner = declaration.inner if isinstance(declaration, declared.OrNone) else declaration
    return [inner] if isinstance(inner, declared.Int) else []


@pytest.mark.parametrize("name", metrics.names())
def test_every_count_has_an_upper_bound(name: str) -> None:
    for parameter, declaration in metrics.get(name).declarations.items():
        assert all(i.high is not None for i in _ints(declaration)), parameter
        if isinstance(declaration, declared.Fractions):
            assert declaration.max_length >= len(declaration.default)


@pytest.mark.parametrize("name", metrics.names())
def test_declared_defaults_are_the_function_defaults(name: str) -> None:
    """The function's signature may not drift from the declaration (nor from the core arguments)."""
    spec = metrics.get(name)
    signature = inspect.signature(spec.fn).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.values())
    for parameter, declaration in {**declared.CORE, **spec.declarations}.items():
        if parameter in signature:
            assert signature[parameter].default == declaration.default, parameter
        else:
            assert takes_any and parameter not in spec.declarations, f"{name} does not take {parameter}"


def test_a_bare_default_cannot_be_registered() -> None:
    with pytest.raises(TypeError, match=r"\['n_steps'\] must be declared"):
        register("bare_defaults", category="faithfulness", direction="lower", params={"n_steps": 8})
    assert "bare_defaults" not in metrics.names()


class NonFinite(nn.Module):
    """The tiny CNN, with logits ``value`` for the clean images ``poisoned`` (also when they are the
    probe's one image); counts the rows that are not clean images (the perturbed passes)."""

    def __init__(self, inner: nn.Module, x: Tensor, poisoned: list[int], value: float) -> None:
        super().__init__()
        self.inner, self.x, self.poisoned, self.value, self.perturbed_rows = inner, x, poisoned, value, 0
        self.eval()

    def forward(self, batch: Tensor) -> Tensor:
        logits = self.inner(batch)
        for row, image in enumerate(batch):
            clean = [i for i in range(len(self.x)) if torch.equal(image, self.x[i])]
            self.perturbed_rows += not clean
            if clean and clean[0] in self.poisoned:
                logits[row] = self.value
        return logits


READS_THE_MODEL = ["deletion", "insertion", "road", "road_morf", "road_lerf", "faithfulness_correlation",
                   "infidelity", "sensitivity"]


@pytest.mark.parametrize("name", READS_THE_MODEL)
@pytest.mark.parametrize("value", [NAN, INF, -INF])
@pytest.mark.parametrize("poisoned", [[1, 3], [0, 2]])  # [0, ...]: the adapters' probe of x[:1] sees it first
def test_non_finite_clean_logits_name_the_model_before_any_perturbed_pass(name: str, value: float,
                                                                          poisoned: list[int]) -> None:
    kwargs = case(name)
    model = NonFinite(kwargs["model"], kwargs["x"], poisoned, value)
    with pytest.raises(MetricInputError, match=rf"^the model's output \(logits\) is not finite \(NaN or inf\) "
                                               rf"for images \[{poisoned[0]}, {poisoned[1]}\]"):
        metrics.get(name).compute(**{**kwargs, "model": model})
    assert model.perturbed_rows == 0


def test_random_logit_names_a_non_finite_model() -> None:
    model, x = tiny_cnn(), images(2, size=48)
    with pytest.raises(MetricInputError, match=r"\(logits\) is not finite .* images \[0\]"):
        metrics.random_logit(model=NonFinite(model, x, [0], NAN), x=x, target=torch.tensor([0, 1]),
                             attributions=GradientMethod().attribute(model, x, torch.tensor([0, 1])),
                             method=GradientMethod())


def test_finite_logits_still_score_and_their_perturbed_passes_are_counted() -> None:
    """The control for the test above: a healthy model scores, and the counter does see perturbed rows."""
    kwargs = case("deletion")
    model = NonFinite(kwargs["model"], kwargs["x"], [], NAN)
    result = metrics.get("deletion").compute(**{**kwargs, "model": model})
    assert model.perturbed_rows > 0 and bool(torch.isfinite(result.scores).all())
    assert not math.isnan(result.summary()["mean"])


def test_score_ranges_are_declared_where_a_metric_has_one() -> None:
    import metrics
    from metrics.registry import register

    assert {name: metrics.get(name).bounds for name in ("pointing_game", "relevance_mass", "relevance_rank")} == \
        dict.fromkeys(("pointing_game", "relevance_mass", "relevance_rank"), (0.0, 1.0))
    assert metrics.get("faithfulness_correlation").bounds == (-1.0, 1.0)
    assert metrics.get("deletion").bounds is None  # a logit score has no range
    with pytest.raises(ValueError, match=r"bounds must be \(low, high\) with low < high"):
        register("bad_bounds_metric", category="faithfulness", direction="higher", bounds=(1.0, 0.0))
