"""A compression cycle: one run of a lineage's study against one model version (and recorded traffic), warm-started
from the cycles before it, measured beside the deployed versions, judged by the gates and the promotion policy.

Studies of cycle N: `<lineage>/cN/proxy` and `<lineage>/cN/full/<target>`. Running the same model and data again
resumes an unfinished cycle; a new model (or new traffic) is the next cycle.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import TrialState

from autotune import deploy
from autotune.alerts import send_alert
from autotune.context import prepare
from autotune.errors import SpecError
from autotune.identity import study_identity
from autotune.lineage import Lineage, now
from autotune.pipeline import describe, run_study
from autotune.plan import Plan
from autotune.progress import console
from autotune.promotion import Candidate
from autotune.replay import ReplayComparison, load_recording, output_histogram
from autotune.spec import StudySpec
from autotune.studies import measured_study_name, storage_for
from autotune.warm_start import LayersDiffer, WarmStartPlan, deployed_plans, plans_from, recipe_plans, resolve_source
from autotune.workloads import load_workload
from autotune.workloads.base import with_checkpoint

REGRESSION_EXIT = 3


@dataclass
class CycleOutcome:
    cycle: int
    ran: bool  # False when this model and data already had a finished cycle
    record: dict
    regressions: list[dict] = field(default_factory=list)
    promoted: list[dict] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """3 while a deployed version fails its gates and nothing replaced it (a regression someone must see)."""
        return REGRESSION_EXIT if any(not r["resolved"] for r in self.regressions) else 0


def cycle_workload(spec: StudySpec, model: str | None):
    """The workload at this model version, with the recorded traffic (and calibration from it, if asked)."""
    workload = load_workload(spec.workload)
    if model:
        workload = with_checkpoint(workload, model)
    try:
        recording = load_recording(spec.replay.inputs, workload) if spec.replay.inputs else None
    except SpecError as exc:
        raise SpecError(f"{spec.path}: {exc}") from exc
    if recording is not None and spec.replay.calibrate:
        workload = dataclasses.replace(workload, calibration=recording.inputs)
    return workload, recording


def drift_reference(context, comparison: ReplayComparison | None) -> dict:
    """The FP32 model's output distribution on the data this cycle was tuned for; later traffic is compared to it.
    With recorded traffic, the replay's FP32 answers already are that distribution."""
    workload = context.workload
    if comparison is not None:
        outputs = comparison.fp32
    else:
        outputs = workload.io.run_batched(context.recovery.teacher, workload.calibration)
    return output_histogram(outputs, workload.io.output_kind)


def run_cycle(
    spec: StudySpec,
    model: str | None = None,
    version: str = "",
    warm_start_from: str | None = None,
    cold: bool = False,
    trials: int | None = None,
    trigger: str = "manual",
    new: bool = False,
) -> CycleOutcome:
    started = time.perf_counter()
    storage = storage_for(spec.storage)
    lineage = Lineage(storage, spec.name)
    model = str(Path(model).resolve()) if model else ""  # a later watch or resume runs from another directory
    workload, recording = cycle_workload(spec, model)
    replay_fingerprint = recording.fingerprint if recording is not None else ""
    identity = study_identity(spec, workload, replay_fingerprint) | {"version": version}
    if warm_start_from:
        resolve_source(storage, warm_start_from)  # a wrong source is refused before anything is recorded
    # Everything that depends on the lineage's state is decided holding its lock: another process may have
    # finished or started a cycle meanwhile.
    with lineage.running():
        cycles = lineage.cycles()
        latest = cycles[-1] if cycles else None
        if latest is not None and latest["identity"] == identity and not new:
            if latest["status"] == "finished":
                console.print(
                    f"{spec.name}: cycle c{latest['cycle']} already ran on this model and data (finished "
                    f"{latest['finished']}); nothing to do (--new runs another)"
                )
                outcome = CycleOutcome(latest["cycle"], False, latest)
                outcome.regressions = [r for r in latest.get("regressions", []) if not r.get("resolved")]
                return outcome
            number = latest["cycle"]  # an interrupted cycle resumes: its completed trials are kept
        else:
            number = latest["cycle"] + 1 if latest else 1
        lineage.hold(number)
        record = {
            "cycle": number,
            "status": "running",
            "trigger": trigger,
            "model": model,
            "version": version,
            "identity": identity,
            "replay": str(recording.path) if recording is not None else "",
            "started": now(),
        }
        lineage.save_cycle(record)
        lineage.log("cycle started", cycle=number, trigger=trigger, model=model, version=version)
        outcome = CycleOutcome(number, True, record)
        try:
            context = prepare(spec.for_cycle(number), workload)
            context.replay_fingerprint = replay_fingerprint
            console.print(describe(context))
            warm = warm_start_plan(storage, lineage, context, number, warm_start_from, cold)
            deployed = [
                Candidate("deployed", Plan.from_dict(current["plan"]), deployment=current)
                for current in (lineage.current(t.name) for t in spec.targets)
                if current is not None
            ]
            comparison = (
                ReplayComparison(recording, workload, context.recovery.teacher, spec.replay.latency_requests)
                if recording is not None
                else None
            )
            record |= {
                "warm_start": warm.summary(),
                "deployed_at_start": {d.deployment["target"]: d.deployment["version"] for d in deployed},
                "drift_reference": drift_reference(context, comparison),
                "studies": {
                    "proxy": context.spec.proxy_study,
                    "measured": [measured_study_name(context.spec.name, t.name) for t in spec.targets],
                },
            }
            lineage.save_cycle(record)
            result = run_study(
                context,
                trials,
                seeds=warm.seeds,
                deployed=deployed,
                attrs={"lineage": spec.name, "cycle": number, "warm_start": warm.summary()},
                replay=comparison,
                started=started,
            )
            judge(spec, storage, lineage, number, result.measured, outcome)
            if outcome.regressions and spec.policy.alert:
                summary = {"lineage": spec.name, "cycle": number, "regressions": outcome.regressions}
                record["alert"] = send_alert(spec.policy.alert, summary | {"promoted": _versions(outcome)})
        except BaseException as exc:
            # Stopped (SIGTERM, Ctrl-C): resumed by the next cycle or watch. Failed: waits for a new trigger.
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            record |= {"status": status, "stopped": now(), "why": f"{type(exc).__name__}: {exc}"[:300]}
            _record_stop(spec, lineage, record)
            raise
        record |= {
            "status": "finished",
            "finished": now(),
            "regressions": outcome.regressions,
            "promoted": _versions(outcome),
            "phases": {k: round(v, 1) for k, v in result.phases.items()},
        }
        lineage.save_cycle(record)
        lineage.log("cycle finished", cycle=number, regressions=len(outcome.regressions), promoted=record["promoted"])
    return outcome


def _record_stop(spec: StudySpec, lineage: Lineage, record: dict) -> None:
    """Record why a cycle stopped. A stop that lands inside a storage write can leave that storage's connection
    unusable, so a failed write is retried once on a new connection."""
    for attempt in range(2):
        try:
            lineage.save_cycle(record)
            lineage.log(f"cycle {record['status']}", cycle=record["cycle"], why=record["why"])
            return
        except Exception as exc:
            if attempt:
                raise
            console.print(f"[yellow]{spec.name}: recording the stop failed ({type(exc).__name__}: {exc}); retrying")
            lineage = Lineage(storage_for(spec.storage), spec.name)


def _versions(outcome: CycleOutcome) -> list[dict]:
    return [{"target": p["target"], "version": p["version"]} for p in outcome.promoted]


def warm_start_plan(storage, lineage: Lineage, context, number: int, source: str | None, cold: bool) -> WarmStartPlan:
    spec = context.spec
    warm = WarmStartPlan()
    recipe_plans(storage, spec.warm_start.recipes, context, warm)
    explicit = source is not None
    if not cold:
        deployed_plans(lineage, context, warm)
        if source is None:
            earlier = [c for c in lineage.cycles() if c["cycle"] < number and c.get("status") == "finished"]
            source = f"{lineage.name}/c{earlier[-1]['cycle']}" if earlier else None
        if source is not None:
            resolved = resolve_source(storage, source)
            try:
                plans_from(storage, resolved, context, spec.warm_start.proxy_plans, warm)
                warm.source = resolved.label
            except LayersDiffer as exc:
                if explicit:
                    raise
                console.print(f"[yellow]{exc}: the model's architecture changed, so this cycle starts cold")
    if warm.seeds and spec.sampler in ("tpe", "gp-tpe"):  # "auto" picks NSGA-II for a warm start
        console.print(
            f"[yellow]warm start with {spec.sampler}: with TPE, measured, it does not reach the front sooner than a cold "
            "search and an unrelated source slows it (docs/warm-start.md); NSGA-II profits (sampler \"auto\" picks it)"
        )
    if warm.seeds:
        differs = f"; the source differs in {', '.join(warm.differs)}" if warm.differs else ""
        if warm.source:
            differs += f"; {len(warm.unchanged_layers)} of {len(context.layer_kinds)} layers have unchanged weights"
        console.print(
            f"warm start{' from ' + warm.source if warm.source else ''}: {len(warm.seeds)} plans enqueued "
            f"({', '.join(f'{n} {k}' for k, n in warm.counts.items())}), each re-evaluated here{differs}"
        )
    else:
        console.print("cold start: no earlier cycle, recipe or deployed version to seed the search")
    return warm


def objective_value(study: optuna.Study, trial: optuna.trial.FrozenTrial, objective: str) -> float:
    value = deploy.trial_metrics(study, trial).get(objective)
    return float("inf") if value is None else float(value)


def beats(candidate: float, deployed: float, objective: str, margin: float) -> bool:
    """Relative margin on latency, size and cost; on the metric drop (points, can be 0 or negative) an absolute one.
    A value that was not measured (a target without a price has no cost) never beats anything."""
    if not (math.isfinite(candidate) and math.isfinite(deployed)):
        return False
    if objective == "drop_pts":
        return candidate <= deployed - margin
    return candidate <= deployed * (1 - margin)


def judge(spec: StudySpec, storage, lineage: Lineage, number: int, measured: dict, outcome: CycleOutcome) -> None:
    """Regressions of the deployed versions; then the promotion policy, target by target."""
    policy = spec.policy
    promoted_here = {
        e["target"] for e in lineage.history() if e["event"] == "promote" and e.get("record", {}).get("cycle") == number
    }
    for target, study in measured.items():
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        live = lineage.current(target)
        version = None if live is None else live["version"]
        current = next(
            (t for t in complete if t.user_attrs.get("role") == "deployed" and t.user_attrs.get("deployed_version") == version),
            None,
        )
        if live is not None and current is None:  # deployed, but its artifact could not be measured here
            failed = [t for t in study.trials if t.user_attrs.get("deployed_version") == version]
            reason = failed[-1].user_attrs.get("fail_reason", "not measured") if failed else "not measured"
            regression = {"target": target, "version": version, "failures": [f"cannot be measured: {reason}"[:300]], "resolved": False}
            outcome.regressions.append(regression)
            console.print(f"[bold red]REGRESSION[/] {spec.name} c{number} {target}: deployed v{version} {regression['failures'][0]}")
            lineage.log("regression", cycle=number, target=target, version=version, failures=regression["failures"])
        passing = [
            t for t in complete if t.user_attrs.get("role") in ("candidate", "int8") and not t.user_attrs.get("gate_failures")
        ]
        best = min(passing, key=lambda t: objective_value(study, t, policy.objective), default=None)
        regression = outcome.regressions[-1] if outcome.regressions and outcome.regressions[-1]["target"] == target else None
        if current is not None and current.user_attrs.get("gate_failures"):
            regression = {
                "target": target,
                "version": current.user_attrs.get("deployed_version"),
                "failures": current.user_attrs["gate_failures"],
                "resolved": False,
            }
            outcome.regressions.append(regression)
            console.print(
                f"[bold red]REGRESSION[/] {spec.name} c{number} {target}: deployed v{regression['version']} fails "
                + "; ".join(regression["failures"])
            )
            lineage.log("regression", cycle=number, target=target, version=regression["version"], failures=regression["failures"])
        if best is None:
            console.print(f"{target}: no candidate passes every gate; the deployed version stays")
            continue
        value = objective_value(study, best, policy.objective)
        if target in promoted_here:
            console.print(f"{target}: already promoted in this cycle (resumed)")
            if regression is not None:
                regression["resolved"] = True
            continue
        if live is None:
            why = f"first deployment: best gate-passing {policy.objective} {value:.4g}"
        elif regression is not None or current is None:
            why = f"deployed v{version} fails its gates; best gate-passing {policy.objective} {value:.4g}"
        elif beats(value, objective_value(study, current, policy.objective), policy.objective, policy.margin):
            why = f"{policy.objective} {value:.4g} vs deployed {objective_value(study, current, policy.objective):.4g} (margin {policy.margin:g})"
        else:
            console.print(
                f"{target}: best gate-passing trial {best.number} ({policy.objective} {value:.4g}) does not beat deployed "
                f"v{current.user_attrs.get('deployed_version')} ({objective_value(study, current, policy.objective):.4g}) by "
                f"{policy.margin:g}; the deployed version stays"
            )
            continue
        if not policy.auto_promote:
            console.print(f"{target}: candidate trial {best.number} ({why}); promote it with "
                          f"`autotune promote {spec.name} c{number}:{best.number} --target {target}`")
            continue
        record = deploy.promote(storage, spec.name, target, str(best.number), f"auto: {why}", cycle=number, auto=True)
        outcome.promoted.append(record)
        if regression is not None:
            regression["resolved"] = True
        console.print(f"{target}: promoted trial {best.number} as v{record['version']} ({why})")
