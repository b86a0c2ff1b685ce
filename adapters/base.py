"""The one interface every attribution method implements.

A method holds configuration only; :meth:`Method.attribute` validates the inputs, checks that the
model is left exactly as it was found, and checks the map it returns. Subclasses implement
:meth:`Method._attribute` and :meth:`Method.cost`.
"""
from __future__ import annotations

import inspect
import itertools
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from .budget import DEFAULT_MEMORY_MB, rows_for_budget
from .errors import AttributionError, NotApplicable
from .logits import LogitsWatch, logits_error, non_finite_images
from .modality import WHAT, modality_of
from .probe import probe
from .targets import class_indices
from .token_inputs import apply_attention_mask, check_modality, check_token_ids

T = TypeVar("T")


class UnknownMethodError(AttributionError, KeyError):
    """``adapters.get`` was asked for a name nobody registered (also a ``KeyError``)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnknownParameterError(AttributionError, TypeError):
    """A method was given a parameter it does not take (also a ``TypeError``)."""


#: Errors after which running the model once more to diagnose would only fail again.
_OUT_OF_MEMORY = (MemoryError, torch.cuda.OutOfMemoryError)
_OFF_X = " (perturbed, noisy or interpolated copies), though finite on x itself"


@dataclass(frozen=True)
class Cost:
    """Model passes one image costs: ``forward`` full forward passes and ``backward`` input-gradient
    backward passes (each backward implies its own forward, counted in ``forward``)."""

    forward: int
    backward: int = 0


@dataclass(frozen=True)
class ModelState:
    """What a method must leave untouched: training flags, requires_grad flags and hook counts."""

    training: tuple[bool, ...]
    requires_grad: tuple[bool, ...]
    hooks: tuple[int, ...]
    grads: tuple[object, ...] = ()

    @classmethod
    def of(cls, model: nn.Module) -> "ModelState":
        # One walk over the modules, reading each one's own parameters (what ``model.parameters()``
        # yields, in its order, without its second walk): this runs twice per attribute() call, and
        # on a small model (the zoo's ViT: ~6 ms a no-grad forward of 8 images) every walk shows.
        training, requires_grad, hooks, grads = [], [], [], []
        seen: set[int] = set()
        for module in model.modules():
            training.append(module.training)
            hooks.append(len(module._forward_hooks) + len(module._forward_pre_hooks)
                         + len(module._backward_hooks) + len(module._backward_pre_hooks))
            for parameter in module._parameters.values():
                if parameter is None or id(parameter) in seen:
                    continue
                seen.add(id(parameter))
                requires_grad.append(parameter.requires_grad)
                # A weight gradient that appears or changes means the method ran a full backward
                # into the parameters (wasted work, and it would leak into a user's training loop).
                grad = parameter.grad
                grads.append(None if grad is None else (grad.data_ptr(), grad._version))
        return cls(training=tuple(training), requires_grad=tuple(requires_grad), hooks=tuple(hooks),
                   grads=tuple(grads))


def model_device(model: nn.Module) -> torch.device:
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return torch.device("cpu") if first is None else first.device


def check_inputs(model: nn.Module, x: Tensor, target: Tensor | int | list[int],
                 state: "ModelState | None" = None) -> Tensor:
    """Validate ``(model, x, target)`` against the contract and return ``target`` as a LongTensor (N,).

    ``target``: an int (or a 0-d tensor / numpy scalar), broadcast to every image, or one class
    index per image as a list, numpy array or tensor; whole floats count as their class, anything
    else (fractional, NaN, bool, str, None) is refused (:func:`adapters.targets.class_indices`).
    A model whose logits on ``x[:1]`` (the probe's image) are not finite is refused here, before
    any method runs. A text model (:mod:`adapters.modality`) takes token ids (N, L) instead,
    checked by :func:`adapters.token_inputs.check_token_ids`; the other modality's input is one
    clear error either way. ``state``: the model's :class:`ModelState`, when the caller has taken
    it already (its training flags spare a walk over the modules).
    """
    if not isinstance(model, nn.Module):
        raise AttributionError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if model.training:
        raise AttributionError("model is in training mode; call model.eval() first (dropout and batch-norm "
                               "statistics would make attributions random)")
    training_flags = state.training if state is not None else (module.training for module in model.modules())
    if any(training_flags):  # names only when there is one to report
        training = [name for name, module in model.named_modules() if module.training]
        raise AttributionError(f"model is in eval mode but submodule {training[0]!r} is in training mode; "
                               "call model.eval() on the whole model")
    if check_modality(model, x) == "text":
        check_token_ids(model, x)
    else:
        _check_images(x)
    device = model_device(model)
    if x.device != device:
        raise AttributionError(f"x is on {x.device} but the model is on {device}; move one of them")
    expected_channels = _input_channels(model) if x.is_floating_point() else None
    if expected_channels is not None and x.shape[1] != expected_channels:
        raise AttributionError(f"x has {x.shape[1]} channels but the model takes {expected_channels}")
    target = class_indices(target, x.device)
    if target.dim() == 0:
        target = target.reshape(1).repeat(x.shape[0])
    if target.dim() != 1 or target.shape[0] != x.shape[0]:
        raise AttributionError(f"target must have one class index per image ({x.shape[0]}), "
                               f"got shape {tuple(target.shape)}")
    if (target < 0).any():
        raise AttributionError(f"target contains negative class indices: {target.tolist()}")
    # One cached forward of one image per (model, input shape): exact for any architecture, and it
    # turns "the model does not take this input" into a clear error before any method runs.
    model_probe = probe(model, x)
    if not model_probe.logits_finite:
        raise non_finite_logits(model, x) or logits_error([0])
    if (target >= model_probe.n_classes).any():
        raise AttributionError(f"target out of range: model has {model_probe.n_classes} classes, got {target.tolist()}")
    return target


def _check_images(x: Tensor) -> None:
    if x.dim() != 4:
        raise AttributionError(f"x must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise AttributionError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    if x.shape[0] == 0:
        raise AttributionError("x is an empty batch (N = 0)")
    if not all_finite(x):
        raise AttributionError("x contains NaN or infinite values")


def all_finite(t: Tensor) -> bool:
    """Whether every element of ``t`` is finite. A NaN or inf element makes the sum non-finite: one
    reduction without a mask tensor for the common case; a sum that merely overflows gets the exact
    check (a (32, 1, 64, 64) ``isfinite().all()`` costs ~1 ms on a CPU, its sum a tenth of that)."""
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def non_finite_logits(model: nn.Module, x: Tensor, memory_mb: float = DEFAULT_MEMORY_MB) -> AttributionError | None:
    """The error naming the images of ``x`` whose logits are not finite, or None when all are.

    Costs one no-grad forward of ``x`` (in budget-sized chunks): only called once something is wrong.
    """
    bad = non_finite_images(model, x, rows_for_budget(model, x, memory_mb, backward=False))
    return logits_error(bad) if bad else None


def _input_channels(model: nn.Module) -> int | None:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
        if isinstance(module, nn.Linear):
            return None
    return None


class Method:
    """Base class of every attribution method.

    Subclasses set ``stochastic`` when the map depends on a seed, take their parameters as keyword
    arguments of ``__init__`` (stored in ``self.params``) and implement ``_attribute`` and ``cost``.
    """

    name: ClassVar[str] = ""
    stochastic: ClassVar[bool] = False
    needs_mask: ClassVar[bool] = False  # True for controls that read the ground-truth mask
    #: True for methods that read a transformer's attention probabilities (adapters.attention); on a
    #: model without supported attention modules they raise an AttributionError naming what is missing.
    needs_attention: ClassVar[bool] = False
    #: The input kinds the method explains (:mod:`adapters.modality`); a model of another modality
    #: is refused before any work. Names stay the same across modalities.
    modalities: ClassVar[tuple[str, ...]] = ("image",)
    #: Names of the parameters that only trade memory for speed (internal batch sizes). Changing
    #: them must not change the maps beyond float rounding; ``None`` means "derive from the budget".
    memory_knobs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, Any] = dict(params)
        #: What the last ``attribute`` call measured besides the maps (resolved batch sizes,
        #: convergence deltas, segment weights, ...); replaced on every call.
        self.diagnostics: dict[str, Any] = {}

    @classmethod
    def quick_params(cls) -> dict[str, Any]:
        """Parameters for a cheap run of this method (smoke tests, CI, ``--quick`` benchmarks).

        Contract tests build every registered method with these; a slow method (many samples or
        optimisation steps) overrides this to return a few samples/steps.
        """
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"

    def attribute(self, model: nn.Module, x: Tensor, target: Tensor | int, **kwargs: Any) -> Tensor:
        """Attribution maps (N, 1, H, W), float32, on ``x``'s device, finite; for a text model, x is
        token ids (N, L) and the maps are (N, L), 0 at [CLS], [SEP] and [PAD].

        ``kwargs`` carries optional side information: ``mask`` (N, 1, H, W) or (N, H, W) for
        methods with ``needs_mask`` (the oracle control; (N, L) evidence positions on text); it is
        accepted and ignored by the others so that a harness can pass the same arguments to every
        method. On text, ``attention_mask`` (N, L) of 0/1 is folded into the ids (masked positions
        become [PAD], :func:`adapters.token_inputs.apply_attention_mask`).
        """
        modality = modality_of(model)
        if modality not in self.modalities:
            raise NotApplicable(f"method {self.name!r} explains {' and '.join(WHAT[m] for m in self.modalities)}; "
                                f"this model takes {WHAT[modality]}")
        if "attention_mask" in kwargs:
            if modality != "text":
                raise AttributionError("attention_mask is for text models; this model takes images")
            check_modality(model, x)
            x = apply_attention_mask(model, x, kwargs.pop("attention_mask"))
        before = ModelState.of(model) if isinstance(model, nn.Module) else None
        target = check_inputs(model, x, target, before)
        if not self.needs_mask:
            kwargs.pop("mask", None)
        self._check_kwargs(kwargs)
        self.diagnostics = {}
        maps, saw_non_finite = self._watched(model, x, lambda: self._attribute(model, x, target, **kwargs), before)
        return self._check_output(maps, x, model, saw_non_finite)

    def _watched(self, model: nn.Module, x: Tensor, run: Callable[[], T],
                 before: ModelState | None = None) -> tuple[T, bool]:
        """``run()`` with the model's logits watched (:class:`adapters.logits.LogitsWatch`) and the
        model checked to be left as found; returns (result, whether any logits were not finite).

        An error raised while non-finite logits were seen becomes the logits error when ``x``'s own
        logits are at fault (lime's regression, for one, fails on NaN probabilities).
        """
        before = ModelState.of(model) if before is None else before
        watch = LogitsWatch(model)
        try:
            with watch:
                result = run()
        except Exception as error:
            if not watch.saw_non_finite or isinstance(error, (AttributionError, *_OUT_OF_MEMORY)):
                raise
            self._refuse_non_finite_logits(model, x, cause=error)
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise AttributionError(f"method {self.name!r} failed ({type(error).__name__}: {first_line}) after the "
                                   f"model's logits were not finite on some inputs it built from x{_OFF_X}") from error
        if ModelState.of(model) != before:
            raise AttributionError(f"method {self.name!r} changed the model (training flags, requires_grad "
                                   "or hooks); this is a bug in the adapter")
        return result, watch.saw_non_finite

    def _refuse_non_finite_logits(self, model: nn.Module, x: Tensor, cause: BaseException | None = None) -> None:
        """Raise the logits error if ``x``'s own logits are not finite; return otherwise."""
        try:
            error = non_finite_logits(model, x, self.params.get("memory_mb", DEFAULT_MEMORY_MB))
        except Exception:  # noqa: BLE001 - the diagnosis failed: the caller reports what it saw
            return
        if error is not None:
            raise error from cause

    def _check_kwargs(self, kwargs: dict[str, Any]) -> None:
        if not kwargs:
            return
        accepted = inspect.signature(self._attribute).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
            return
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise AttributionError(f"method {self.name!r} got unexpected argument(s) {unknown} in attribute()")

    def _check_output(self, maps: Tensor, x: Tensor, model: nn.Module, saw_non_finite: bool) -> Tensor:
        expected = tuple(x.shape) if modality_of(model) == "text" else (x.shape[0], 1, *x.shape[2:])
        if tuple(maps.shape) != expected:
            raise AttributionError(f"method {self.name!r} returned shape {tuple(maps.shape)}, expected {expected}")
        if modality_of(model) == "text":  # the contract: nothing on [CLS], [SEP] and padding
            maps = maps.masked_fill(~model.editable(x).to(maps.device), 0.0)
        finite = all_finite(maps)
        if saw_non_finite or not finite:
            self._refuse_non_finite_logits(model, x)
        if not finite:
            detail = f": the model's logits were not finite on some inputs the method built from x{_OFF_X}" \
                if saw_non_finite else ""
            raise AttributionError(f"method {self.name!r} produced a non-finite attribution map{detail}")
        if saw_non_finite:
            # x's logits are finite and so is the map (e.g. only a baseline's logits were NaN): keep
            # the map, and say so.
            self.diagnostics["non_finite_logits_off_x"] = True
        # Detached: a map is a result, never part of a graph that would keep activations alive.
        return maps.detach().to(device=x.device, dtype=torch.float32)

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor, **kwargs: Any) -> Tensor:
        raise NotImplementedError

    def cost(self, **context: Any) -> Cost:
        """Model passes per image.

        ``context`` may carry what the count depends on: ``height``, ``width``, ``channels`` of the
        input, ``n_classes`` of the model. Methods ignore keys they do not need and raise
        :class:`AttributionError` naming a key they need but did not get.
        """
        raise NotImplementedError
