"""Speed measured robustly on a shared machine: every artifact once per round, in a fresh random order each round,
so machine noise hits all methods alike and ratios are taken within a round."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from optuna.artifacts import FileSystemArtifactStore, download_artifact

from autotune.deploy import model_file_rank
from autotune.plan import Plan
from autotune.targets.base import Artifact


def fetch_artifact(store: FileSystemArtifactStore, trial, target_name: str, io, folder: Path) -> Artifact:
    """A measured trial's model files, downloaded from the Optuna artifact store as they were built."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    ids = trial.user_attrs["artifact_ids"]
    for filename, artifact_id in sorted(ids.items(), key=lambda item: model_file_rank(item[0])):
        if filename in ("plan.json", "recipe.json"):
            continue
        path = folder / filename
        if not path.exists():
            download_artifact(artifact_store=store, artifact_id=artifact_id, file_path=str(path))
        files.append(path)
    plan = Plan.from_dict(trial.user_attrs["plan"])
    return Artifact(target_name, folder, tuple(files), plan, trial.user_attrs.get("realised_precision", {}), {}, io)


def interleaved_rounds(target, artifacts: dict[str, Artifact], example, rounds: int, seed: int = 0, progress=None) -> dict:
    """Per artifact key, the lists (one value per round) of batch-1 p50 ms, throughput-batch p50 ms and samples/s."""
    rng = np.random.default_rng(seed)
    keys = list(artifacts)
    found = {key: {"latency_p50_ms": [], "batch_latency_ms": [], "throughput_per_s": []} for key in keys}
    for _ in range(rounds):
        for index in rng.permutation(len(keys)):
            key = keys[index]
            measurement = target.measure(artifacts[key], example)
            found[key]["latency_p50_ms"].append(measurement.latency_p50_ms)
            found[key]["batch_latency_ms"].append(measurement.batch_latency_ms)
            found[key]["throughput_per_s"].append(measurement.throughput_per_s)
            if progress is not None:
                progress()
    return found


def quicker(target, min_seconds: float, min_repeats: int):
    """The same target timed with a shorter protocol (for --quick)."""
    spec = target.spec
    measure = dataclasses.replace(spec.measure, min_seconds=min_seconds, min_repeats=min_repeats, warmup=min(spec.measure.warmup, 5))
    return type(target)(dataclasses.replace(spec, measure=measure))
