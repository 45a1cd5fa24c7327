"""autotune against the alternatives, measured side by side in one run on one machine (docs/benchmarks.md).

Methods, all on the same workload, targets, recovery budget and machine: FP32; uniform INT8 (NNCF PTQ); NNCF
quantize_with_accuracy_control (OpenVINO) at the accuracy budget; random search and autotune with the same number of
full evaluations (several seeds); the uniform sweep (INT8 + one pruning ratio everywhere, 0.1 ... 0.7); and a
reference front (random and uniform plans, many full evaluations, kept in the benchmark's storage so a rerun reuses
them). Speed is re-measured at the end in interleaved rounds, every artifact once per round in a random order.

Run: `python -m benchmarks.run` (full: an estimated 3.5 h on 2 cores from an empty cache, half of it the reference
front; a rerun reuses every cached evaluation and re-times, about 30 min) or `python -m benchmarks.run --quick` (minutes,
tiny study: checks the pipeline, not the figures). `--proxy-variants half-width-latency` also runs autotune with another
proxy recipe, as a method of its own beside the default, in the same run and timing rounds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from optuna.artifacts import FileSystemArtifactStore, download_artifact
from optuna.trial import TrialState

from autotune.context import prepare, resolve_device, resolve_recovery_precision
from autotune.evaluate import Evaluator, tool_versions, trial_key
from autotune.latency_table import without_round_drift
from autotune.machine import cpu_model
from autotune.pareto import hypervolume, nondominated_ranks
from autotune.plan import HALF_PRECISION_BITS, LayerChoice, Plan
from autotune.progress import console
from autotune.promotion import Candidate, reference_candidates
from autotune.scoring import ProxyScorer
from autotune.search import sampler_name
from autotune.spec import ACTIVATIONS, load_proxy_recipe, load_study_spec
from autotune.studies import measured_study_name, storage_for
from autotune.targets import make_target
from benchmarks import methods
from benchmarks.fidelity_spread import every_plan_fidelity, scores_once
from benchmarks.metrics import (
    best_within,
    drop_interval,
    evaluations_to_reach,
    front_rows,
    hypervolume_curve,
    latency_spearman_interval,
    ratio_interval,
    spearman_interval,
    split_half_ceiling,
)
from benchmarks.page import companions_of, render, write_results
from benchmarks.pages import quiet_libraries
from benchmarks.timing import fetch_artifact, interleaved_rounds, quicker
from benchmarks.variants import SEARCH_VARIANTS

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_DEFAULT = "fp32-runtime-default"
METHODS = ("autotune", "random", "sweep", "reference")  # "autotune" includes its proxy variants


@dataclasses.dataclass(frozen=True)
class Config:
    study: str = "fashion-cnn"
    targets: tuple[str, ...] = ()  # empty: the study's targets
    trials: int = 200  # autotune's proxy trials
    evaluations: int = 16  # full evaluations of autotune and of random search
    seeds: int = 3  # autotune and random search seeds
    sampler: str = ""  # empty: the study's sampler
    proxy_variants: tuple[str, ...] = ()  # proxy recipes autotune also runs with, each a method "autotune:<recipe>"
    search_variants: tuple[str, ...] = ()  # search settings autotune also runs with (SEARCH_VARIANTS)
    sweep: tuple[float, ...] = methods.SWEEP_RATIOS
    reference_evaluations: int = 200  # random plans of the cached reference front (plus the sweep, FP32 and INT8)
    compared: tuple[str, ...] = METHODS  # the methods to run (FP32, INT8 and the runtime's own baselines always run)
    rounds: int = 5  # interleaved timing rounds
    round_seconds: float | None = None  # None: each target's [measure] protocol in every round
    reference_timed_ranks: int = 2  # reference plans re-timed in the rounds: the first non-dominated ranks of their evaluation
    max_drop_pts: float = 1.0  # the accuracy budget (NNCF accuracy control's max_drop; "within 1 point")
    validation_for_accuracy_control: int | None = None  # None: the whole validation set
    timing_seconds: float | None = None  # None: each target's [measure] protocol
    bootstrap_draws: int = 500
    # Every method recovers the same way, by default the way a study does ("auto": bf16 autocast where the CPU runs it
    # natively). It is resolved before the run starts, and each precision gets a cache folder of its own.
    recovery_precision: str = "auto"

    @classmethod
    def quick(cls) -> Config:
        return cls(
            study="fashion-cnn-tiny",
            trials=10,
            evaluations=2,
            seeds=1,
            sweep=(0.3, 0.6),
            reference_evaluations=2,
            rounds=2,
            round_seconds=0.05,
            validation_for_accuracy_control=512,
            timing_seconds=0.05,
            bootstrap_draws=50,
        )


def resolved_recovery_precision(config: Config) -> str:
    """The precision every method's recovery will use on this machine ("auto" becomes bf16 or f32)."""
    spec = load_study_spec(config.study)
    spec = dataclasses.replace(spec, recovery=dataclasses.replace(spec.recovery, precision=config.recovery_precision))
    return resolve_recovery_precision(spec, resolve_device(spec.recovery.device))


def machine() -> dict:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}


def bench_spec(config: Config, folder: Path):
    """The study spec every method of a run shares: the benchmark's own storage in `folder`, the chosen targets."""
    spec = load_study_spec(config.study)
    targets = tuple(t for t in spec.targets if not config.targets or t.name in config.targets)
    if config.timing_seconds:  # --quick: every measurement on the short protocol, not only the final rounds
        short = {"min_seconds": config.timing_seconds, "min_repeats": 10, "warmup": 5}
        targets = tuple(dataclasses.replace(t, measure=dataclasses.replace(t.measure, **short)) for t in targets)
    return dataclasses.replace(
        spec,
        name="bench",
        storage=f"sqlite:///{folder / 'bench.db'}",
        targets=targets,
        sampler=config.sampler or spec.sampler,
        recovery=dataclasses.replace(spec.recovery, precision=config.recovery_precision),
    )


class Benchmark:
    def __init__(self, config: Config, folder: Path) -> None:
        self.config = config
        self.folder = folder
        self.spec = bench_spec(config, folder)
        self.context = prepare(self.spec)
        self.storage = storage_for(self.spec.storage)
        self.scorer = ProxyScorer(self.context)
        self.scores = scores_once(self.scorer, self.spec.recovery.search_steps)  # the figures of every target share them
        # The accuracy proxy with and without simulated INT8 activations, to compare their fidelity on the same plans.
        self.variants = {}  # activations -> the plan's scores under that simulation
        for activations in ACTIVATIONS:
            # Only the accuracy objective: a variant needs no latency tables of its own.
            proxies = dataclasses.replace(
                self.spec.proxies, activations=activations, objectives=self.spec.proxies.objectives[:1], report=()
            )
            variant = dataclasses.replace(self.context, spec=dataclasses.replace(self.spec, proxies=proxies))
            if activations == self.spec.proxies.activations:
                self.variants[activations] = self.scores
            else:
                self.variants[activations] = scores_once(ProxyScorer(variant), self.spec.recovery.search_steps)
        # autotune's methods: the study's proxy recipe, and each other recipe under trial (same workload, space, targets).
        self.autotune_scorers = {"autotune": self.scorer}
        for recipe in config.proxy_variants:
            variant = dataclasses.replace(self.spec, proxies=load_proxy_recipe(recipe))
            self.autotune_scorers[f"autotune:{recipe}"] = ProxyScorer(dataclasses.replace(self.context, spec=variant))
        for name in config.search_variants:
            variant = SEARCH_VARIANTS[name][0](self.spec)
            self.autotune_scorers[f"autotune:{name}"] = ProxyScorer(dataclasses.replace(self.context, spec=variant))
        self.evaluator = Evaluator(self.context, self.storage, folder / "artifacts")
        self.references = reference_candidates(self.context, self.scorer)
        self.evaluated: dict[str, dict[str, list[str]]] = {}  # method -> seed label -> plan keys in order
        self.plans: dict[str, object] = {}  # plan key -> Plan
        self.seconds: dict[str, dict[str, float]] = {}  # method -> seed label -> wall seconds (search + evaluations)
        self.phases: dict[str, dict] = {}
        self.runtime_default: dict[str, str] = {}  # target -> key of FP32 at the runtime's default float precision

    def evaluate(self, method: str, label: str, plans: list, extra_seconds: float = 0.0, candidates=None) -> None:
        """Full evaluation of `plans` on every target (plans already measured are reused, their cost still counted)."""
        candidates = candidates or [Candidate("candidate", plan) for plan in plans]
        for plan in plans:
            self.plans[plan.digest()] = plan
        self.evaluator.run(self.references + candidates)
        self.evaluated.setdefault(method, {})[label] = [plan.digest() for plan in plans]
        self.seconds.setdefault(method, {})[label] = extra_seconds + self.evaluation_seconds([p.digest() for p in plans])

    def evaluation_seconds(self, keys: list[str]) -> float:
        total = 0.0
        for hardware in self.spec.targets:
            trials = self.trials(hardware.name)
            total += sum(sum(trials[k].user_attrs.get("timings", {}).values()) for k in keys if k in trials)
        return total

    def trials(self, target: str) -> dict:
        import optuna

        study = optuna.load_study(study_name=measured_study_name(self.spec.name, target), storage=self.storage)
        return {trial_key(t): t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}

    def run_methods(self) -> None:
        config = self.config
        for seed in range(config.seeds):
            for method, scorer in self.autotune_scorers.items() if "autotune" in config.compared else ():
                sampler = scorer.context.spec.sampler  # a search variant may name its own
                console.rule(f"{method} ({sampler}), seed {seed}")
                plans, phases, promoted = methods.autotune_plans(
                    scorer.context, scorer, self.storage, config.trials, config.evaluations, seed, sampler, method
                )
                self.evaluate(method, f"s{seed}", plans, phases["proxy_search_s"] + phases["rescore_s"], promoted)
                if method == "autotune":  # the whole-cycle times are the study's own recipe's
                    phases["full_evaluation_s"] = self.evaluation_seconds([p.digest() for p in plans])
                    self.phases[f"s{seed}"] = phases
            if "random" in config.compared:
                console.rule(f"random search, seed {seed}")
                self.evaluate("random", f"s{seed}", self.context.space.random_plans(config.evaluations, 1000 + seed))
        if "sweep" in config.compared:
            console.rule("uniform sweep")
            self.evaluate("sweep", "-", methods.sweep_plans(self.context, config.sweep))
        self.evaluate_runtime_defaults()
        if config.reference_evaluations and "reference" in config.compared:
            console.rule(f"reference front ({config.reference_evaluations} random plans + the sweep)")
            plans = self.context.space.random_plans(config.reference_evaluations, 99) + methods.sweep_plans(self.context)
            self.evaluate("reference", "-", plans)

    def evaluate_runtime_defaults(self) -> None:
        """FP32 as the runtime runs it when not told otherwise (OpenVINO: bf16 on CPUs with AMX): the unquantized plan
        with every layer the target runs at 16 bits there, on each target whose default is a 16-bit float it realises."""
        for hardware in self.spec.targets:
            target = make_target(hardware)
            default = target.runtime_float_default()
            if default == "f32" or hardware.half != default:
                continue
            # Kinds the runtime keeps at 32 under its 16-bit default (OpenVINO's Gather reads an f32 table) stay at 32.
            plan = Plan({
                name: LayerChoice(HALF_PRECISION_BITS if hardware.supports(kind, HALF_PRECISION_BITS) else 32)
                for name, kind in self.context.layer_kinds.items()
            })
            console.rule(f"FP32 at the runtime's default precision ({default}) on {hardware.name}")
            self.evaluator.run_target(target, hardware, [Candidate(RUNTIME_DEFAULT, plan)])
            self.runtime_default[hardware.name] = plan.digest()

    def timed_reference(self, target: str, trials: dict) -> list[str]:
        """The reference plans worth re-timing: the first non-dominated ranks of their own full evaluation (drop,
        latency at the throughput batch). The rest cannot reach the front within the timing noise; timing them in
        every round would cost most of the run."""
        keys = [k for k in self.evaluated.get("reference", {}).get("-", []) if k in trials]
        if not keys:
            return []
        # The measured study's first two objectives: drop and the hardware file's latency (the throughput batch's p50).
        ranks = nondominated_ranks(np.array([trials[k].values[:2] for k in keys]))
        return [k for k, rank in zip(keys, ranks, strict=True) if rank < self.config.reference_timed_ranks]

    def accuracy_control(self, target) -> tuple | None:
        if target.backend != "openvino":
            return None
        console.rule(f"NNCF quantize_with_accuracy_control on {target.name}")
        artifact, seconds = methods.accuracy_control(
            self.context, target, self.config.max_drop_pts, self.folder / "accuracy-control" / target.name,
            self.config.validation_for_accuracy_control,
        )
        return artifact, seconds

    def measure_target(self, hardware) -> dict:
        """Every artifact of this target: outputs on the validation set, then interleaved timing rounds."""
        config, workload = self.config, self.context.workload
        target = make_target(hardware)
        timed = quicker(target, config.round_seconds, 10) if config.round_seconds else target
        store = self.evaluator.artifact_store
        trials = self.trials(hardware.name)
        roles = {c.role: c.plan.digest() for c in self.references}
        if hardware.name in self.runtime_default:
            roles[RUNTIME_DEFAULT] = self.runtime_default[hardware.name]
        keys = sorted(
            {k for method, runs in self.evaluated.items() if method != "reference" for keys in runs.values() for k in keys}
            | set(self.timed_reference(hardware.name, trials))
            | set(roles.values())
        )
        artifacts = {
            key: fetch_artifact(store, trials[key], hardware.name, workload.io, self.folder / "timing" / hardware.name / key)
            for key in keys
            if key in trials
        }
        extra_seconds = {}
        control = self.accuracy_control(target)
        if control is not None:
            artifacts["nncf-accuracy-control"], extra_seconds["nncf-accuracy-control"] = control
        outputs = {key: target.predict(artifact, workload.validation.inputs) for key, artifact in artifacts.items()}
        console.print(f"{hardware.name}: {len(artifacts)} artifacts, {config.rounds} interleaved timing rounds")
        rounds = interleaved_rounds(timed, artifacts, workload.example_input, config.rounds)
        sizes = {key: artifact.size_bytes / 1e6 for key, artifact in artifacts.items()}
        return {
            "target": target,
            "trials": trials,
            "roles": roles,
            "outputs": outputs,
            "rounds": rounds,
            "sizes": sizes,
            "extra_seconds": extra_seconds,
        }


def evaluated_keys(bench: Benchmark) -> set[str]:
    """Every plan some method or the reference front sent to the full evaluation."""
    return {key for runs in bench.evaluated.values() for keys in runs.values() for key in keys}


def provenance(store: FileSystemArtifactStore, trials: dict, keys: set[str]) -> dict:
    """When the plans behind the reference front were evaluated (they are cached across runs) and with which tool
    versions: the dates of their measured trials, the versions from each artifact's recipe."""
    found = [trials[key] for key in sorted(keys) if key in trials]
    if not found:
        return {}
    versions: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for trial in found:
            artifact_id = trial.user_attrs.get("artifact_ids", {}).get("recipe.json")
            if artifact_id is None:
                continue
            path = Path(scratch) / f"{trial.number}.json"
            download_artifact(artifact_store=store, artifact_id=artifact_id, file_path=str(path))
            recipe_versions = json.dumps(json.loads(path.read_text()).get("versions", {}), sort_keys=True)
            versions[recipe_versions] = versions.get(recipe_versions, 0) + 1
    started = [t.datetime_start for t in found if t.datetime_start]
    return {
        "plans": len(found),
        "first": min(started).strftime("%Y-%m-%d %H:%M UTC") if started else None,
        "last": max(started).strftime("%Y-%m-%d %H:%M UTC") if started else None,
        "versions": [{"versions": json.loads(text), "plans": count} for text, count in versions.items()],
    }


def steady_rounds(rounds: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, list[float]]]:
    """Every timed metric with each round's shift taken out, as the latency tables do (`without_round_drift`): a spell
    of load slows a whole round (ONNX Runtime's rounds of the 2026-12-04 EPYC run differed by up to 1.5x), and a plan's
    median over four rounds carried it, so the fastest plans changed places by when they were timed. Ratios taken
    within a round are unchanged."""
    keys = list(rounds)
    metrics = {metric for key in keys for metric in rounds[key]}
    steady = {metric: without_round_drift({key: rounds[key][metric] for key in keys}) for metric in metrics}
    return {key: {metric: steady[metric][key] for metric in rounds[key]} for key in keys}


def summarise(bench: Benchmark, hardware, measured: dict) -> dict:
    """Every figure of one target, from the measured outputs and the interleaved rounds."""
    config, workload = bench.config, bench.context.workload
    labels = workload.validation.labels_numpy()
    outputs, roles = measured["outputs"], measured["roles"]
    rounds = steady_rounds(measured["rounds"])
    keys = list(outputs)
    reference_outputs = outputs[roles["fp32"]]
    images = len(labels)

    def drop_of(key: str, picked: np.ndarray) -> float:
        return workload.quality_drop(workload.metric(reference_outputs[picked], labels[picked]), workload.metric(outputs[key][picked], labels[picked]))

    everything = np.arange(images)
    rows = {}
    for key in keys:
        r = rounds[key]
        rows[key] = {
            "key": key,
            "drop_pts": drop_of(key, everything),
            "batch_latency_ms": float(np.median(r["batch_latency_ms"])),
            "latency_p50_ms": float(np.median(r["latency_p50_ms"])),
            "throughput_per_s": float(np.median(r["throughput_per_s"])),
            "size_mb": measured["sizes"][key],
        }
    fp32, int8 = rows[roles["fp32"]], rows[roles["int8"]]
    runtime_default = rows[roles.get(RUNTIME_DEFAULT, roles["fp32"])]  # FP32 as the runtime runs it when not told
    axes = ("drop_pts", "batch_latency_ms")
    # One reference point for every method: 5 points of drop, FP32's latency at the throughput batch.
    reference_point = np.array([5.0, fp32["batch_latency_ms"]])
    # The reference front: every plan of the search space measured in this run (each method's, the reference plans,
    # FP32 and INT8), so no method scores above 1. FP32 at the runtime's 16-bit default is not in the space.
    plan_keys = [k for k in keys if k in bench.plans or k in (roles["fp32"], roles["int8"])]
    reference_hv = hypervolume(np.array([[rows[k][a] for a in axes] for k in plan_keys]), reference_point) if plan_keys else 0.0
    reference_keys = bench.evaluated.get("reference", {}).get("-", [])

    def in_round(key: str, metric: str) -> np.ndarray:
        return np.asarray(rounds[key][metric], dtype=float)

    # The hypervolume from each timing round alone (the same drops, that round's latencies, reference point and
    # reference front): how far a method's lead over another is the timing's rather than the plans'.
    round_count = min(len(rounds[k]["batch_latency_ms"]) for k in keys)

    def round_points(in_keys: list[str], r: int) -> np.ndarray:
        return np.array([[rows[k]["drop_pts"], rounds[k]["batch_latency_ms"][r]] for k in in_keys])

    round_reference = [np.array([5.0, rounds[roles["fp32"]]["batch_latency_ms"][r]]) for r in range(round_count)]
    round_reference_hv = [hypervolume(round_points(plan_keys, r), round_reference[r]) for r in range(round_count)]

    def method_figures(keys_in_order: list[str]) -> dict:
        present = [k for k in keys_in_order if k in rows]
        points = np.array([[rows[k][a] for a in axes] for k in present])
        curve = hypervolume_curve(points, reference_point) if len(points) else np.array([0.0])
        chosen = [rows[k] for k in present]
        fast = best_within(chosen, config.max_drop_pts, "throughput_per_s")
        quick_single = best_within(chosen, config.max_drop_pts, "latency_p50_ms", best=min)
        small = best_within(chosen, config.max_drop_pts, "size_mb", best=min)
        return {
            "evaluations": len(present),
            "hv_curve": [c / reference_hv if reference_hv else 0.0 for c in curve],
            "hv_final": float(curve[-1] / reference_hv) if reference_hv else 0.0,
            "hv_by_round": [
                float(hypervolume(round_points(present, r), round_reference[r]) / round_reference_hv[r])
                if len(present) and round_reference_hv[r] else 0.0
                for r in range(round_count)
            ],
            "evaluations_to_95": evaluations_to_reach(curve, 0.95 * reference_hv),
            "best_throughput_vs_int8": ratio_interval(in_round(fast["key"], "throughput_per_s"), in_round(int8["key"], "throughput_per_s")) if fast else None,
            "best_throughput_vs_runtime_default": ratio_interval(in_round(fast["key"], "throughput_per_s"), in_round(runtime_default["key"], "throughput_per_s")) if fast else None,
            "best_batch1_vs_int8": ratio_interval(in_round(int8["key"], "latency_p50_ms"), in_round(quick_single["key"], "latency_p50_ms")) if quick_single else None,
            "smallest_size_vs_fp32": small["size_mb"] / fp32["size_mb"] if small else None,
            "best_drop_pts": fast["drop_pts"] if fast else None,
            "front": [rows[k] | {"on_front": True} for k in [r["key"] for r in front_rows(chosen, axes)]],
        }

    per_method: dict[str, dict] = {}
    for method, runs in bench.evaluated.items():
        per_method[method] = {label: method_figures(keys_in_order) for label, keys_in_order in runs.items()}
        for label in runs:
            per_method[method][label]["seconds"] = bench.seconds[method][label]
    if "nncf-accuracy-control" in rows:
        ac = rows["nncf-accuracy-control"]
        per_method["nncf-accuracy-control"] = {
            "-": {
                "evaluations": 1,
                "drop_pts": ac["drop_pts"],
                "throughput_vs_int8": ratio_interval(in_round(ac["key"], "throughput_per_s"), in_round(int8["key"], "throughput_per_s")),
                "seconds": measured["extra_seconds"]["nncf-accuracy-control"],
            }
        }
    for role in ("fp32", "int8", RUNTIME_DEFAULT):
        if role not in roles:
            continue
        row = rows[roles[role]]
        per_method[role] = {"-": {"evaluations": 1, "drop_pts": row["drop_pts"], "throughput_vs_int8": ratio_interval(in_round(row["key"], "throughput_per_s"), in_round(int8["key"], "throughput_per_s"))}}

    # Proxy fidelity over every measured candidate plan (all methods), each scored by the search's own proxies.
    candidate_keys = [k for k in plan_keys if k not in roles.values()]
    objective = bench.spec.proxies.objectives[0]
    latency_proxy = f"latency_measured@{hardware.name}"
    scores = {k: bench.scores(bench.plans[k]) for k in candidate_keys}
    index = {k: i for i, k in enumerate(candidate_keys)}
    fidelity = {}
    if len(candidate_keys) >= 3:
        fidelity["accuracy"] = spearman_interval(
            np.array([scores[k][objective] for k in candidate_keys]),
            lambda i, picked: drop_of(candidate_keys[i], picked),
            len(candidate_keys), images, config.bootstrap_draws,
        )
        if all(latency_proxy in scores[k] for k in candidate_keys):
            fidelity["latency"] = latency_spearman_interval(
                np.array([scores[k][latency_proxy] for k in candidate_keys]),
                np.array([rounds[k]["batch_latency_ms"] for k in candidate_keys]),
                config.bootstrap_draws,
            )
        fidelity["accuracy_by_activations"] = {}
        for activations, score in bench.variants.items():
            proxy = np.array([score(bench.plans[k])[objective] for k in candidate_keys])
            fidelity["accuracy_by_activations"][activations] = spearman_interval(
                proxy, lambda i, picked: drop_of(candidate_keys[i], picked), len(candidate_keys), images, config.bootstrap_draws
            )
        noise = [drop_interval(lambda i, picked: drop_of(candidate_keys[i], picked), index[k], images, 200) for k in candidate_keys[:10]]
        fidelity["drop_interval_width_pts"] = float(np.median([high - low for low, high in noise]))
        fidelity["accuracy_ceiling"] = split_half_ceiling(
            lambda i, picked: drop_of(candidate_keys[i], picked), len(candidate_keys), images, max(config.bootstrap_draws // 5, 10)
        )
        fidelity["drop_range_pts"] = [float(min(rows[k]["drop_pts"] for k in candidate_keys)), float(max(rows[k]["drop_pts"] for k in candidate_keys))]
        # The same proxies over every evaluated plan, the reference front's random plans included: whether plans off
        # the front spread the drops wider than the measurement's noise.
        if bench.evaluated.get("reference"):
            evaluated = [k for k in sorted(evaluated_keys(bench)) if k in measured["trials"] and k not in roles.values()]
            fidelity["every_evaluated"] = every_plan_fidelity(
                bench.context, bench.scores, hardware, bench.evaluator.artifact_store, measured["trials"], evaluated,
                roles["fp32"], bench.folder / "timing" / hardware.name, config.bootstrap_draws, outputs,
            )
    def dominated_by_int8(key: str) -> bool:
        row = rows[key]
        return row["drop_pts"] >= int8["drop_pts"] and row["batch_latency_ms"] >= int8["batch_latency_ms"] and row["size_mb"] >= int8["size_mb"]

    promoted_by = {
        method: [k for keys_in_order in runs.values() for k in keys_in_order if k in rows]
        for method, runs in bench.evaluated.items()
        if method in bench.autotune_scorers
    }
    promoted = promoted_by.get("autotune", [])
    dominated = [k for k in promoted if dominated_by_int8(k)]
    return {
        "target": hardware.name,
        "runtime_float_default": measured["target"].runtime_float_default(),
        "reference_point": reference_point.tolist(),
        "reference_hv_source": f"the front of all {len(plan_keys)} plans timed in this run's rounds (every method's, the re-timed reference plans, FP32 and INT8)",
        "reference_plans": len(reference_keys),
        "reference_timed": sum(k in rows for k in reference_keys),
        "reference_provenance": provenance(bench.evaluator.artifact_store, measured["trials"], evaluated_keys(bench) | set(roles.values())),
        "rows": rows,
        "rounds": measured["rounds"],  # as timed; the figures use them with each round's shift taken out
        "roles": roles,
        "methods": per_method,
        "fidelity": fidelity,
        "promoted": len(promoted),
        "promoted_dominated_by_int8": len(dominated),
        "promoted_dominated_by_method": {m: [sum(map(dominated_by_int8, keys)), len(keys)] for m, keys in promoted_by.items()},
        "proxy_scores": {k: {objective: scores[k][objective], latency_proxy: scores[k].get(latency_proxy)} for k in candidate_keys},
        # Every evaluated plan's recipe and its own full evaluation (re-timed or not), so the figures can be studied again
        # on a machine without this run's storage.
        "plans": {
            k: {
                "plan": bench.plans[k].to_dict(),
                "drop_pts": measured["trials"][k].values[0],
                "batch_latency_ms": measured["trials"][k].user_attrs.get("batch_latency_p50_ms"),
            }
            for k in sorted(evaluated_keys(bench))
            if k in measured["trials"] and k in bench.plans
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny study and budgets: checks the pipeline in minutes")
    parser.add_argument("--study", default=None, help="the study spec to benchmark (default fashion-cnn; minilm: no reference front)")
    parser.add_argument("--out", default=None, help="the page (default docs/benchmarks.md; another study's figures: a section of it)")
    parser.add_argument("--folder", default=None, help="storage, artifacts and caches (default .autotune/benchmarks/<study>)")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--evaluations", type=int, default=None)
    parser.add_argument("--reference-evaluations", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--round-seconds", type=float, default=None, help="timing protocol of each interleaved measurement")
    parser.add_argument("--sampler", default=None)
    parser.add_argument("--proxy-variants", default=None, help="comma-separated proxy recipes autotune also runs with")
    parser.add_argument(
        "--search-variants", default=None, help=f"comma-separated search settings autotune also runs with: {','.join(SEARCH_VARIANTS)}"
    )
    parser.add_argument("--sweep", default=None, help="comma-separated pruning ratios of the uniform sweep")
    parser.add_argument("--targets", default=None, help="comma-separated subset of the study's targets")
    parser.add_argument(
        "--methods", default=None, help=f"comma-separated subset of {','.join(METHODS)} (e.g. two proxy recipes alone)"
    )
    parser.add_argument(
        "--recovery-precision", default=None, choices=("f32", "bf16", "auto"), help="every method's recovery (default auto: the study's)"
    )
    args = parser.parse_args(argv)
    config = Config.quick() if args.quick else Config()
    overrides = {
        "study": args.study,
        "seeds": args.seeds,
        "trials": args.trials,
        "evaluations": args.evaluations,
        "reference_evaluations": args.reference_evaluations,
        "rounds": args.rounds,
        "round_seconds": args.round_seconds,
        "sampler": args.sampler,
        "proxy_variants": tuple(args.proxy_variants.split(",")) if args.proxy_variants else None,
        "search_variants": tuple(args.search_variants.split(",")) if args.search_variants else None,
        "sweep": tuple(float(r) for r in args.sweep.split(",")) if args.sweep else None,
        "targets": tuple(args.targets.split(",")) if args.targets else None,
        "compared": tuple(args.methods.split(",")) if args.methods else None,
        "recovery_precision": args.recovery_precision,
    }
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
    if unknown := sorted(set(config.compared) - set(METHODS)):
        parser.error(f"--methods: unknown {unknown}; expected some of {list(METHODS)}")
    if unknown := sorted(set(config.search_variants) - set(SEARCH_VARIANTS)):
        parser.error(f"--search-variants: unknown {unknown}; expected some of {list(SEARCH_VARIANTS)}")
    quiet_libraries()
    config = dataclasses.replace(config, recovery_precision=resolved_recovery_precision(config))
    default_folder = f"{config.study}-{config.recovery_precision}"
    folder = Path(args.folder or Path(".autotune") / "benchmarks" / default_folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    started = time.time()
    bench = Benchmark(config, folder)
    bench.run_methods()
    summaries = {}
    for hardware in bench.spec.targets:
        summaries[hardware.name] = summarise(bench, hardware, bench.measure_target(hardware))
    results = {
        "command": " ".join(["python -m benchmarks.run", *(argv if argv is not None else sys.argv[1:])]),
        "config": dataclasses.asdict(config),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seconds": round(time.time() - started),
        "machine": machine(),
        "threads": {h.name: h.threads for h in bench.spec.targets},
        "versions": tool_versions(),
        "sampler": bench.spec.sampler,
        "cold_sampler": sampler_name(bench.spec.sampler, warm=False),
        "phases": bench.phases,
        "evaluated": bench.evaluated,
        "targets": summaries,
    }
    main_page = ROOT / "docs" / "benchmarks.md"
    if args.out:
        out = Path(args.out)
        write_results(results, out)
    elif config.study == Config.study:
        out = main_page
        write_results(results, out, companions_of(main_page))
    else:  # another study: its figures become a section of the main page
        out = main_page.with_name(f"{main_page.stem}-{config.study}.json")
        write_results(results, out, page=False)
        if main_page.with_suffix(".json").exists():
            render(main_page)
            console.print(f"rewrote {main_page} with a section for {config.study}")
    console.print(f"wrote {out} ({results['seconds']} s)")


if __name__ == "__main__":
    main()
