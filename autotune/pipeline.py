"""One study run, whatever started it (`autotune run`, a cycle): references, proxy search, promotion, full
evaluation on every target, fronts printed."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import optuna

from autotune.context import StudyContext
from autotune.evaluate import Evaluator, stage_agreement
from autotune.progress import console
from autotune.promotion import Candidate, promote, reference_candidates
from autotune.replay import ReplayComparison
from autotune.report import front_table, replay_table
from autotune.scoring import ProxyScorer
from autotune.search import finished_trials, latency_history_cut_off, run_search
from autotune.studies import artifact_dir_for, storage_for


@dataclass
class RunResult:
    proxy: optuna.Study
    measured: dict[str, optuna.Study]
    promoted: list[Candidate]
    phases: dict[str, float] = field(default_factory=dict)


def describe(context: StudyContext) -> str:
    spec = context.spec
    unreachable = sorted(context.layers.unreachable)
    return (
        f"[bold]{spec.name}[/]: workload {context.workload.name}, {len(context.layer_kinds)} layers"
        + (f" ({len(unreachable)} more left as they are: the output does not depend on {unreachable})" if unreachable else "")
        + f", {len(context.recovery.pruner.prunable)} prunable groups, "
        f"{len(context.space.distributions())} searched parameters ({context.space.size():,} plans), "
        f"targets {[t.name for t in spec.targets]}, storage {spec.storage}"
    )


def run_study(
    context: StudyContext,
    trials: int | None = None,
    seeds: list[tuple[dict, dict]] = (),
    deployed: list[Candidate] = (),
    attrs: dict | None = None,
    replay: ReplayComparison | None = None,
    started: float | None = None,
) -> RunResult:
    """Run the study of `context`; `seeds` are warm-start plans enqueued first, `deployed` the deployed versions
    measured beside the candidates (as built, not rebuilt), `replay` the recorded traffic to A/B on."""
    spec = context.spec
    phases: dict[str, float] = {}
    started = time.perf_counter() if started is None else started
    storage = storage_for(spec.storage)
    finished_trials(context, storage)  # a study defined differently is refused before anything is written
    scorer = ProxyScorer(context)
    # Before the references are scored: what this run measures is not learnt from by this run's proxies.
    scorer.learn_latency_until(latency_history_cut_off(context, storage))
    evaluator = Evaluator(context, storage, artifact_dir_for(spec.storage))
    evaluator.replay = replay
    phases["load_and_train_s"] = time.perf_counter() - started

    # The references are needed anyway; built first, a target that cannot realise this model stops the run
    # here with one line, before any trial. Deployed versions come next so candidates are compared with them.
    mark = time.perf_counter()
    references = reference_candidates(context, scorer)
    evaluator.run(references + list(deployed))
    phases["references_s"] = time.perf_counter() - mark

    mark = time.perf_counter()
    study = run_search(context, scorer, storage, trials, seeds=list(seeds), attrs=attrs)
    phases["search_s"] = time.perf_counter() - mark

    mark = time.perf_counter()
    pool, promoted = promote(context, scorer, study)
    phases["rescore_s"] = time.perf_counter() - mark
    agreement = stage_agreement(pool, scorer.objectives[0])
    study.set_user_attr("stage1_vs_stage2_spearman", agreement)
    console.print(
        f"promoted {len(promoted)} of {len(pool)} re-scored plans; "
        f"search-vs-rescore Spearman of {scorer.objectives[0]}: " + ("n/a" if agreement is None else f"{agreement:+.2f}")
    )

    mark = time.perf_counter()
    measured = evaluator.run(references + list(deployed) + promoted)
    phases["full_evaluation_s"] = time.perf_counter() - mark
    phases["total_s"] = time.perf_counter() - started
    study.set_user_attr("last_run_phase_seconds", {k: round(v, 1) for k, v in phases.items()})
    for target_study in measured.values():
        console.print(front_table(target_study, context.workload.metric_name))
        ab = replay_table(target_study)
        if ab is not None:
            console.print(ab)
    console.print("phases: " + ", ".join(f"{k.removesuffix('_s')} {v:.0f}s" for k, v in phases.items()))
    return RunResult(study, measured, promoted, phases)
