"""Resolves a search-space spec against a model and its targets, and maps Optuna trials to plans."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from autotune.errors import SpecError
from autotune.layers import ModelLayers
from autotune.plan import FLOAT_BITS, HALF_PRECISION_BITS, SUPPORTED_BITS, LayerChoice, Plan
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
    grid: tuple[float, ...] = ()  # every ratio the rules allow (several may keep the same channels)

    def canonical(self, ratio: float) -> float:
        """The smallest listed ratio keeping as many channels as the grid ratio nearest `ratio`."""
        grid = self.grid or self.ratios
        nearest = min(grid, key=lambda r: abs(r - ratio))
        kept = [r for r in self.ratios if r <= nearest + 1e-9]
        return kept[-1] if kept else self.ratios[0]

    def distribution(self) -> BaseDistribution:
        """Ordered: a stepped float over an evenly spaced grid, else the index of the ratio."""
        grid = self.grid or self.ratios
        steps = np.diff(grid)
        if len(grid) > 1 and np.allclose(steps, steps[0], atol=1e-9):
            return FloatDistribution(grid[0], grid[-1], step=round(float(steps[0]), 9))
        return IntDistribution(0, len(self.ratios) - 1)

    def ratio_of(self, value) -> float:
        dist = self.distribution()
        if isinstance(dist, IntDistribution):
            return self.ratios[int(value)]
        return self.canonical(float(value))

    def value_of(self, ratio: float):
        """The parameter value that realises `ratio` (nearest on the grid)."""
        dist = self.distribution()
        if isinstance(dist, IntDistribution):
            return min(range(len(self.ratios)), key=lambda i: abs(self.ratios[i] - ratio))
        grid = self.grid or self.ratios
        return min(grid, key=lambda r: abs(r - ratio))


# The parameters' encoding: ordered grids since version 2 (a study recorded with another cannot be resumed).
PARAMS_ENCODING = 2


@dataclass(frozen=True)
class SearchSpace:
    """Bits per layer and a pruning ratio per coupled group; a dimension with one choice is fixed, not searched.

    Both are ordered parameters, so samplers can use the order: `<layer>.bits_level` is the index of the layer's
    bit-width in ascending order (0 = fewest bits), `<group root>.prune` a stepped float (or the index of the ratio
    where the allowed ratios are not evenly spaced).
    """

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
                dists[f"{layer.name}.bits_level"] = IntDistribution(0, len(layer.bits) - 1)
        for group in self.groups:
            if len(group.ratios) > 1:
                dists[f"{group.root}.prune"] = group.distribution()
        return dists

    def choices(self) -> dict[str, list]:
        """Per parameter, the values that give distinct plans, in order (a pruning grid may hold ratios that keep
        the same channels; only the smallest of those is listed)."""
        found = {}
        for layer in self.layers:
            if len(layer.bits) > 1:
                found[f"{layer.name}.bits_level"] = list(range(len(layer.bits)))
        for group in self.groups:
            if len(group.ratios) > 1:
                found[f"{group.root}.prune"] = [group.value_of(ratio) for ratio in group.ratios]
        return found

    def plan_from_params(self, params: dict) -> Plan:
        """The plan of a trial: each layer's bits, and its group's ratio on every member of the group."""
        ratio_of = {}
        for group in self.groups:
            value = params.get(f"{group.root}.prune")
            ratio = group.ratio_of(value) if value is not None else group.ratios[0]
            ratio_of.update({member: ratio for member in group.layers})
        choices = {}
        for layer in self.layers:
            level = params.get(f"{layer.name}.bits_level", 0)
            choices[layer.name] = LayerChoice(layer.bits[int(level)], ratio_of.get(layer.name, 0.0))
        return Plan(choices)

    def suggest_plan(self, trial: optuna.Trial) -> Plan:
        params = {}
        for name, dist in self.distributions().items():
            if isinstance(dist, IntDistribution):
                params[name] = trial.suggest_int(name, dist.low, dist.high)
            else:
                params[name] = trial.suggest_float(name, dist.low, dist.high, step=dist.step)
        return self.plan_from_params(params)

    def params_for(self, plan: Plan) -> dict:
        """The proxy-study parameters that reproduce `plan` (nearest choice where it is not on the grid)."""
        params = {}
        for layer in self.layers:
            if len(layer.bits) > 1:
                bits = plan.choice(layer.name).bits
                params[f"{layer.name}.bits_level"] = min(range(len(layer.bits)), key=lambda i: abs(layer.bits[i] - bits))
        for group in self.groups:
            if len(group.ratios) > 1:
                params[f"{group.root}.prune"] = group.value_of(plan.choice(group.root).prune)
        return params

    def uniform_plan(self, bits: int, prune: float) -> Plan:
        """Every layer at the bits closest to `bits`, every group at the ratio closest to `prune`."""
        params = {
            f"{layer.name}.bits_level": min(range(len(layer.bits)), key=lambda i: abs(layer.bits[i] - bits))
            for layer in self.layers
        }
        params |= {f"{group.root}.prune": group.value_of(prune) for group in self.groups}
        return self.plan_from_params(params)

    def layer_bits(self) -> dict[str, tuple[int, ...]]:
        """Per layer, the bit-widths searched: the precisions a latency table probes."""
        return {layer.name: tuple(layer.bits) for layer in self.layers}

    def prune_ratios(self) -> dict[str, tuple[float, ...]]:
        """Per pruning group (by its root layer), the ratios searched: the widths a latency table probes."""
        return {group.root: group.ratios for group in self.groups}

    def random_plans(self, count: int, seed: int) -> list[Plan]:
        """Up to `count` distinct plans, each parameter drawn uniformly and independently (fewer where the space holds
        fewer)."""
        rng = np.random.default_rng(seed)
        choices = self.choices()
        plans: dict[str, Plan] = {}
        for _ in range(count * 50):
            if len(plans) == count:
                break
            plan = self.plan_from_params({name: values[rng.integers(len(values))] for name, values in choices.items()})
            plans.setdefault(plan.digest(), plan)
        return list(plans.values())

    def size(self) -> int:
        """Distinct plans: bit choices times distinct pruned widths."""
        total = 1
        for layer in self.layers:
            total *= len(layer.bits)
        for group in self.groups:
            total *= len(group.ratios)
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
                    f"{target.name!r} ({target.path}), which runs {kind} layers at {target.realises(kind)}"
                )
        resolved.append(LayerSpace(name, kind, rule.bits))
        grids[name] = rule.prune
    for rule in spec.rules:
        if rule.index not in matched_rules:
            raise SpecError(
                f"{spec.path}: layers[{rule.index}].match: {rule.match!r} (kind {rule.kind}) matches no layer "
                f"left after earlier rules; layers are {names}"
            )
    _check_float_precisions(spec, resolved, targets)
    spaces = []
    for group in groups:
        allowed = set.intersection(*(set(grids[m]) for m in group.layers)) if not group.protected else {0.0}
        grid = sorted(allowed | {0.0})
        ratios, widths = [], []
        for ratio in grid:
            width = group.kept(ratio, spec.channel_multiple)
            if width not in widths:  # a ratio that keeps the same channels as a smaller one builds the same model
                ratios.append(ratio)
                widths.append(width)
        spaces.append(GroupSpace(group.root, group.layers, tuple(ratios), tuple(widths), tuple(grid)))
    space = SearchSpace(tuple(resolved), tuple(spaces))
    if not space.distributions():
        raise SpecError(f"{spec.path}: the search space has no choices for this model (every layer is fixed)")
    return space


def _check_float_precisions(spec: SearchSpaceSpec, layers: list[LayerSpace], targets: tuple[HardwareSpec, ...]) -> None:
    """A target running one float precision per model (OpenVINO's precision hint) cannot build a plan mixing 16 and
    32 bits; refuse a space that can produce one."""
    for target in targets:
        if target.float_per_layer:
            continue
        # Only kinds the one precision governs: a kind with no 16-bit form on the target stays at 32 beside 16.
        governed = [layer for layer in layers if target.supports(layer.kind, HALF_PRECISION_BITS)]
        floats = {bits: [layer.name for layer in governed if bits in layer.bits] for bits in FLOAT_BITS}
        if all(floats.values()):
            raise SpecError(
                f"{spec.path}: layers {floats[16][:3]} may run at 16 bits and {floats[32][:3]} at 32, but target "
                f"{target.name!r} ({target.path}) runs every float layer of a model at one precision ([float] "
                "per_layer = false): list 16 or 32 in `bits`, not both"
            )
