"""Full evaluation: build each candidate for each target, measure it, record it in the measured study.

One measured study per target (`<study>/full/<target>`), objectives = measured accuracy drop vs
FP32 (points), p50 latency at batch 1 (ms), size on disk (MB). Every trial carries its plan as
parameters, the measurements as user attributes, and the built model, plan and recipe as
Optuna artifacts. Plans already evaluated are skipped, so a resumed run never duplicates.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore, download_artifact, upload_artifact
from optuna.trial import TrialState
from scipy.stats import spearmanr

from autotune.context import StudyContext
from autotune.divergence import divergence
from autotune.errors import AutotuneError
from autotune.gates import gate_failures, only_calibration
from autotune.latency_history import observations_path, record_observation
from autotune.latency_table import architecture_key
from autotune.machine import package_versions
from autotune.paths import workspace
from autotune.progress import console, progress_bar
from autotune.promotion import Candidate
from autotune.quality import class_accuracy, expected_calibration_error, fit_temperature
from autotune.search_space import PARAMS_ENCODING, measured_distributions, measured_params
from autotune.spec import HardwareSpec
from autotune.studies import check_params_encoding, fail_interrupted_trials, measured_study_name, open_study
from autotune.targets import Target, make_target


def measured_metrics(metric_name: str, hardware: HardwareSpec) -> list[str]:
    """Objectives of a measured study: the metric's drop vs FP32 (points, whatever its direction), the latency the
    hardware file chooses (p50 at its latency or its throughput batch), size."""
    return [f"{metric_name}_drop_pts", hardware.latency_metric, "size_mb"]


def tool_versions() -> dict[str, str]:
    """Installed versions of autotune and the libraries a result depends on (recorded with every recipe and benchmark)."""
    return package_versions(("autotune", "torch", "openvino", "nncf", "onnxruntime", "torchao", "torch-pruning", "optuna", "moocore"))


class Evaluator:
    def __init__(self, context: StudyContext, storage, artifact_dir: Path) -> None:
        self.context = context
        self.storage = storage
        self.artifact_store = FileSystemArtifactStore(str(artifact_dir))
        artifact_dir.mkdir(parents=True, exist_ok=True)
        self.layer_names = list(context.layer_kinds)
        self._fp32_outputs = None
        self.replay = None  # a replay.ReplayComparison: each build against FP32 and the deployed version
        self.identity = context.identity()

    def run(self, candidates: list[Candidate]) -> dict[str, optuna.Study]:
        studies = {}
        for hardware in self.context.spec.targets:
            target = make_target(hardware)
            ok, why = target.available()
            if not ok:
                console.print(f"[yellow]skipping target {hardware.name!r}: {why}")
                continue
            studies[hardware.name] = self.run_target(target, hardware, candidates)
        return studies

    def run_target(self, target: Target, hardware: HardwareSpec, candidates: list[Candidate]) -> optuna.Study:
        spec = self.context.spec
        metrics = measured_metrics(self.context.workload.metric_name, hardware)
        study = open_study(self.storage, measured_study_name(spec.name, hardware.name), metrics)
        check_params_encoding(study, PARAMS_ENCODING)
        study.set_user_attr("kind", "measured")
        study.set_user_attr("metric_name", self.context.workload.metric_name)
        study.set_user_attr("proxy_study", spec.proxy_study)
        study.set_user_attr("target", hardware.name)
        study.set_user_attr("throughput_batch", hardware.throughput_batch)
        study.set_user_attr("threads", hardware.threads)
        study.set_user_attr("instance", hardware.instance)
        study.set_user_attr("price_per_hour", hardware.price_per_hour)
        study.set_user_attr("latency_slo_p95_ms", hardware.latency_slo_p95_ms)
        study.set_user_attr("identity", self.identity)
        study.set_user_attr("runtime_float_default", target.runtime_float_default())
        fail_interrupted_trials(study)
        done = {trial_key(t) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
        todo = [
            c
            for c in candidates
            if c.key not in done and (c.deployment is None or c.deployment["target"] == hardware.name)
        ]
        if self.replay is not None and hardware.name not in self.replay.deployed:
            measured_before = [c for c in candidates if c.deployment and c.deployment["target"] == hardware.name and c not in todo]
            for candidate in measured_before[:1]:  # a resumed cycle: the deployed answers candidates are compared with
                self.replay_deployed(target, candidate)
        with progress_bar() as progress:
            task = progress.add_task(f"full evaluation on {hardware.name}", total=len(todo))
            for candidate in todo:
                progress.update(
                    task,
                    description=f"full evaluation on {hardware.name}: {candidate.role} {candidate.plan.digest()[:8]}",
                )
                try:
                    self.evaluate_one(study, target, candidate)
                except AutotuneError as exc:
                    # A reference that cannot be built stops the run; a deployed version that cannot be measured
                    # (its artifact gone, a runtime that cannot load it) is the cycle's regression to report.
                    if candidate.role not in ("candidate", "deployed"):
                        raise AutotuneError(f"{candidate.role} reference on target {hardware.name!r}: {exc}") from exc
                    console.print(
                        f"[yellow]{hardware.name}: {candidate.role} {candidate.plan.digest()[:8]} failed: {exc}"
                    )
                progress.update(task, advance=1)
        self.record_fidelity(study, hardware.name, candidates)
        return study

    def score(self, target: Target, outputs: np.ndarray) -> float:
        workload = self.context.workload
        if not np.all(np.isfinite(outputs)):
            raise AutotuneError(f"target {target.name!r}: the built model produced non-finite outputs")
        return float(workload.metric(outputs, workload.validation.labels_numpy()))

    def fp32_divergence(self, outputs: np.ndarray) -> float:
        """How far the built model's validation outputs are from the torch FP32 model's (the proxy's measure)."""
        if self._fp32_outputs is None:
            workload = self.context.workload
            self._fp32_outputs = workload.io.run_batched(self.context.recovery.teacher, workload.validation.inputs)
        kind = self.context.workload.io.output_kind
        return float(divergence(kind, self._fp32_outputs, torch.from_numpy(np.asarray(outputs))).item())

    def fp32_accuracy(self, study: optuna.Study) -> float:
        value = study.user_attrs.get("fp32_accuracy")
        if value is None:
            raise AutotuneError(f"study {study.study_name!r}: the FP32 reference has not been measured")
        return value

    def observations_path(self, hardware: HardwareSpec) -> Path:
        """Where this target's measured plans of this architecture are kept for later latency proxies to learn from."""
        recovery = self.context.recovery
        return observations_path(hardware, architecture_key(recovery.pruner.teacher), recovery.config.channel_multiple)

    def record_latency(self, hardware: HardwareSpec, plan, batch_ms: float, origin: str) -> None:
        """Keep the measured latency for later latency proxies; a failure costs the record only, never the trial."""
        try:
            record_observation(self.observations_path(hardware), plan, batch_ms, origin)
        except Exception as exc:
            console.print(f"[yellow]latency history: {origin} not recorded: {type(exc).__name__}: {exc}")

    def evaluate_one(self, study: optuna.Study, target: Target, candidate: Candidate) -> None:
        spec, workload = self.context.spec, self.context.workload
        plan = candidate.plan
        study.enqueue_trial(measured_params(plan, self.layer_names))
        trial = study.ask(fixed_distributions=measured_distributions(self.layer_names))
        trial.set_user_attr("role", candidate.role)
        trial.set_user_attr("key", candidate.key)
        trial.set_user_attr("plan", plan.to_dict())
        trial.set_user_attr("plan_digest", plan.digest())
        trial.set_user_attr("plan_summary", plan.describe())
        if candidate.proxy_trial is not None:
            trial.set_user_attr("proxy_trial", candidate.proxy_trial)
        for stage, scores in (("stage1", candidate.stage1), ("stage2", candidate.stage2)):
            for name, value in scores.items():
                trial.set_user_attr(f"{stage}.{name}", value)
        if candidate.deployment is not None:
            trial.set_user_attr("deployed_version", candidate.deployment["version"])
        try:
            timings = {}
            with build_folder() as folder:
                started = time.perf_counter()
                if candidate.deployment is not None:
                    artifact = self.deployed_artifact(candidate, target, Path(folder))
                    timings["download_s"] = time.perf_counter() - started
                else:
                    model = self.context.recovery.recovered(plan, spec.recovery.full_steps, spec.recovery.continued_steps)
                    timings["recovery_s"] = time.perf_counter() - started
                    started = time.perf_counter()
                    artifact = target.build(model, plan, self.context.build_context(), Path(folder))
                    timings["build_s"] = time.perf_counter() - started
                started = time.perf_counter()
                outputs = target.predict(artifact, workload.validation.inputs)
                accuracy = self.score(target, outputs)
                trial.set_user_attr("fp32_divergence", self.fp32_divergence(outputs))
                for diagnostic in workload.diagnostics:
                    predicted = target.predict(artifact, diagnostic.data.inputs)
                    trial.set_user_attr(
                        f"diagnostic.{diagnostic.name}", float(diagnostic.score(predicted, diagnostic.data.labels_numpy()))
                    )
                timings["evaluate_s"] = time.perf_counter() - started
                started = time.perf_counter()
                measurement = target.measure(artifact, workload.example_input)
                timings["measure_s"] = time.perf_counter() - started
                if candidate.deployment is None:  # a deployed artifact may come from another version of the tools
                    self.record_latency(target.spec, plan, measurement.batch_latency_ms, f"{study.study_name}#{trial.number}")
                if candidate.role == "fp32":
                    study.set_user_attr("fp32_accuracy", accuracy)
                drop = workload.quality_drop(self.fp32_accuracy(study), accuracy)
                cost = target.spec.cost_per_million(measurement.throughput_per_s)
                measured = {"drop_pts": drop, "latency_p95_ms": measurement.latency_p95_ms, "cost_per_million": cost}
                temperature = self.check_gates(study, trial, target, candidate, artifact, outputs, measured)
                recipe = self.recipe(target, candidate, artifact, accuracy, measurement)
                if temperature is not None:
                    recipe["temperature"] = temperature  # divide the logits by it to serve calibrated scores
                if self.replay is not None:
                    started = time.perf_counter()
                    trial.set_user_attr("replay", self.replay.compare(target, artifact, candidate))
                    timings["replay_s"] = time.perf_counter() - started
                if candidate.deployment is None:  # a deployed artifact is already in the store
                    (Path(folder) / "plan.json").write_text(json.dumps(plan.to_dict(), indent=2))
                    (Path(folder) / "recipe.json").write_text(json.dumps(recipe, indent=2, default=str))
                    ids = {}
                    for path in (*artifact.files, Path(folder) / "plan.json", Path(folder) / "recipe.json"):
                        ids[path.name] = upload_artifact(
                            artifact_store=self.artifact_store, file_path=str(path), study_or_trial=trial
                        )
                    trial.set_user_attr("artifact_ids", ids)
                else:
                    trial.set_user_attr("artifact_ids", candidate.deployment["artifact_ids"])
            trial.set_user_attr(workload.metric_name, accuracy)
            trial.set_user_attr("measurement", measurement.to_dict())
            trial.set_user_attr("throughput_per_s", measurement.throughput_per_s)
            trial.set_user_attr("cost_per_million", cost)
            trial.set_user_attr("latency_p50_ms", measurement.latency_p50_ms)
            trial.set_user_attr("latency_p95_ms", measurement.latency_p95_ms)
            trial.set_user_attr("batch_latency_p50_ms", measurement.batch_latency_ms)
            trial.set_user_attr("realised_precision", artifact.realised_precision)
            trial.set_user_attr("channels", artifact.channels)
            trial.set_user_attr("timings", timings)
            latency = {"latency_p50_ms": measurement.latency_p50_ms, "batch_latency_p50_ms": measurement.batch_latency_ms}
            study.tell(trial, [drop, latency[target.spec.latency_metric], measurement.size_mb])
        except Exception as exc:
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}")
            study.tell(trial, state=TrialState.FAIL)
            if isinstance(exc, AutotuneError):
                raise
            raise AutotuneError(f"{type(exc).__name__}: {exc}") from exc

    def replay_deployed(self, target: Target, candidate: Candidate) -> None:
        with build_folder() as folder:
            try:
                artifact = self.deployed_artifact(candidate, target, Path(folder))
                self.replay.remember_deployed(target, artifact)
            except AutotuneError as exc:
                console.print(f"[yellow]{target.name}: the deployed version cannot be replayed: {exc}")

    def deployed_artifact(self, candidate: Candidate, target: Target, folder: Path):
        """The deployed version's files, fetched from the artifact store as they were built (not rebuilt)."""
        from autotune.targets.base import Artifact

        record = candidate.deployment
        from autotune.deploy import model_file_rank

        files = []
        for filename, artifact_id in sorted(record["artifact_ids"].items(), key=lambda item: model_file_rank(item[0])):
            if filename in ("plan.json", "recipe.json"):
                continue
            path = folder / filename
            try:
                download_artifact(artifact_store=self.artifact_store, artifact_id=artifact_id, file_path=str(path))
            except Exception as exc:
                raise AutotuneError(
                    f"deployed v{record['version']} on {target.name!r}: artifact {filename} ({artifact_id}) cannot be "
                    f"read from the artifact store: {exc}"
                ) from exc
            files.append(path)
        return Artifact(
            target.name,
            folder,
            tuple(files),
            candidate.plan,
            record.get("realised_precision", {}),
            record.get("channels", {}),
            self.context.workload.io,
        )

    def check_gates(self, study, trial, target: Target, candidate: Candidate, artifact, outputs, measured) -> float | None:
        """Record per-class accuracy and ECE (classifiers) and the gates the candidate fails; a candidate failing
        only on calibration gets a temperature fitted on labelled recovery data, kept where it lowers the validation
        ECE, then is checked again.

        Returns the temperature kept, if any.
        """
        gates = self.context.spec.gates
        labels = self.context.workload.validation.labels_numpy()
        temperature = None
        if self.context.workload.is_classifier:
            # A deployed artifact is served with the temperature stored beside it.
            served = (candidate.deployment or {}).get("temperature") or 1.0
            per_class, ece = class_accuracy(outputs, labels), expected_calibration_error(outputs, labels, served)
            trial.set_user_attr("class_accuracy", per_class)
            trial.set_user_attr("ece", ece)
            if candidate.role == "fp32":
                study.set_user_attr("fp32_class_accuracy", per_class)
                study.set_user_attr("fp32_ece", ece)
            reference = study.user_attrs.get("fp32_class_accuracy", {})
            measured["class_drops"] = {c: 100 * (acc - per_class.get(c, 0.0)) for c, acc in reference.items()}
            measured["ece_increase"] = ece - study.user_attrs.get("fp32_ece", ece)
        slo = target.spec.latency_slo_p95_ms
        failures = gate_failures(gates, measured, slo)
        held_out = self.temperature_data() if candidate.role == "candidate" and gates.temperature_scaling else None
        if held_out is not None and held_out.labels is not None and len(held_out) and only_calibration(failures):
            fitted = fit_temperature(target.predict(artifact, held_out.inputs), held_out.labels_numpy())
            scaled = expected_calibration_error(outputs, labels, fitted)
            trial.set_user_attr("temperature_tried", fitted)
            # Fitted on data the model may have been trained on, a temperature can make validation calibration
            # worse (sharpening an already calibrated model): it is kept only where it helps.
            if scaled < trial.user_attrs["ece"]:
                temperature = fitted
                trial.set_user_attr("temperature", temperature)
                trial.set_user_attr("ece_before_temperature", trial.user_attrs["ece"])
                trial.set_user_attr("ece", scaled)
                measured["ece_increase"] = scaled - study.user_attrs["fp32_ece"]
                failures = gate_failures(gates, measured, slo)
        if measured.get("class_drops"):
            worst = max(measured["class_drops"], key=measured["class_drops"].get)
            trial.set_user_attr("worst_class", {"class": worst, "drop_pts": measured["class_drops"][worst]})
        trial.set_user_attr("gate_failures", failures)
        return temperature

    def temperature_data(self, samples: int = 2000):
        """Labelled data the model was not validated on: the last recovery samples."""
        recovery = self.context.workload.recovery
        return recovery.take(slice(max(0, len(recovery) - samples), len(recovery)))

    def recipe(self, target: Target, candidate: Candidate, artifact, accuracy: float, measurement) -> dict:
        """Everything needed to rebuild this artifact exactly and to know what it is."""
        spec, workload = self.context.spec, self.context.workload
        return {
            "study": spec.name,
            "role": candidate.role,
            "plan": candidate.plan.to_dict(),
            "workload": {"name": workload.name, "reference": spec.workload, "fingerprint": workload.fingerprint},
            "target": {
                "name": target.name,
                "backend": target.backend,
                "file": str(target.spec.path),
                "threads": target.spec.threads,
                "options": target.resolved_options(),
            },
            "recovery": {
                "steps": spec.recovery.full_steps,
                "continues": spec.recovery.continued_steps,  # its first steps: the re-score's recovery, continued
                **json.loads(self.context.recovery.config.to_json()),
            },
            "realised_precision": artifact.realised_precision,
            "channels": artifact.channels,
            "accuracy": accuracy,
            "measurement": measurement.to_dict(),
            "versions": tool_versions(),
            "platform": platform.platform(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

    def record_fidelity(self, study: optuna.Study, target: str, candidates: list[Candidate]) -> None:
        """Spearman of the proxies against what was measured, over the evaluated plans.

        Accuracy: the first objective (divergence) at each stage vs the measured accuracy drop.
        Latency: the target's latency proxy vs the measured latency of a throughput batch.
        """
        objective = self.context.spec.proxies.objectives[0]
        trials = {trial_key(t): t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
        # Plans measured without proxy scores (a benchmark's random plans) have nothing to correlate.
        evaluated = [c for c in candidates if c.key in trials and c.deployment is None and c.stage2]
        fidelity: dict = {"objective": objective, "points": len(evaluated)}
        drops = [trials[c.key].values[0] for c in evaluated]
        fidelity["stage1_vs_measured"] = _spearman([c.stage1.get(objective) for c in evaluated], drops)
        fidelity["stage2_vs_measured"] = _spearman([c.stage2.get(objective) for c in evaluated], drops)
        # One estimate for every plan: candidates scored by different proxy recipes (a benchmark's) share the study.
        latency_proxy = next(
            (
                name
                for name in (f"latency_measured@{target}", "latency_macs")
                if evaluated and all(name in c.stage2 for c in evaluated)
            ),
            None,
        )
        if latency_proxy:
            measured = [trials[c.key].user_attrs["measurement"]["batch_latency_ms"] for c in evaluated]
            fidelity["latency_proxy"] = latency_proxy
            fidelity["latency_vs_measured"] = _spearman([c.stage2[latency_proxy] for c in evaluated], measured)
        study.set_user_attr("fidelity", fidelity)


def build_folder() -> tempfile.TemporaryDirectory:
    """A scratch folder for one build, under the workspace (a large model may not fit in /tmp)."""
    builds = workspace() / "builds"
    builds.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(dir=builds)


def trial_key(trial) -> str:
    """A measured trial's Candidate.key (trials recorded before keys existed carry only their plan digest)."""
    return trial.user_attrs.get("key") or trial.user_attrs.get("plan_digest", "")


def _spearman(a, b) -> float | None:
    """Rank correlation, or None with fewer than 3 points or a missing or constant column."""
    if len(a) < 3 or any(v is None for v in (*a, *b)):
        return None
    value = spearmanr(np.asarray(a, dtype=float), np.asarray(b, dtype=float)).statistic
    return None if np.isnan(value) else float(value)


def stage_agreement(pool: list[Candidate], objective: str) -> float | None:
    """Spearman between stage-1 and stage-2 scores over the re-scored pool."""
    rescored = [c for c in pool if c.stage2]
    return _spearman([c.stage1[objective] for c in rescored], [c.stage2[objective] for c in rescored])
