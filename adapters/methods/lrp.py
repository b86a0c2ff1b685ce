"""Layer-wise Relevance Propagation (Bach et al. 2015) with Captum's LRP and its rules."""
from __future__ import annotations

import warnings

import torch
from captum.attr import LRP
from captum.attr._core.lrp import SUPPORTED_LAYERS_WITH_RULES, SUPPORTED_NON_LINEAR_LAYERS
from captum.attr._utils.lrp_rules import Alpha1_Beta0_Rule, EpsilonRule, GammaRule, PropagationRule
from torch import Tensor, nn

from ..base import AttributionError, Cost, Method
from ..errors import NotApplicable
from ..budget import DEFAULT_MEMORY_MB, check_batch, check_memory_mb, rows_for_budget, spans
from ..checks import check_choice, check_float
from ..forward_ops import forward_ops, where
from ..maps import check_reduction, reduce_channels
from ..module_attributes import attributes_restored
from ..probe import probe
from ..registry import register

RULES = ("epsilon", "gamma", "alpha1_beta0", "composite")
#: The layers whose rule the ``rule`` parameter picks (the others keep Captum's EpsilonRule(1e-9)).
WEIGHTED = (nn.Conv2d, nn.Linear)
#: Leaves that only reshape or, in eval mode, pass their input through: Captum has no rule for them
#: (it raises TypeError), and EpsilonRule on an identity gives relevance in = relevance out.
PASS_THROUGH = (nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                nn.FeatureAlphaDropout)
#: Functions a ``forward`` may call outside any module: they only move, select or reshape values, so
#: relevance passing through them as a gradient is conserved.
ROUTING_OPS = frozenset({
    "flatten", "view", "reshape", "permute", "transpose", "t", "contiguous", "squeeze", "unsqueeze", "__getitem__",
    "clone", "to", "float", "double", "half", "type", "type_as", "detach", "cat", "concat", "concatenate", "stack",
    "split", "chunk", "unbind", "narrow", "select", "expand", "expand_as", "view_as", "reshape_as", "movedim",
    "unflatten", "flip", "roll", "where", "dropout",
})


_NO_RULE = object()


@register("lrp")
class LrpMethod(Method):
    """Captum ``LRP``: relevance of the target logit propagated layer by layer with Captum's rules,
    channels reduced with ``reduction`` (default ``sum``: signed; the map sums to the logit up to what
    biases and the epsilon absorb -- per image in ``diagnostics["convergence_delta"]``).

    Rules (``captum.attr._utils.lrp_rules``): Captum's defaults -- ``EpsilonRule(1e-9)`` for Conv2d,
    Linear, BatchNorm2d, MaxPool1/2/3d, AvgPool2d, AdaptiveAvgPool2d and ``Addition_Module``; ReLU,
    Dropout and Tanh pass relevance through -- except on Conv2d and Linear, which get ``rule``:
    ``"epsilon"`` (``EpsilonRule(epsilon)``), ``"gamma"`` (``GammaRule(gamma)``), ``"alpha1_beta0"``
    (``Alpha1_Beta0_Rule()``) or ``"composite"`` (GammaRule on Conv2d, EpsilonRule on Linear, after
    Montavon et al. 2019). A ``rule`` attribute the user set on a module wins, and is still there
    afterwards (Captum deletes it; it is restored, and the ``activations`` Captum leaves on every
    module are removed). Flatten, Unflatten, Identity and the dropout variants other than Dropout,
    which Captum refuses, get EpsilonRule: relevance passes through them unchanged.

    Refused with an AttributionError naming the layer or function: a leaf module with no rule
    (e.g. GELU, LayerNorm, BatchNorm1d, ReLU6, Upsample; Captum raises TypeError), a leaf used more
    than once per forward (Captum raises "used more than once"), and any computation in a
    ``forward`` outside modules that is more than moving values (a residual ``out += identity``,
    ``F.relu``, a functional mean), which Captum's LRP cannot see: relevance would pass through it as
    a plain gradient. Residual networks therefore need Captum's ``Addition_Module`` for their skip
    connections.

    Cost: 2 forwards + 1 backward per image (Captum records the activations in a first forward).
    Memory knob: ``batch_size`` images per pass.
    """

    memory_knobs = ("batch_size",)

    def __init__(self, rule: str = "epsilon", epsilon: float = 1e-9, gamma: float = 0.25, reduction: str = "sum",
                 batch_size: int | None = None, memory_mb: float = DEFAULT_MEMORY_MB) -> None:
        super().__init__(rule=check_choice("rule", rule, RULES, what="LRP rule"),
                         epsilon=check_float("epsilon", epsilon, 0, 1e6, low_open=True),
                         gamma=check_float("gamma", gamma, 0, 1e6), reduction=check_reduction(reduction),
                         batch_size=check_batch("batch_size", batch_size), memory_mb=check_memory_mb(memory_mb))

    def _attribute(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        leaves = self._check_model(model, x)
        size = self.params["batch_size"] or rows_for_budget(model, x, self.params["memory_mb"], backward=True)
        self.diagnostics["batch_size"] = size
        maps, deltas = [], []
        with warnings.catch_warnings(), attributes_restored(model):
            # Captum warns that it sets requires_grad on the input: it is a detached copy here.
            warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
            for s in spans(len(x), size):
                self._attach_rules(leaves)  # Captum deletes every rule after each call
                relevance, delta = LRP(model).attribute(x[s].detach().clone(), target=target[s],
                                                        return_convergence_delta=True)
                maps.append(reduce_channels(relevance.detach(), self.params["reduction"]))
                deltas.append(delta.detach().float())
        self.diagnostics["convergence_delta"] = torch.cat(deltas)
        return torch.cat(maps)

    def _check_model(self, model: nn.Module, x: Tensor) -> list[tuple[nn.Module, object]]:
        """Refuse what Captum's LRP cannot propagate; return every leaf with the rule the user gave it
        (:data:`_NO_RULE` when none)."""
        ran = {call.name: call for call in probe(model, x).order}
        known = tuple(SUPPORTED_LAYERS_WITH_RULES) + tuple(SUPPORTED_NON_LINEAR_LAYERS) + PASS_THROUGH
        leaves = []
        for name, module in model.named_modules():
            if any(True for _ in module.children()):
                continue
            user_rule = hasattr(module, "rule")
            if user_rule and module.rule is not None and not isinstance(module.rule, PropagationRule):
                raise AttributionError(f"lrp: module {name!r} has rule {module.rule!r}, which is not a Captum "
                                       "PropagationRule (captum.attr._utils.lrp_rules)")
            call = ran.get(name)
            if call is not None and call.calls > 1:
                raise NotApplicable(f"lrp: layer {name!r} ({type(module).__name__}) runs {call.calls} times per "
                                    "forward; Captum's LRP keeps one set of activations per layer (it raises 'used "
                                    "more than once'): give each use its own module")
            if call is not None and not user_rule and type(module) not in known:
                raise NotApplicable(
                    f"lrp: Captum's LRP has no rule for layer {name!r} ({type(module).__name__}); it has rules for "
                    f"{', '.join(t.__name__ for t in SUPPORTED_LAYERS_WITH_RULES)} and passes relevance through "
                    f"{', '.join(t.__name__ for t in SUPPORTED_NON_LINEAR_LAYERS)}: set module.rule to a "
                    "captum.attr._utils.lrp_rules rule that fits the layer, or pick another method")
            leaves.append((module, module.rule if user_rule else _NO_RULE))
        for call in forward_ops(model, x):
            if not call.leaf and call.op not in ROUTING_OPS:
                raise NotApplicable(
                    f"lrp: the model computes {call.op!r} in {where(call)} outside any layer, which Captum's LRP "
                    "cannot see (relevance would pass through it as a plain gradient); residual additions need "
                    "captum.attr._utils.custom_modules.Addition_Module, activations need their modules")
        return leaves

    def _attach_rules(self, leaves: list[tuple[nn.Module, object]]) -> None:
        for module, user_rule in leaves:
            if user_rule is not _NO_RULE:
                module.rule = user_rule
            elif isinstance(module, WEIGHTED) and type(module) in SUPPORTED_LAYERS_WITH_RULES:
                module.rule = self._weighted_rule(module)
            elif type(module) not in SUPPORTED_LAYERS_WITH_RULES and type(module) not in SUPPORTED_NON_LINEAR_LAYERS:
                module.rule = EpsilonRule()  # a pass-through leaf, or one that never runs

    def _weighted_rule(self, module: nn.Module) -> PropagationRule:
        rule = self.params["rule"]
        if rule == "gamma" or (rule == "composite" and isinstance(module, nn.Conv2d)):
            return GammaRule(gamma=self.params["gamma"])
        if rule == "alpha1_beta0":
            return Alpha1_Beta0_Rule()
        return EpsilonRule(epsilon=self.params["epsilon"])

    def cost(self, **context: object) -> Cost:
        return Cost(forward=2, backward=1)
