"""Resolves a search-space spec against a model and its targets, and maps Optuna trials to plans."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution

from autotune.errors import SpecError
from autotune.plan import SUPPORTED_BITS, LayerChoice, Plan
from autotune.spec import HardwareSpec, SearchSpaceSpec


@dataclass(frozen=True)
class LayerSpace:
    name: str
    kind: str
    bits: tuple[int, ...]
    prune: tuple[float, ...]


@dataclass(frozen=True)
class SearchSpace:
    """Per-layer choices for one model; a layer with one choice per dimension is fixed, not searched."""

    layers: tuple[LayerSpace, ...]

    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def distributions(self) -> dict[str, BaseDistribution]:
        """The Optuna parameters of the proxy study: only the dimensions with more than one choice."""
        dists: dict[str, BaseDistribution] = {}
        for layer in self.layers:
            if len(layer.bits) > 1:
                dists[f"{layer.name}.bits"] = CategoricalDistribution(layer.bits)
            if len(layer.prune) > 1:
                dists[f"{layer.name}.prune"] = CategoricalDistribution(layer.prune)
        return dists

    def plan_from_params(self, params: dict) -> Plan:
        return Plan(
            {
                layer.name: LayerChoice(
                    int(params.get(f"{layer.name}.bits", layer.bits[0])),
                    float(params.get(f"{layer.name}.prune", layer.prune[0])),
                )
                for layer in self.layers
            }
        )

    def suggest_plan(self, trial: optuna.Trial) -> Plan:
        params = {}
        for name, dist in self.distributions().items():
            params[name] = trial.suggest_categorical(name, dist.choices)
        return self.plan_from_params(params)

    def params_for(self, plan: Plan) -> dict:
        """The proxy-study parameters that reproduce `plan` (for warm starts and enqueued trials)."""
        params = {}
        for layer in self.layers:
            choice = plan.choice(layer.name)
            if len(layer.bits) > 1:
                params[f"{layer.name}.bits"] = choice.bits
            if len(layer.prune) > 1:
                params[f"{layer.name}.prune"] = choice.prune
        return params

    def uniform_plan(self, bits: int, prune: float) -> Plan:
        """Every layer at the choices closest to (bits, prune) that its own rule allows."""
        return Plan(
            {
                layer.name: LayerChoice(
                    min(layer.bits, key=lambda b: abs(b - bits)),
                    min(layer.prune, key=lambda r: abs(r - prune)),
                )
                for layer in self.layers
            }
        )

    def size(self) -> int:
        total = 1
        for dist in self.distributions().values():
            total *= len(dist.choices)
        return total


def measured_distributions(layer_names: list[str]) -> dict[str, BaseDistribution]:
    """Parameters of a measured study: every layer's full plan, including references outside the space."""
    dists: dict[str, BaseDistribution] = {}
    for name in layer_names:
        dists[f"{name}.bits"] = CategoricalDistribution(SUPPORTED_BITS)
        dists[f"{name}.prune"] = FloatDistribution(0.0, 1.0)
    return dists


def measured_params(plan: Plan, layer_names: list[str]) -> dict:
    params = {}
    for name in layer_names:
        choice = plan.choice(name)
        params[f"{name}.bits"] = choice.bits
        params[f"{name}.prune"] = choice.prune
    return params


def resolve(
    spec: SearchSpaceSpec,
    layers: dict[str, str],
    protected: set[str],
    targets: tuple[HardwareSpec, ...] = (),
) -> SearchSpace:
    """Assign each layer the first rule that matches it and check every choice is realisable.

    `layers` maps qualified names to kinds ('conv', 'linear'); `protected` are output layers, which
    cannot be pruned. Raises SpecError naming the file and rule for a rule matching nothing, a
    pruning choice on an output layer, or bits a target cannot realise.
    """
    keep = {name for name in layers if any(fnmatchcase(name, pattern) for pattern in spec.keep_full_precision)}
    for pattern in spec.keep_full_precision:
        if not any(fnmatchcase(name, pattern) for name in layers):
            raise SpecError(
                f"{spec.path}: keep_full_precision: pattern {pattern!r} matches no layer; layers are {list(layers)}"
            )
    resolved: list[LayerSpace] = []
    matched_rules: set[int] = set()
    for name, kind in layers.items():
        if name in keep:
            resolved.append(LayerSpace(name, kind, (32,), (0.0,)))
            continue
        rule = next(
            (r for r in spec.rules if fnmatchcase(name, r.match) and r.kind in (kind, "any")),
            None,
        )
        if rule is None:
            resolved.append(LayerSpace(name, kind, (32,), (0.0,)))
            continue
        matched_rules.add(rule.index)
        where = f"{spec.path}: layers[{rule.index}]"
        if name in protected and any(p > 0 for p in rule.prune):
            raise SpecError(
                f"{where}.prune: layer {name!r} produces the model's outputs and cannot be pruned; "
                "list it in keep_full_precision or narrow `match`"
            )
        for target in targets:
            refused = [b for b in rule.bits if not target.supports(kind, b)]
            if refused:
                raise SpecError(
                    f"{where}.bits: {refused} on {kind} layer {name!r} cannot be realised by target "
                    f"{target.name!r} ({target.path}), which runs {kind} layers at {list(target.weight_bits[kind])} bits"
                )
        resolved.append(LayerSpace(name, kind, rule.bits, rule.prune))
    for rule in spec.rules:
        if rule.index not in matched_rules:
            raise SpecError(
                f"{spec.path}: layers[{rule.index}].match: {rule.match!r} (kind {rule.kind}) matches no layer "
                f"left after earlier rules; layers are {list(layers)}"
            )
    space = SearchSpace(tuple(resolved))
    if not space.distributions():
        raise SpecError(f"{spec.path}: the search space has no choices for this model (every layer is fixed)")
    return space
