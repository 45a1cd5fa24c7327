"""Resolves a search-space spec against a model and its targets, and maps Optuna trials to plans."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution

from autotune.errors import SpecError
from autotune.layers import ModelLayers
from autotune.plan import SUPPORTED_BITS, LayerChoice, Plan
from autotune.pruning import PruningGroup
from autotune.spec import HardwareSpec, SearchSpaceSpec


@dataclass(frozen=True)
class LayerSpace:
    name: str
    kind: str
    bits: tuple[int, ...]


@dataclass(frozen=True)
class GroupSpace:
    """One pruning parameter: the ratios of a coupled group, one per distinct realised width."""

    root: str
    layers: tuple[str, ...]
    ratios: tuple[float, ...]
    widths: tuple[int, ...]  # channels kept at each ratio


@dataclass(frozen=True)
class SearchSpace:
    """Bits per layer and a pruning ratio per coupled group; a dimension with one choice is fixed, not searched."""

    layers: tuple[LayerSpace, ...]
    groups: tuple[GroupSpace, ...] = ()

    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def distributions(self) -> dict[str, BaseDistribution]:
        """The Optuna parameters of the proxy study: only the dimensions with more than one choice."""
        dists: dict[str, BaseDistribution] = {}
        for layer in self.layers:
            if len(layer.bits) > 1:
                dists[f"{layer.name}.bits"] = CategoricalDistribution(layer.bits)
        for group in self.groups:
            if len(group.ratios) > 1:
                dists[f"{group.root}.prune"] = CategoricalDistribution(group.ratios)
        return dists

    def plan_from_params(self, params: dict) -> Plan:
        """The plan of a trial: each layer's bits, and its group's ratio on every member of the group."""
        ratio_of = {}
        for group in self.groups:
            ratio = float(params.get(f"{group.root}.prune", group.ratios[0]))
            ratio_of.update({member: ratio for member in group.layers})
        return Plan(
            {
                layer.name: LayerChoice(int(params.get(f"{layer.name}.bits", layer.bits[0])), ratio_of.get(layer.name, 0.0))
                for layer in self.layers
            }
        )

    def suggest_plan(self, trial: optuna.Trial) -> Plan:
        params = {}
        for name, dist in self.distributions().items():
            params[name] = trial.suggest_categorical(name, dist.choices)
        return self.plan_from_params(params)

    def params_for(self, plan: Plan) -> dict:
        """The proxy-study parameters that reproduce `plan` (nearest choice where it is not on the grid)."""
        params = {}
        for layer in self.layers:
            if len(layer.bits) > 1:
                params[f"{layer.name}.bits"] = min(layer.bits, key=lambda b: abs(b - plan.choice(layer.name).bits))
        for group in self.groups:
            if len(group.ratios) > 1:
                ratio = plan.choice(group.root).prune
                params[f"{group.root}.prune"] = min(group.ratios, key=lambda r: abs(r - ratio))
        return params

    def uniform_plan(self, bits: int, prune: float) -> Plan:
        """Every layer at the bits closest to `bits`, every group at the ratio closest to `prune`."""
        params = {f"{layer.name}.bits": min(layer.bits, key=lambda b: abs(b - bits)) for layer in self.layers}
        params |= {f"{group.root}.prune": min(group.ratios, key=lambda r: abs(r - prune)) for group in self.groups}
        return self.plan_from_params(params)

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
    layers: ModelLayers,
    groups: Sequence[PruningGroup] = (),
    targets: tuple[HardwareSpec, ...] = (),
) -> SearchSpace:
    """Assign each layer the first rule that matches it, and each pruning group the ratios all its members allow.

    A group's ratios are those every member's rule allows, one per distinct realised width (with the
    space's `channel_multiple`, ratios that keep the same channels would be the same model). Raises
    SpecError naming the file and rule for a rule matching nothing, a pruning choice on a layer that
    produces the model's output, or bits a target cannot realise.
    """
    names = list(layers.layers)
    kinds = layers.kinds
    keep = {name for name in names if any(fnmatchcase(name, pattern) for pattern in spec.keep_full_precision)}
    for pattern in spec.keep_full_precision:
        if not any(fnmatchcase(name, pattern) for name in names):
            raise SpecError(f"{spec.path}: keep_full_precision: pattern {pattern!r} matches no layer; layers are {names}")
    resolved: list[LayerSpace] = []
    grids: dict[str, tuple[float, ...]] = {}
    matched_rules: set[int] = set()
    for name, kind in kinds.items():
        rule = None if name in keep else next(
            (r for r in spec.rules if fnmatchcase(name, r.match) and r.kind in (kind, "any")), None
        )
        if rule is None:
            resolved.append(LayerSpace(name, kind, (32,)))
            grids[name] = (0.0,)
            continue
        matched_rules.add(rule.index)
        where = f"{spec.path}: layers[{rule.index}]"
        if name in layers.outputs and any(p > 0 for p in rule.prune):
            raise SpecError(
                f"{where}.prune: layer {name!r} produces the model's outputs and cannot be pruned; "
                "list it in keep_full_precision or narrow `match`"
            )
        for target in targets:
            refused = [b for b in rule.bits if not target.supports(kind, b)]
            if refused:
                raise SpecError(
                    f"{where}.bits: {refused} on {kind} layer {name!r} cannot be realised by target "
                    f"{target.name!r} ({target.path}), which runs {kind} layers at {list(target.weight_bits.get(kind, (32,)))} bits"
                )
        resolved.append(LayerSpace(name, kind, rule.bits))
        grids[name] = rule.prune
    for rule in spec.rules:
        if rule.index not in matched_rules:
            raise SpecError(
                f"{spec.path}: layers[{rule.index}].match: {rule.match!r} (kind {rule.kind}) matches no layer "
                f"left after earlier rules; layers are {names}"
            )
    spaces = []
    for group in groups:
        allowed = set.intersection(*(set(grids[m]) for m in group.layers)) if not group.protected else {0.0}
        ratios, widths = [], []
        for ratio in sorted(allowed | {0.0}):
            width = group.kept(ratio, spec.channel_multiple)
            if width not in widths:  # a ratio that keeps the same channels as a smaller one builds the same model
                ratios.append(ratio)
                widths.append(width)
        spaces.append(GroupSpace(group.root, group.layers, tuple(ratios), tuple(widths)))
    space = SearchSpace(tuple(resolved), tuple(spaces))
    if not space.distributions():
        raise SpecError(f"{spec.path}: the search space has no choices for this model (every layer is fixed)")
    return space
