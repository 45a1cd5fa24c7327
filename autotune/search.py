"""The proxy search: an Optuna multi-objective study over per-layer bits and pruning ratios."""

from __future__ import annotations

import time

import numpy as np
import optuna
from optuna.trial import TrialState

from autotune.anchors import target_anchors, uniform_anchors
from autotune.context import StudyContext
from autotune.errors import AutotuneError, ProxyError, SpecError
from autotune.fresh_plans import FreshPlanSampler
from autotune.identity import layer_fingerprints
from autotune.pareto import pareto_mask
from autotune.phased_sampler import PhasedSampler
from autotune.progress import console, progress_bar
from autotune.scoring import ProxyScorer
from autotune.search_space import PARAMS_ENCODING, SearchSpace
from autotune.studies import FINISHED, check_params_encoding, fail_interrupted_trials, find_study_names, open_study


def sampler_name(name: str, warm: bool) -> str:
    """"auto": GPSampler then TPE for a cold search, NSGA-II for a warm-started one (measured: docs/samplers-budget.md,
    docs/warm-start.md)."""
    if name != "auto":
        return name
    return "nsga2" if warm else "gp-tpe"


# GPSampler's phase of "gp-tpe": on fashion-cnn (Zen 2, 2026-12-05) a 48-trial GP search took 50 s and found the
# most of any sampler at 48 trials; a 200-trial one took 426 s (docs/samplers.md).
GP_TRIALS = 48
FRESH_PLAN_SAMPLERS = ("tpe", "gp", "gp-tpe")  # the ones make_sampler wraps in FreshPlanSampler when given a space


def default_startup(trials: int) -> int:
    """Random trials before a model-based sampler proposes: a quarter of the budget, at least 5."""
    return max(5, trials // 4)


def gp_tpe_startup(trials: int) -> int:
    """The random start-up of "gp-tpe": GP's phase's own quarter."""
    return default_startup(min(trials, GP_TRIALS))


def make_sampler(
    name: str, seed: int, trials: int, space: SearchSpace | None = None, startup: int | None = None
) -> optuna.samplers.BaseSampler:
    """The study's sampler; model-based ones start after `startup` random trials (default a quarter of the budget, at
    least 5). With `space`, TPE and GP propose a plan the study has not tried where they would repeat one
    (autotune.fresh_plans)."""
    if name == "gp-tpe":
        return _gp_then_tpe(seed, trials, space, startup if startup is not None else gp_tpe_startup(trials))
    startup = startup if startup is not None else default_startup(trials)
    if name == "tpe":
        model = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=startup)
    elif name == "gp":
        model = optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
    elif name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    else:  # Several generations even on a small budget: the default population of 50 would be one random generation.
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=int(np.clip(trials // 4, 8, 50)))
    return _fresh(model, space, seed)


def _fresh(model: optuna.samplers.BaseSampler, space: SearchSpace | None, seed: int) -> optuna.samplers.BaseSampler:
    if space is None:
        return model
    return FreshPlanSampler(model, lambda params: space.plan_from_params(params).digest(), space.choices(), seed)


def _gp_then_tpe(seed: int, trials: int, space: SearchSpace | None, startup: int) -> optuna.samplers.BaseSampler:
    """GPSampler for the first GP_TRIALS trials (after `startup` random ones), multivariate TPE from there on."""
    gp_until = min(trials, GP_TRIALS)
    gp = optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
    tpe = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=gp_until)
    return _fresh(PhasedSampler([(0, gp), (gp_until, tpe)]), space, seed)


def finished_trials(context: StudyContext, storage) -> int:
    """Finished trials of an existing proxy study (0 for a new one); refuses a study defined differently."""
    spec = context.spec
    if spec.proxy_study not in find_study_names(storage):
        return 0
    existing = optuna.load_study(study_name=spec.proxy_study, storage=storage)
    digest = existing.user_attrs.get("search_digest")
    if digest is not None and digest != spec.search_digest(context.workload.fingerprint, context.recovery.config.precision):
        raise SpecError(
            f"{spec.path}: study {spec.proxy_study!r} in {spec.storage} was created from a different workload, model, "
            "search space, proxy recipe, hardware target or search recovery; give the study a new name to start afresh"
        )
    return len(existing.get_trials(deepcopy=False, states=FINISHED))


def latency_history_cut_off(context: StudyContext, storage) -> float:
    """Latency proxies learn from plans measured before this time (epoch s): the proxy study's, else now."""
    if context.spec.proxy_study in find_study_names(storage):
        existing = optuna.load_study(study_name=context.spec.proxy_study, storage=storage)
        if "latency_history_until" in existing.user_attrs:
            return existing.user_attrs["latency_history_until"]
    return time.time()


def run_search(
    context: StudyContext,
    scorer: ProxyScorer,
    storage,
    trials: int | None = None,
    seeds: list[tuple[dict, dict]] = (),
    attrs: dict | None = None,
) -> optuna.Study:
    """Run proxy trials until the spec's budget of finished trials is reached (resumes an existing study).

    `seeds` are (params, user attrs) of plans enqueued first in a new study (a warm start: re-evaluated here,
    tagged with where they came from); they count against the budget. `attrs` are stored on the study.
    """
    spec = context.spec
    budget = trials if trials is not None else spec.trials
    metric_names = list(scorer.objectives)
    finished_before = finished_trials(context, storage)
    chosen = sampler_name(spec.sampler, warm=bool(seeds))
    sampler = make_sampler(chosen, spec.seed + finished_before, budget, context.space if spec.fresh_plans else None)
    study = open_study(storage, spec.proxy_study, metric_names, sampler)
    check_params_encoding(study, PARAMS_ENCODING)
    study.set_user_attr("search_digest", spec.search_digest(context.workload.fingerprint, context.recovery.config.precision))
    study.set_user_attr("spec", str(spec.path))
    study.set_user_attr("sampler", chosen)
    study.set_user_attr("kind", "proxy search")
    study.set_user_attr("workload", spec.workload)
    study.set_user_attr("search_recovery_steps", spec.recovery.search_steps)
    study.set_user_attr("identity", context.identity())
    study.set_user_attr("layers", context.layer_kinds)
    study.set_user_attr("layer_weights", layer_fingerprints(context.recovery.teacher, context.layer_kinds))
    for key, value in (attrs or {}).items():
        study.set_user_attr(key, value)
    fail_interrupted_trials(study)
    if "latency_history_until" not in study.user_attrs:
        until = scorer.history_until if scorer.history_until is not None else time.time()
        study.set_user_attr("latency_history_until", until)
    scorer.learn_latency_until(study.user_attrs["latency_history_until"])
    finished = len(study.get_trials(states=FINISHED))
    remaining = max(0, budget - finished)
    if finished == 0:
        # Seeds take at most half the budget: the search must still explore the changed model.
        kept = list(seeds)[: budget // 2]
        if len(kept) < len(seeds):
            console.print(f"warm start: {len(seeds) - len(kept)} of {len(seeds)} seed plans left out (half of {budget} trials)")
        for params, tags in kept:
            study.enqueue_trial(params, user_attrs=tags, skip_if_exists=True)
        # The uniform plans a person would try first (INT8 everywhere, uniform pruning) seed the search, then each of
        # them with the layers a target runs faster in float (autotune.anchors).
        anchors = uniform_anchors(context.space, spec.anchors)
        for plan in anchors:
            study.enqueue_trial(context.space.params_for(plan), skip_if_exists=True)
        if spec.target_anchors:
            for plan, target in target_anchors(context.space, anchors, scorer.latency_estimators()):
                tags = {"anchor": f"float where faster on {target}"}
                study.enqueue_trial(context.space.params_for(plan), user_attrs=tags, skip_if_exists=True)

    def objective(trial: optuna.Trial) -> tuple[float, ...]:
        plan = context.space.suggest_plan(trial)
        trial.set_user_attr("plan", plan.to_dict())
        trial.set_user_attr("plan_digest", plan.digest())
        try:
            scores = scorer.score(plan, spec.recovery.search_steps)
        except Exception as exc:
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}")
            raise
        for name, value in scores.items():
            trial.set_user_attr(f"proxy.{name}", value)
        trial.set_user_attr("proxy_seconds", {k: round(v, 4) for k, v in scorer.last_seconds.items()})
        return tuple(scores[name] for name in metric_names)

    if remaining:
        started = time.perf_counter()
        with progress_bar() as progress:
            task = progress.add_task("proxy trials", total=remaining)

            def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
                progress.update(task, advance=1, description=_front_summary(study, metric_names))

            # A proxy failing on one plan (NaN, a plan it cannot score) fails that trial; anything else
            # (a target that cannot build a layer, a bug) stops the run at once with one line.
            study.optimize(objective, n_trials=remaining, catch=(ProxyError,), callbacks=[report])
        elapsed = time.perf_counter() - started
        study.set_user_attr("last_search_trials_per_s", remaining / elapsed)
        if isinstance(sampler, FreshPlanSampler) and sampler.replaced:  # proposals that would have repeated a plan
            replaced = study.user_attrs.get("repeated_proposals_replaced", 0) + sampler.replaced
            study.set_user_attr("repeated_proposals_replaced", replaced)
        learnt, before = scorer.latency_learnt_from(), study.user_attrs.get("latency_learnt_from")
        if before is not None and before != learnt:
            console.print(
                f"[yellow]study {spec.proxy_study!r}: its latency proxy learnt from {before} measured plans before and "
                f"{learnt or 'none'} now (the records under cache/latency-observed changed): its trials mix two latency scales"
            )
        if learnt:
            study.set_user_attr("latency_learnt_from", learnt)
    checks = scorer.latency_checks()
    if checks:
        study.set_user_attr("latency_check", checks)
    completed = study.get_trials(states=(TrialState.COMPLETE,))
    if not completed:
        failed = study.get_trials(states=(TrialState.FAIL,))
        reason = failed[-1].user_attrs.get("fail_reason", "unknown") if failed else "no trials ran"
        raise AutotuneError(f"study {spec.proxy_study!r}: no proxy trial completed ({len(failed)} failed; last: {reason})")
    return study


def _front_summary(study: optuna.Study, metric_names: list[str]) -> str:
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not trials:
        return "proxy trials (none completed yet)"
    values = np.array([t.values for t in trials])
    front = values[pareto_mask(values)]
    best = ", ".join(f"{name} {front[:, i].min():.3g}" for i, name in enumerate(metric_names))
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    failures = f" | {len(failed)} failed (last: {failed[-1].user_attrs.get('fail_reason', '?')[:80]})" if failed else ""
    return f"proxy trials | front {len(front)} | best {best}{failures}"
