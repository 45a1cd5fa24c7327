"""Warm start: the plans an earlier study found good, enqueued first in a new search and re-evaluated there.

Plans travel, values never do: each seed is scored again on the new model and data, tagged with where it came
from (`warm_start_source`, `warm_start_kind`). Sources, best first: promoted recipes the spec names, the deployed
versions, the source's measured fronts (gate-passing candidates), then its best proxy plans.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import optuna
from optuna.trial import TrialState

from autotune.context import StudyContext
from autotune.errors import AutotuneError
from autotune.identity import differing_fields, layer_differences, layer_fingerprints
from autotune.lineage import RECORD_SUFFIX, Lineage
from autotune.pareto import greedy_hypervolume_order, pareto_mask
from autotune.plan import Plan
from autotune.promotion import pick_by_rank
from autotune.studies import find_study_names


class LayersDiffer(AutotuneError):
    """The source study planned other layers than this model has."""


@dataclass
class WarmStartPlan:
    """The seeds of one search and where they came from."""

    source: str = ""
    seeds: list[tuple[dict, dict]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    differs: list[str] = field(default_factory=list)  # identity fields the source was computed with differently
    unchanged_layers: list[str] = field(default_factory=list)  # layers whose weights the revision left as they were

    def add(self, context: StudyContext, plan: Plan, kind: str, origin: str) -> None:
        params = context.space.params_for(plan)
        if any(json.dumps(params, sort_keys=True) == json.dumps(p, sort_keys=True) for p, _ in self.seeds):
            return
        self.seeds.append((params, {"warm_start_source": origin, "warm_start_kind": kind}))
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def summary(self) -> dict:
        return {
            "source": self.source,
            "enqueued": len(self.seeds),
            "by_kind": self.counts,
            "differs": self.differs,
            "unchanged_layers": self.unchanged_layers,
        }


@dataclass(frozen=True)
class Source:
    """Where to take plans from: a proxy study and the measured studies beside it."""

    label: str
    proxy_study: str
    measured_prefix: str


def resolve_source(storage, reference: str) -> Source:
    """A lineage (its latest finished cycle), a cycle (`lineage/c2`), or any proxy study by name."""
    names = set(find_study_names(storage))
    if f"{reference}{RECORD_SUFFIX}" in names:
        latest = Lineage(storage, reference).latest_cycle(finished=True)
        if latest is None:
            raise AutotuneError(f"warm start from lineage {reference!r}: it has no finished cycle yet")
        reference = f"{reference}/c{latest['cycle']}"
    if f"{reference}/proxy" in names:
        return Source(reference, f"{reference}/proxy", f"{reference}/full/")
    if reference in names:
        return Source(reference, reference, f"{reference}/full/")
    raise AutotuneError(f"warm start from {reference!r}: no such lineage, cycle or study in this storage")


def source_layers(study: optuna.Study) -> dict[str, str]:
    """The source's planned layers: recorded on the study, else read from a trial's plan (kinds unknown)."""
    recorded = study.user_attrs.get("layers")
    if recorded:
        return dict(recorded)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if "plan" in trial.user_attrs:
            return {name: "?" for name in trial.user_attrs["plan"]["layers"]}
    return {}


def check_layers(label: str, source: dict[str, str], context: StudyContext) -> None:
    current = context.layer_kinds
    if any(kind == "?" for kind in source.values()):
        current = {name: "?" for name in current}
    differences = layer_differences(source, current)
    if differences:
        shown = differences[:8] + ([f"... {len(differences) - 8} more"] if len(differences) > 8 else [])
        raise LayersDiffer(
            f"warm start from {label!r}: its layers differ from this model's ({len(differences)}): {'; '.join(shown)}"
        )


def plans_from(storage, source: Source, context: StudyContext, proxy_plans: int, into: WarmStartPlan) -> None:
    proxy = optuna.load_study(study_name=source.proxy_study, storage=storage)
    check_layers(source.label, source_layers(proxy), context)
    identity = proxy.user_attrs.get("identity")
    if identity:
        into.differs = differing_fields(identity, context.identity())
    before = proxy.user_attrs.get("layer_weights", {})
    now = layer_fingerprints(context.recovery.teacher, context.layer_kinds)
    into.unchanged_layers = sorted(name for name, digest in now.items() if before.get(name) == digest)
    for name in sorted(n for n in find_study_names(storage) if n.startswith(source.measured_prefix)):
        measured = optuna.load_study(study_name=name, storage=storage)
        passing = [
            t
            for t in measured.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get("role") in ("candidate", "int8", "deployed") and not t.user_attrs.get("gate_failures")
        ]
        if passing:
            front = pareto_mask(np.array([t.values for t in passing]))
            for trial in (t for t, on_front in zip(passing, front, strict=True) if on_front):
                into.add(context, Plan.from_dict(trial.user_attrs["plan"]), "measured front", f"{name}#{trial.number}")
    completed = proxy.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if completed and proxy_plans:
        # From the best non-dominated ranks, in the order that covers the most of the source's front first: the
        # first seeds re-evaluated already span it.
        values = np.array([t.values for t in completed])
        pool = pick_by_rank(values, 3 * proxy_plans)
        for index in (pool[i] for i in greedy_hypervolume_order(values[pool], proxy_plans)):
            trial = completed[index]
            into.add(context, Plan.from_dict(trial.user_attrs["plan"]), "proxy front", f"{source.proxy_study}#{trial.number}")


def recipe_plans(storage, recipes: tuple[str, ...], context: StudyContext, into: WarmStartPlan) -> None:
    """`lineage@target` (its deployed version) or `lineage@target#vN` from the recipe catalogue."""
    for reference in recipes:
        lineage_name, _, rest = reference.partition("@")
        target, _, version = rest.partition("#v")
        try:
            lineage = Lineage(storage, lineage_name, create=False)
        except AutotuneError as exc:
            raise AutotuneError(f"{context.spec.path}: warm_start.recipes: {reference!r}: {exc}") from exc
        stack = lineage.deployed(target)
        history = [e for e in lineage.history() if e["event"] == "promote"]
        records = [e["record"] for e in history if e["record"]["target"] == target] or stack
        chosen = [r for r in records if str(r["version"]) == version] if version else stack[-1:]
        if not chosen:
            raise AutotuneError(
                f"{context.spec.path}: warm_start.recipes: {reference!r}: no such promoted recipe (see `autotune recipes`)"
            )
        plan = Plan.from_dict(chosen[0]["plan"])
        check_layers(reference, {name: "?" for name in plan.layers}, context)
        into.add(context, plan, "recipe", reference)


def deployed_plans(lineage: Lineage, context: StudyContext, into: WarmStartPlan) -> None:
    for hardware in context.spec.targets:
        current = lineage.current(hardware.name)
        if current is not None:
            into.add(context, Plan.from_dict(current["plan"]), "deployed", f"{lineage.name}@{hardware.name}#v{current['version']}")
