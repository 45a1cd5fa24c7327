"""Multi-fidelity promotion: re-score the best proxy trials with a longer recovery, pick K spread along the front.

Stage 1 is the search itself (short recovery per pruning sub-plan). Stage 2 re-scores up to
`rescore` plans from the best non-dominated ranks with `rescore_steps`. The K promoted plans
then get the full recovery budget and the real build (stage 3, evaluate.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import optuna
from optuna.trial import TrialState

from autotune.context import StudyContext
from autotune.pareto import nondominated_ranks, spread
from autotune.plan import Plan
from autotune.progress import console, progress_bar
from autotune.scoring import ProxyScorer


@dataclass
class Candidate:
    role: str  # "fp32", "int8" (references) or "candidate"
    plan: Plan
    proxy_trial: int | None = None
    stage1: dict[str, float] = field(default_factory=dict)  # proxies after the search recovery
    stage2: dict[str, float] = field(default_factory=dict)  # proxies after the rescore recovery
    deployment: dict | None = None  # role "deployed": the deployed version's record; its artifact is measured as is

    @property
    def key(self) -> str:
        """What makes two evaluations the same: the plan, or for a deployed artifact, its version."""
        if self.deployment is not None:
            return f"deployed/{self.deployment['target']}/v{self.deployment['version']}"
        return self.plan.digest()


def pick_by_rank(values: np.ndarray, count: int) -> list[int]:
    """`count` indices, filling from the best non-dominated rank down, spread within the last rank used."""
    ranks = nondominated_ranks(values)
    picked: list[int] = []
    for rank in range(ranks.max() + 1 if len(ranks) else 0):
        members = np.flatnonzero(ranks == rank)
        room = count - len(picked)
        if room <= 0:
            break
        if len(members) > room:
            members = members[spread(values[members], room)]
        picked.extend(int(i) for i in members)
    return picked


def pick_for_targets(values: np.ndarray, objectives: list[str], count: int, per_target: bool) -> list[int]:
    """`count` indices. Per target: each target's share (count / targets, taken in turn) from the front of the shared
    objectives and that target's own (`latency_measured@<target>`), the rest by rank over all objectives. One front
    over every target's latency spreads the picks over plans fast on either, and each target sees few of its own
    (fashion-cnn: INT8 with f32 ends is fast on ONNX Runtime only)."""
    targets = sorted({name.split("@", 1)[1] for name in objectives if "@" in name})
    picked: list[int] = []
    if per_target and len(targets) > 1:
        shared = [i for i, name in enumerate(objectives) if "@" not in name]
        orders = {
            target: pick_by_rank(values[:, shared + [i for i, n in enumerate(objectives) if n.endswith(f"@{target}")]], count)
            for target in targets
        }
        for _ in range(count // len(targets)):
            for target in targets:
                index = next((i for i in orders[target] if i not in picked), None)
                if index is not None:
                    picked.append(index)
    rest = np.setdiff1d(np.arange(len(values)), picked)
    return picked + [int(i) for i in rest[pick_by_rank(values[rest], count - len(picked))]]


def promote(context: StudyContext, scorer: ProxyScorer, study: optuna.Study) -> tuple[list[Candidate], list[Candidate]]:
    """Return (rescored pool, promoted candidates). References are excluded: they are always evaluated."""
    spec = context.spec
    objectives = list(scorer.objectives)
    reference_digests = {plan.digest() for plan in context.reference_plans().values()}
    unique: dict[str, optuna.trial.FrozenTrial] = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        digest = trial.user_attrs.get("plan_digest")
        if digest and digest not in reference_digests:
            unique.setdefault(digest, trial)
    trials = list(unique.values())
    if not trials:
        return [], []
    values = np.array([t.values for t in trials])
    pool = [
        Candidate(
            "candidate",
            Plan.from_dict(trials[i].user_attrs["plan"]),
            trials[i].number,
            stage1={n: trials[i].user_attrs[f"proxy.{n}"] for n in scorer.proxies},
        )
        for i in pick_by_rank(values, spec.rescore)
    ]
    rescored: list[Candidate] = []
    with progress_bar() as progress:
        task = progress.add_task(f"re-scoring with {spec.recovery.rescore_steps} recovery steps", total=len(pool))
        for candidate in pool:
            try:
                candidate.stage2 = scorer.score(candidate.plan, spec.recovery.rescore_steps)
                rescored.append(candidate)
            except Exception as exc:  # one bad plan must not stop promotion of the others
                console.print(f"[yellow]re-scoring trial {candidate.proxy_trial} failed: {exc}")
            progress.update(task, advance=1)
    if not rescored:
        return pool, []
    rescored = without_int8_dominated(context, scorer, rescored, objectives)
    stage2 = np.array([[c.stage2[n] for n in objectives] for c in rescored])
    promoted = [rescored[i] for i in pick_for_targets(stage2, objectives, spec.promote, spec.promote_per_target)]
    study.set_user_attr(
        "staging",
        [
            {
                "trial": c.proxy_trial,
                "plan_digest": c.plan.digest(),
                "stage1": c.stage1,
                "stage2": c.stage2,
                "promoted": c in promoted,
            }
            for c in pool
        ],
    )
    return rescored, promoted


def without_int8_dominated(
    context: StudyContext, scorer: ProxyScorer, rescored: list[Candidate], objectives: list[str]
) -> list[Candidate]:
    """Drop the plans whose re-scored proxies are no better than uniform INT8's on any objective nor on size: a full evaluation
    of a plan INT8 dominates is wasted (INT8 is measured anyway). All are kept if that would leave none."""
    int8 = scorer.score(context.reference_plans()["int8"], 0)  # unpruned: the recovery budget does not change it
    axes = [*objectives, *(["model_size"] if "model_size" in int8 else [])]  # the measured study's axes, estimated
    reference = np.array([int8[n] for n in axes])
    kept = [c for c in rescored if np.any(np.array([c.stage2[n] for n in axes]) < reference)]
    if kept and len(kept) < len(rescored):
        console.print(f"promotion: {len(rescored) - len(kept)} re-scored plans left out, dominated by uniform INT8 on the proxies")
    return kept or rescored


def reference_candidates(context: StudyContext, scorer: ProxyScorer) -> list[Candidate]:
    references = []
    for role, plan in context.reference_plans().items():
        scores = scorer.score(plan, 0)  # unpruned: recovery budget does not change them
        references.append(Candidate(role, plan, None, stage1=scores, stage2=scores))
    return references
