"""Warm start vs cold start after a real model revision: trials to reach 95% of the cold search's final proxy
hypervolume (docs/warm-start.md).

Cycle 1 searches the trained fashion-cnn (one proxy study). Then two real revisions: one more training epoch, and
fine-tuning on a shifted slice of the data (brightness and contrast changed). On each revision, over N seeds, arms:

- cold: the spec's search from scratch (its uniform anchors enqueued first, as in every study);
- warm: cycle 1's best proxy plans enqueued first (re-evaluated on the revision), then the search;
- control: the same number of random plans enqueued first, then the search;
- re-evaluate only: cycle 1's plans re-evaluated, no search (how far reusing the old front gets alone);
- unrelated: plans from a study of an untrained model of the same architecture (negative transfer).

Seed trials count against each arm's budget. Hypervolume: objectives (log10 output divergence, latency per target),
one reference point per revision shared by every arm and seed (the worst value of each objective over all their
trials). Run: `.venv/bin/python benchmarks/warm_start.py [--seeds 10] [--trials 48] [--samplers nsga2,tpe]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import torch
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autotune.context import prepare  # noqa: E402
from autotune.pareto import hypervolume  # noqa: E402
from autotune.paths import cache_dir  # noqa: E402
from autotune.scoring import ProxyScorer  # noqa: E402
from autotune.search import run_search  # noqa: E402
from autotune.spec import load_study_spec  # noqa: E402
from autotune.warm_start import Source, WarmStartPlan, plans_from  # noqa: E402
from autotune.workloads import load_workload  # noqa: E402
from autotune.workloads.base import with_checkpoint  # noqa: E402
from autotune.workloads.fashion_mnist import FashionResNet, revise  # noqa: E402
from benchmarks.pages import log_divergence, quiet_libraries, write_page  # noqa: E402

FRACTIONS = (0.95, 0.99)
ARMS = ("cold", "warm", "control", "reevaluate", "unrelated")


def search(context, scorer, seed: int, trials: int, sampler: str, seeds=()) -> optuna.Study:
    spec = dataclasses.replace(context.spec, seed=seed, sampler=sampler)
    storage = optuna.storages.InMemoryStorage()
    return run_search(dataclasses.replace(context, spec=spec), scorer, storage, trials, seeds=list(seeds))


def values_of(study: optuna.Study) -> np.ndarray:
    trials = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number)
    return np.array([t.values for t in trials], dtype=float)


def trajectory(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    points = np.minimum(log_divergence(values), reference)
    return np.array([hypervolume(points[: k + 1], reference) for k in range(len(points))])


def seed_plans(source_study: optuna.Study, context, count: int) -> list:
    storage = source_study._storage
    warm = WarmStartPlan()
    plans_from(storage, Source("cycle 1", source_study.study_name, "no-measured/"), context, count, warm)
    return warm.seeds


def random_plans(context, count: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    plans = []
    for _ in range(count):
        params = {name: values[rng.integers(len(values))] for name, values in context.space.choices().items()}
        plans.append((params, {"warm_start_kind": "random control"}))
    return plans


def untrained_workload(base):
    def factory():
        torch.manual_seed(123)
        return FashionResNet(32, 128).eval()

    return dataclasses.replace(base, model_factory=factory, fingerprint="untrained-fashion-resnet-seed123")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=48)
    parser.add_argument("--seed-plans", type=int, default=8)
    parser.add_argument("--samplers", default="nsga2")
    parser.add_argument("--search-batchnorm", default="scoring_batch", choices=("scoring_batch", "recalibrate"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "warm-start.md"))
    args = parser.parse_args()
    quiet_libraries()
    started = time.time()

    spec = load_study_spec("fashion-cnn")
    # One forward pass per proxy trial (BatchNorm statistics from the scoring batch): the same ranking as
    # re-calibration on fashion-cnn (docs/proxy-cost.md) at a fraction of the cost, so 10 seeds x 5 arms fit.
    spec = dataclasses.replace(spec, recovery=dataclasses.replace(spec.recovery, search_batchnorm=args.search_batchnorm))
    base = load_workload("fashion-cnn")
    folder = cache_dir("benchmark-revisions")
    revisions = {}
    for kind in ("epoch", "shifted"):
        path = folder / f"fashion-cnn-{kind}.pt"
        if not path.is_file():
            revise(base, kind, path)
        revisions[kind] = path

    base_context = prepare(spec, base)
    source = search(base_context, ProxyScorer(base_context), 1000, args.trials, "nsga2")
    unrelated_context = prepare(spec, untrained_workload(base))
    unrelated = search(unrelated_context, ProxyScorer(unrelated_context), 1001, args.trials, "nsga2")

    results: dict = {"config": vars(args), "revisions": {}}
    for kind, path in revisions.items():
        context = prepare(spec, with_checkpoint(base, path))
        scorer = ProxyScorer(context)
        warm_seeds = seed_plans(source, context, args.seed_plans)
        unrelated_seeds = seed_plans(unrelated, context, args.seed_plans)
        runs: dict = {}
        for sampler in args.samplers.split(","):
            for seed in range(args.seeds):
                print(f"[{time.time() - started:.0f}s] {kind} {sampler} seed {seed}", flush=True)
                arms = {
                    "cold": search(context, scorer, seed, args.trials, sampler),
                    "warm": search(context, scorer, seed, args.trials, sampler, warm_seeds),
                    "control": search(context, scorer, seed, args.trials, sampler, random_plans(context, len(warm_seeds), seed)),
                    "unrelated": search(context, scorer, seed, args.trials, sampler, unrelated_seeds),
                }
                if seed == 0:
                    runs[(sampler, "reevaluate", 0)] = values_of(
                        search(context, scorer, seed, len(warm_seeds) + len(spec.anchors), sampler, warm_seeds)
                    )
                for arm, study in arms.items():
                    runs[(sampler, arm, seed)] = values_of(study)
        everything = np.concatenate([log_divergence(v) for v in runs.values()])
        reference = everything.max(axis=0) + 1e-9
        summary: dict = {"seed_plans": len(warm_seeds), "unrelated_seed_plans": len(unrelated_seeds), "samplers": {}}
        for sampler in args.samplers.split(","):
            curves = {key: trajectory(v, reference) for key, v in runs.items() if key[0] == sampler}
            per_arm: dict = {(arm, f): [] for arm in ARMS for f in FRACTIONS}
            finals: dict = {arm: [] for arm in ARMS}
            for seed in range(args.seeds):
                cold_final = curves[(sampler, "cold", seed)][-1]
                for arm in ARMS:
                    curve = curves[(sampler, arm, 0 if arm == "reevaluate" else seed)]
                    for fraction in FRACTIONS:
                        reached = np.flatnonzero(curve >= fraction * cold_final)
                        per_arm[(arm, fraction)].append(int(reached[0]) + 1 if reached.size else None)
                    finals[arm].append(float(curve[-1] / cold_final))
            summary["samplers"][sampler] = {
                arm: {
                    "final_hv_vs_cold_median": float(np.median(finals[arm])),
                    **{
                        f"to_{round(fraction * 100)}": {
                            "trials": per_arm[(arm, fraction)],
                            "reached": sum(v is not None for v in per_arm[(arm, fraction)]),
                            "median": _quantile(per_arm[(arm, fraction)], 50, args.trials),
                            "q25": _quantile(per_arm[(arm, fraction)], 25, args.trials),
                            "q75": _quantile(per_arm[(arm, fraction)], 75, args.trials),
                        }
                        for fraction in FRACTIONS
                    },
                }
                for arm in ARMS
            }
        results["revisions"][kind] = summary
    results["seconds"] = round(time.time() - started)
    Path(args.out).with_suffix(".json").write_text(json.dumps(results, indent=2))
    write_page(args.out, render(results))
    print(render(results))


def _quantile(values: list, q: float, budget: int) -> float:
    """Seeds that never reach the goal count as budget + 1 (the quantile is then a lower bound)."""
    filled = [budget + 1 if v is None else v for v in values]
    return float(np.percentile(filled, q))


def render(results: dict) -> str:
    config = results["config"]
    lines = [
        "# Warm start after a model revision",
        "",
        f"Generated by `benchmarks/warm_start.py` ({results['seconds']} s). fashion-cnn, study spec `fashion-cnn` "
        f"(objectives: output divergence, measured latency on each target), {config['trials']} proxy trials per search, "
        f"{config['seeds']} seeds, {config['seed_plans']} seed plans from cycle 1, search-stage BatchNorm "
        f"`{config['search_batchnorm']}`.",
        "",
        "Trials until the search's hypervolume reaches 95% of the cold search's final one (same seed); seed trials "
        "count. Median [IQR]; a seed that never reaches it counts as budget + 1.",
        "",
    ]
    for kind, summary in results["revisions"].items():
        lines += [f"## Revision: {kind}", ""]
        for sampler, arms in summary["samplers"].items():
            lines += [
                f"Sampler `{sampler}`; {summary['seed_plans']} warm seed plans ({summary['unrelated_seed_plans']} unrelated).",
                "",
                "| arm | trials to 95% (median [IQR]) | seeds reaching 95% | trials to 99% (median [IQR]) | seeds reaching 99% | final HV / cold final (median) |",
                "|---|---:|---:|---:|---:|---:|",
            ]
            for arm, stats in arms.items():
                cells = []
                for key in ("to_95", "to_99"):
                    part = stats[key]
                    cells += [f"{part['median']:.0f} [{part['q25']:.0f}-{part['q75']:.0f}]", f"{part['reached']}/{config['seeds']}"]
                lines.append(f"| {arm} | " + " | ".join(cells) + f" | {stats['final_hv_vs_cold_median']:.3f} |")
            ratios = [arms["warm"][k]["median"] / arms["cold"][k]["median"] for k in ("to_95", "to_99")]
            lines += ["", f"warm / cold (medians): {ratios[0]:.2f} to 95%, {ratios[1]:.2f} to 99% (target <= 0.33)", ""]
    lines += [
        "The re-evaluate-only arm is one run (it has no sampler randomness): the cycle-1 plans and the uniform anchors,",
        "re-scored on the revision; its row says whether reusing the old front alone reaches the goal.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
