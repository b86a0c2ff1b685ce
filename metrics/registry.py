"""Registry of scores: each entry carries its category, direction and protocol parameters.

A metric is a function registered with :func:`register`. It is called with keyword arguments only;
``inputs`` names what it needs beyond ``model, x, target, attributions`` (for example ``mask`` for
localisation, ``method`` and ``blocks`` for the sanity checks), so that a harness can pass exactly
those. Its protocol parameters are declared once (:mod:`metrics.params`: default, type and range),
checked before any work and written next to every score.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import torch
from torch import Tensor

from adapters.modality import WHAT, modality_of

from .params import CORE, Param

# The literature's six families (DESIGN.md, "Families"); "sanity" is the randomisation family.
Category = Literal["faithfulness", "localisation", "sanity", "robustness", "complexity", "axiomatic"]
Direction = Literal["higher", "lower"]


@dataclass
class MetricResult:
    """Per-image scores (N,), optionally curves (N, S) over ``curve_x`` (S,), and extra per-image
    tensors keyed by name. NaN in ``scores`` means "no score" for that image (documented per metric)."""

    scores: Tensor
    curves: Tensor | None = None
    curve_x: Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, float | int]:
        """Mean of the scores over the images that have one (NaN = "no score" is skipped, never
        counted as 0 or 1), with how many images were scored and how many were skipped."""
        scored = ~torch.isnan(self.scores)
        n_scored = int(scored.sum())
        mean = float(self.scores[scored].double().mean()) if n_scored else float("nan")
        return {"mean": mean, "n_scored": n_scored, "n_no_score": int((~scored).sum())}


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric. ``declarations`` (name -> :class:`metrics.params.Param`) are the one place
    a protocol parameter's default, type and range live; ``params`` (name -> default) is derived."""

    name: str
    fn: Callable[..., MetricResult]
    category: Category
    direction: Direction
    declarations: dict[str, Param]
    inputs: tuple[str, ...] = ()
    description: str = ""
    #: The closed interval every score of this metric lies in, whatever its parameters (None: no such
    #: interval, e.g. a logit). A stored score outside it is refused when results are read back.
    bounds: tuple[float, float] | None = None
    #: The input kinds the metric scores (``"image"``: maps (N, 1, H, W); ``"text"``: token maps
    #: (N, L) over ids (N, L), see :mod:`adapters.modality`); the grid leaves other cells out.
    modalities: tuple[str, ...] = ("image",)

    @property
    def params(self) -> dict[str, Any]:
        """The protocol parameters and their defaults."""
        return {name: declaration.default for name, declaration in self.declarations.items()}

    def __call__(self, **kwargs: Any) -> MetricResult:
        return self.compute(**kwargs)

    def compute(self, **kwargs: Any) -> MetricResult:
        """Call the metric; unknown parameters, missing inputs and bad values of the protocol
        parameters, ``seed`` and ``device_budget_bytes`` are clear errors before any work."""
        core = {"model", "x", "target", "attributions", *CORE, *self.inputs}
        unknown = sorted(set(kwargs) - core - set(self.declarations))
        if unknown:
            raise TypeError(f"unknown parameter(s) {unknown} for metric {self.name!r}; "
                            f"protocol parameters: {sorted(self.declarations)}")
        modality = modality_of(kwargs["model"]) if "model" in kwargs else None
        if modality is not None and modality not in self.modalities:
            raise ValueError(f"metric {self.name!r} scores {' and '.join(WHAT[m] for m in self.modalities)}; "
                             f"this model takes {WHAT[modality]}")
        missing = [name for name in self.inputs if kwargs.get(name) is None]
        if missing:
            raise ValueError(f"metric {self.name!r} needs {missing}")
        kwargs.update(self.check_params({k: v for k, v in kwargs.items() if k in self.declarations}))
        for name, declaration in CORE.items():  # a metric may declare seed itself (the sanity checks do)
            if name in kwargs and name not in self.declarations:
                kwargs[name] = declaration.check(name, kwargs[name], f"metric {self.name!r}")
        return self.fn(**kwargs)

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` (protocol parameters only) checked for names, types and ranges before any work;
        returns them in canonical form. A bad one raises a ``MetricInputError`` (a ``ValueError``) whose
        one-line message names the metric, the parameter, what is accepted and what was given."""
        unknown = sorted(set(params) - set(self.declarations))
        if unknown:
            raise TypeError(f"metric {self.name!r}: unknown parameter(s) {unknown}; "
                            f"protocol parameters: {sorted(self.declarations)}")
        return {name: self.declarations[name].check(name, value, f"metric {self.name!r}")
                for name, value in params.items()}

    def protocol(self, **overrides: Any) -> dict[str, Any]:
        """The protocol parameters a score was computed with (defaults updated by ``overrides``)."""
        merged = dict(self.params)
        merged.update({k: v for k, v in overrides.items() if k in self.params})
        return merged


_METRICS: dict[str, MetricSpec] = {}


def register(name: str, *, category: Category, direction: Direction, params: dict[str, Param] | None = None,
             inputs: tuple[str, ...] = (), description: str = "",
             bounds: tuple[float, float] | None = None,
             modalities: tuple[str, ...] = ("image",)
             ) -> Callable[[Callable[..., MetricResult]], Callable[..., MetricResult]]:
    """Function decorator: register ``fn`` as metric ``name`` with its protocol parameters declared
    (``{name: metrics.params.Param}``). A duplicate name, or a parameter given as a bare default,
    raises. Returns ``fn`` wrapped by :meth:`MetricSpec.compute`, so that calling the module's function
    directly checks its arguments exactly as ``metrics.get(name).compute`` does."""
    if direction not in ("higher", "lower"):
        raise ValueError(f"direction must be 'higher' or 'lower', got {direction!r}")
    if bounds is not None and not (len(bounds) == 2 and bounds[0] < bounds[1]):
        raise ValueError(f"metric {name!r}: bounds must be (low, high) with low < high, got {bounds!r}")
    bare = sorted(p for p, declaration in (params or {}).items() if not isinstance(declaration, Param))
    if bare:
        raise TypeError(f"metric {name!r}: parameter(s) {bare} must be declared with metrics.params "
                        f"(Int, Float, Choice, ...), not given as bare defaults")

    def decorator(fn: Callable[..., MetricResult]) -> Callable[..., MetricResult]:
        if name in _METRICS:
            raise ValueError(f"metric {name!r} is already registered")
        spec = MetricSpec(name=name, fn=fn, category=category, direction=direction,
                          declarations=dict(params or {}), inputs=tuple(inputs),
                          description=description or (fn.__doc__ or "").strip().split("\n")[0],
                          bounds=None if bounds is None else (float(bounds[0]), float(bounds[1])),
                          modalities=tuple(modalities))
        _METRICS[name] = spec

        @functools.wraps(fn)
        def checked(**kwargs: Any) -> MetricResult:
            return spec.compute(**kwargs)

        return checked

    return decorator


def names(category: str | None = None) -> list[str]:
    return sorted(n for n, s in _METRICS.items() if category is None or s.category == category)


def get(name: str) -> MetricSpec:
    if name not in _METRICS:
        raise KeyError(f"unknown metric {name!r}; registered metrics: {', '.join(names())}")
    return _METRICS[name]


def as_scores(values: Tensor) -> Tensor:
    """Per-image scores as float32 on the CPU (what results tables store)."""
    return values.detach().to("cpu", torch.float32)
