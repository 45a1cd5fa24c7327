"""Deployment records: promote a measured candidate, roll back, export what is deployed, list proven recipes.

A deployed version is a measured trial of some cycle: its plan, metrics, artifact ids (in the Optuna artifact
store), who promoted it, when, why, and how it differs from the version it replaced. The records live in the
lineage's record study (see lineage.py); every change is also an entry in the lineage's history.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore, download_artifact
from optuna.trial import TrialState

from autotune.errors import AutotuneError
from autotune.lineage import Lineage, lineages, now, whoami
from autotune.plan import Plan
from autotune.studies import measured_study_name

COMPARED = ("drop_pts", "latency_p50_ms", "batch_latency_p50_ms", "latency_p95_ms", "size_mb", "cost_per_million", "ece")


def trial_metrics(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict:
    """A measured trial's metrics by name, whichever latency its study minimised."""
    metric_name = study.user_attrs.get("metric_name", "accuracy")
    drop, latency, size = trial.values
    objective = (study.metric_names or ["", "latency_p50_ms"])[1]
    measurement = trial.user_attrs.get("measurement", {})
    return {
        metric_name: trial.user_attrs.get(metric_name),
        "drop_pts": drop,
        "latency_p50_ms": latency if objective == "latency_p50_ms" else trial.user_attrs.get("latency_p50_ms"),
        "batch_latency_p50_ms": latency if objective == "batch_latency_p50_ms" else measurement.get("batch_latency_ms"),
        "latency_p95_ms": trial.user_attrs.get("latency_p95_ms"),
        "size_mb": size,
        "throughput_per_s": trial.user_attrs.get("throughput_per_s"),
        "cost_per_million": trial.user_attrs.get("cost_per_million"),
        "ece": trial.user_attrs.get("ece"),
    }


def deltas(new: dict, old: dict | None) -> dict:
    if old is None:
        return {}
    return {
        k: new[k] - old[k]
        for k in COMPARED
        if isinstance(new.get(k), (int, float)) and isinstance(old.get(k), (int, float))
    }


def find_trial(storage, lineage: Lineage, target: str, trial_ref: str, cycle: int | None):
    """`12` (trial 12 of the latest cycle, or of `cycle`) or `c2:12`."""
    if ":" in trial_ref:
        cycle_part, _, trial_ref = trial_ref.partition(":")
        if not cycle_part.lstrip("c").isdigit():
            raise AutotuneError(f"trial {cycle_part}:{trial_ref!r}: expected a trial number or cN:number (e.g. c2:7)")
        cycle = int(cycle_part.lstrip("c"))
    if cycle is None:
        latest = lineage.latest_cycle()
        if latest is None:
            raise AutotuneError(f"lineage {lineage.name!r} has no cycle yet; run `autotune cycle` first")
        cycle = latest["cycle"]
    record = lineage.cycle(cycle)
    name = measured_study_name(f"{lineage.name}/c{cycle}", target)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise AutotuneError(f"cycle c{cycle} of {lineage.name!r} has no measured study for target {target!r}") from None
    try:
        number = int(trial_ref)
        trial = study.trials[number]
    except (ValueError, IndexError):
        raise AutotuneError(f"{name}: no trial {trial_ref!r} (it has {len(study.trials)}; see `autotune front`)") from None
    return record, study, trial


def promote(
    storage, lineage_name: str, target: str, trial_ref: str, reason: str, cycle: int | None = None, auto: bool = False
) -> dict:
    """Record a measured trial as the deployed version for `target`; a trial failing any gate is refused."""
    lineage = Lineage(storage, lineage_name, create=False)
    cycle_record, study, trial = find_trial(storage, lineage, target, trial_ref, cycle)
    where = f"{study.study_name} trial {trial.number}"
    if trial.state != TrialState.COMPLETE:
        raise AutotuneError(f"{where} is {trial.state.name}, not a measured candidate")
    if trial.user_attrs.get("gate_failures"):
        raise AutotuneError(f"{where} fails its gates ({'; '.join(trial.user_attrs['gate_failures'])}): not promoted")
    if trial.user_attrs.get("role") == "deployed":
        raise AutotuneError(f"{where} is the deployed version itself, measured for comparison")
    previous = lineage.current(target)
    # Versions only grow: the history and the stack both count (a crash between writing them cannot reuse one).
    versions = [e["record"]["version"] for e in lineage.history() if e["event"] == "promote" and e["target"] == target]
    versions += [r["version"] for r in lineage.deployed(target)]
    artifact_ids = trial.user_attrs.get("artifact_ids") or _artifact_ids(storage, trial)
    if not any(not name.endswith(".json") for name in artifact_ids):
        raise AutotuneError(f"{where} has no built model in the artifact store: nothing to deploy")
    metrics = trial_metrics(study, trial)
    record = {
        "version": max(versions, default=0) + 1,
        "target": target,
        "cycle": cycle_record["cycle"],
        "model_sha256": cycle_record.get("identity", {}).get("model"),
        "study": study.study_name,
        "trial": trial.number,
        "role": trial.user_attrs.get("role"),
        "plan": trial.user_attrs["plan"],
        "plan_summary": trial.user_attrs.get("plan_summary", ""),
        "plan_digest": trial.user_attrs.get("plan_digest"),
        "metrics": metrics,
        "artifact_ids": artifact_ids,
        "realised_precision": trial.user_attrs.get("realised_precision", {}),
        "channels": trial.user_attrs.get("channels", {}),
        "temperature": trial.user_attrs.get("temperature"),
        "who": whoami(),
        "when": now(),
        "why": reason,
        "auto": auto,
        "replaces": None if previous is None else previous["version"],
        "deltas": deltas(metrics, None if previous is None else previous["metrics"]),
    }
    lineage.push(target, record)
    lineage.log("promote", target=target, version=record["version"], why=reason, record=record)
    return record


def rollback(storage, lineage_name: str, target: str, reason: str) -> tuple[dict, dict]:
    lineage = Lineage(storage, lineage_name, create=False)
    removed, restored = lineage.pop(target)
    lineage.log(
        "rollback",
        target=target,
        version=restored["version"],
        from_version=removed["version"],
        why=reason,
        deltas=deltas(restored["metrics"], removed["metrics"]),
    )
    return removed, restored


def export(storage, artifact_dir: Path, lineage_name: str, target: str, folder: Path) -> dict:
    """Write the deployed artifact, its recipe (plan, tool versions, seeds, metrics) and its deployment record."""
    lineage = Lineage(storage, lineage_name, create=False)
    record = lineage.current(target)
    if record is None:
        raise AutotuneError(f"lineage {lineage_name!r}: nothing is deployed for target {target!r}")
    folder.mkdir(parents=True, exist_ok=True)
    store = FileSystemArtifactStore(str(artifact_dir))
    for filename, artifact_id in record["artifact_ids"].items():
        try:
            download_artifact(artifact_store=store, artifact_id=artifact_id, file_path=str(folder / filename))
        except Exception as exc:
            raise AutotuneError(f"artifact {filename} ({artifact_id}) is missing from {artifact_dir}: {exc}") from exc
    (folder / "deployment.json").write_text(json.dumps(record, indent=2, default=str))
    return record


def _artifact_ids(storage, trial) -> dict[str, str]:
    """Artifacts of a trial recorded before their ids were kept on it."""
    from optuna.artifacts import get_all_artifact_meta

    found = {meta.filename: meta.artifact_id for meta in get_all_artifact_meta(trial, storage=storage)}
    return dict(sorted(found.items(), key=lambda item: model_file_rank(item[0])))


def model_file_rank(filename: str) -> int:
    """The runtime's model file first (targets read files[0]): .onnx, .xml, then weights, then the rest."""
    for rank, suffix in enumerate((".onnx", ".xml", ".pt2", ".pt", ".bin")):
        if filename.endswith(suffix):
            return rank
    return 9


def recipes(storage) -> list[dict]:
    """Every promoted plan across lineages (newest first), with whether it is deployed now."""
    found = []
    for name in lineages(storage):
        lineage = Lineage(storage, name)
        current = {t: (lineage.current(t) or {}).get("version") for t in lineage.targets()}
        for event in lineage.history():
            if event["event"] == "promote":
                record = event["record"]
                found.append(
                    record
                    | {
                        "recipe": f"{name}@{record['target']}#v{record['version']}",
                        "deployed": current.get(record["target"]) == record["version"],
                        "plan_counts": Plan.from_dict(record["plan"]).counts(),
                    }
                )
    return sorted(found, key=lambda r: r["when"], reverse=True)
