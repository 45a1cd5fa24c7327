"""The proxies ranked over every plan a benchmark run evaluated, the reference front's random plans included.

Over the plans the methods chose, the true drops span about a point, twice one drop's measurement noise on 10k images,
so the measurement itself caps the accuracy Spearman near 0.9 (`split_half_ceiling`). Plans off the front might lose
more and lift that cap; this check says whether they do (on fashion-cnn they did not: after the full recovery the
random plans' drops stayed within the front's range, 2026-12-05). Each plan's drop comes from its artifact's outputs on
the validation set (against FP32's, so the interval resamples the images); its latency is the throughput batch's p50
from its own full evaluation (timed when it was evaluated, not in the interleaved rounds).

`python -m benchmarks.run` computes it for its page; `python -m benchmarks.fidelity_spread` adds it to a stored run
(docs/benchmarks.json by default, whose benchmark storage must still hold the plans) and renders the page again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import TrialState

from autotune.context import prepare
from autotune.evaluate import trial_key
from autotune.plan import Plan
from autotune.scoring import ProxyScorer
from autotune.studies import measured_study_name
from autotune.targets import make_target
from benchmarks.metrics import resampled_spearman, spearman_interval, split_half_ceiling
from benchmarks.page import render
from benchmarks.pages import quiet_libraries
from benchmarks.timing import fetch_artifact

ROOT = Path(__file__).resolve().parents[1]


def scores_once(scorer: ProxyScorer, steps: int) -> Callable[[Plan], dict[str, float]]:
    """The proxies' scores of a plan, computed on its first request only: one call scores every target's latency
    proxy, and each target's figures ask again for the same plans."""
    found: dict[str, dict[str, float]] = {}

    def score(plan: Plan) -> dict[str, float]:
        key = plan.digest()
        if key not in found:
            found[key] = scorer.score(plan, steps)
        return found[key]

    return score


def every_plan_fidelity(
    context, score: Callable[[Plan], dict[str, float]], hardware, store: FileSystemArtifactStore, trials: dict, keys: list[str],
    fp32_key: str, folder: Path, draws: int = 500, outputs: dict[str, np.ndarray] | None = None,
) -> dict:
    """Spearman of the accuracy proxy against every plan's measured drop (plans and validation images resampled), the
    measurement's split-half ceiling over the same plans, and the latency proxy against each plan's own evaluation
    timing. `score`: a plan's proxy scores (`scores_once`). `outputs`: validation outputs already computed, by plan
    key; the others are predicted here."""
    workload, target = context.workload, make_target(hardware)
    labels = workload.validation.labels_numpy()
    outputs = dict(outputs or {})
    keys = [k for k in keys if k in trials and k != fp32_key]
    for key in [fp32_key, *keys]:
        if key not in outputs:
            artifact = fetch_artifact(store, trials[key], hardware.name, workload.io, folder / key)
            outputs[key] = target.predict(artifact, workload.validation.inputs)
    reference = outputs[fp32_key]

    def drop_of(index: int, picked: np.ndarray) -> float:
        found = outputs[keys[index]]
        return workload.quality_drop(workload.metric(reference[picked], labels[picked]), workload.metric(found[picked], labels[picked]))

    scores = [score(Plan.from_dict(trials[k].user_attrs["plan"])) for k in keys]
    objective = context.spec.proxies.objectives[0]
    images = len(labels)
    everything = np.arange(images)
    drops = [drop_of(i, everything) for i in range(len(keys))]
    found = {
        "plans": len(keys),
        "drop_range_pts": [float(min(drops)), float(max(drops))],
        "accuracy": spearman_interval(np.array([s[objective] for s in scores]), drop_of, len(keys), images, draws),
        "accuracy_ceiling": split_half_ceiling(drop_of, len(keys), images, max(draws // 5, 10)),
    }
    latency_proxy = f"latency_measured@{hardware.name}"
    timed = [i for i, k in enumerate(keys) if trials[k].user_attrs.get("batch_latency_p50_ms") and latency_proxy in scores[i]]
    if len(timed) >= 3:
        found["latency"] = resampled_spearman(
            [scores[i][latency_proxy] for i in timed], [trials[keys[i]].user_attrs["batch_latency_p50_ms"] for i in timed]
        )
    return found


def add_to_results(results_path: Path, folder: Path | None = None, draws: int | None = None) -> dict:
    """Every target's `fidelity.every_evaluated` for a stored run, from the benchmark storage it ran on."""
    from benchmarks.run import Config, bench_spec  # run.py computes the same figures with this module

    results = json.loads(results_path.read_text())
    stored = results["config"]
    folder = (folder or ROOT / ".autotune" / "benchmarks" / f"{stored['study']}-{stored['recovery_precision']}").resolve()
    if not (folder / "bench.db").exists():
        raise SystemExit(f"{folder / 'bench.db'}: no benchmark storage there (--folder: the run's storage folder)")
    fields = {f.name for f in dataclasses.fields(Config)}
    config = Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in stored.items() if k in fields})
    spec = bench_spec(dataclasses.replace(config, targets=tuple(results["targets"])), folder)
    context = prepare(spec)
    score = scores_once(ProxyScorer(context), spec.recovery.search_steps)
    store = FileSystemArtifactStore(str(folder / "artifacts"))
    evaluated = sorted({k for runs in results["evaluated"].values() for keys in runs.values() for k in keys})
    for hardware in spec.targets:
        study = optuna.load_study(study_name=measured_study_name(spec.name, hardware.name), storage=spec.storage)
        trials = {trial_key(t): t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
        summary = results["targets"][hardware.name]
        keys = [k for k in evaluated if k not in summary["roles"].values()]
        found = every_plan_fidelity(
            context, score, hardware, store, trials, keys, summary["roles"]["fp32"], folder / "timing" / hardware.name,
            draws or config.bootstrap_draws,
        )
        summary["fidelity"]["every_evaluated"] = found
        print(f"{hardware.name}: {found['plans']} plans, accuracy Spearman {found['accuracy']['spearman']:+.3f}", flush=True)
    results_path.write_text(json.dumps(results, indent=1, default=str))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(ROOT / "docs" / "benchmarks.json"), help="a stored run's JSON")
    parser.add_argument("--folder", default=None, help="the run's storage folder (default .autotune/benchmarks/<study>-<precision>)")
    parser.add_argument("--draws", type=int, default=None, help="bootstrap draws (default the run's)")
    args = parser.parse_args()
    quiet_libraries()
    results_path = Path(args.results)
    add_to_results(results_path, Path(args.folder) if args.folder else None, args.draws)
    if results_path.resolve() == (ROOT / "docs" / "benchmarks.json").resolve():
        render(ROOT / "docs" / "benchmarks.md")


if __name__ == "__main__":
    main()
