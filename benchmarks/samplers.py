"""Which sampler finds the proxy front fastest: NSGA-II, TPE (multivariate), GPSampler and random search at the same
trial budget, by proxy hypervolume over trials (docs/samplers.md).

fashion-cnn, study spec `fashion-cnn` (objectives: output divergence, measured latency on each target); every search
starts with the spec's uniform anchors, as in a study; N seeds per sampler. Hypervolume on (log10 divergence,
latencies) with one reference point shared by every sampler and seed (the worst value of each objective over all
their trials). Each sampler is built as a study builds it; `tpe:repeats` is TPE without `autotune.fresh_plans` (its
proposals may repeat a plan already tried), `tpe:short-start` TPE after gp-tpe's 12 random trials. Run:
`.venv/bin/python benchmarks/samplers.py [--seeds 10] [--trials 48] [--samplers tpe,tpe:repeats] [--runs-from F.json]`.
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
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autotune.anchors import uniform_anchors  # noqa: E402
from autotune.context import prepare  # noqa: E402
from autotune.pareto import hypervolume  # noqa: E402
from autotune.scoring import ProxyScorer  # noqa: E402
from autotune.search import gp_tpe_startup, make_sampler  # noqa: E402
from autotune.spec import load_study_spec  # noqa: E402
from benchmarks.pages import log_divergence, quiet_libraries, write_page  # noqa: E402

SAMPLERS = ("nsga2", "tpe", "random")  # add gp with --samplers: seconds per trial with ordered parameters


def search(context, scorer, name: str, seed: int, trials: int) -> tuple[np.ndarray, float, int]:
    """One search: its trials' objective values in order, its seconds and how many distinct plans it tried."""
    base, _, variant = name.partition(":")
    startup = gp_tpe_startup(trials) if variant == "short-start" else None
    sampler = make_sampler(base, seed, trials, None if variant == "repeats" else context.space, startup)
    study = optuna.create_study(directions=["minimize"] * len(scorer.objectives), sampler=sampler)
    for plan in uniform_anchors(context.space, context.spec.anchors):
        study.enqueue_trial(context.space.params_for(plan), skip_if_exists=True)

    def objective(trial: optuna.Trial) -> tuple[float, ...]:
        scores = scorer.score(context.space.suggest_plan(trial), context.spec.recovery.search_steps)
        return tuple(scores[n] for n in scorer.objectives)

    started = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    seconds = time.perf_counter() - started
    done = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number)
    distinct = len({context.space.plan_from_params(t.params).digest() for t in done})
    return np.array([t.values for t in done], dtype=float), seconds, distinct


def load_runs(path: Path, trials: int, seeds: int, names: list[str]) -> dict:
    """The searches an earlier run stored, for samplers this run does not repeat; refuses one of another budget."""
    stored = json.loads(path.read_text())
    if "runs" not in stored:
        raise SystemExit(f"{path}: no 'runs' (written before runs were stored); run its samplers again instead")
    config = stored["config"]
    if (config["trials"], config["seeds"]) != (trials, seeds):
        raise SystemExit(f"{path}: {config['trials']} trials x {config['seeds']} seeds, this run {trials} x {seeds}")
    earlier = [n for n in config["samplers"].split(",") if n not in names]
    keys = [(n, s) for n in earlier for s in range(seeds)]
    return {
        "names": earlier,
        "runs": {k: np.array(stored["runs"][f"{k[0]}/{k[1]}"], dtype=float) for k in keys},
        "seconds": {k: stored["seconds_by_run"][f"{k[0]}/{k[1]}"] for k in keys},
        "distinct": {k: stored["distinct_by_run"][f"{k[0]}/{k[1]}"] for k in keys},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=48)
    parser.add_argument("--samplers", default=",".join(SAMPLERS))
    parser.add_argument("--out", default=str(ROOT / "docs" / "samplers.md"))
    parser.add_argument(
        "--runs-from", default=None, help="an earlier run's .json (same trials and seeds): its samplers join the table"
    )
    args = parser.parse_args()
    quiet_libraries()
    started = time.time()
    spec = load_study_spec("fashion-cnn")
    spec = dataclasses.replace(spec, recovery=dataclasses.replace(spec.recovery, search_batchnorm="scoring_batch"))
    context = prepare(spec)
    scorer = ProxyScorer(context)
    names = args.samplers.split(",")
    runs, seconds, distinct = {}, {}, {}
    if args.runs_from:
        earlier = load_runs(Path(args.runs_from), args.trials, args.seeds, names)
        names = [*earlier["names"], *names]
        runs, seconds, distinct = earlier["runs"], earlier["seconds"], earlier["distinct"]
    for seed in range(args.seeds):  # samplers interleaved seed by seed, so machine noise hits them alike
        for name in names:
            if (name, seed) in runs:
                continue
            print(f"[{time.time() - started:.0f}s] {name} seed {seed}", flush=True)
            runs[(name, seed)], seconds[(name, seed)], distinct[(name, seed)] = search(context, scorer, name, seed, args.trials)
    reference = np.concatenate([log_divergence(v) for v in runs.values()]).max(axis=0) + 1e-9
    curves = {
        key: np.array([hypervolume(log_divergence(v)[: k + 1], reference) for k in range(len(v))]) for key, v in runs.items()
    }
    best = max(curves[key][-1] for key in curves)
    summary = {}
    for name in names:
        finals = np.array([curves[(name, s)][-1] / best for s in range(args.seeds)])
        checkpoints = {
            k: np.array([curves[(name, s)][k - 1] / best for s in range(args.seeds)])
            for k in sorted({12, 24, 48, 100, args.trials})
            if k <= args.trials
        }
        summary[name] = {
            "at_trials": {k: [float(np.median(v)), float(np.percentile(v, 25)), float(np.percentile(v, 75))] for k, v in checkpoints.items()},
            "final_median": float(np.median(finals)),
            "seconds_median": float(np.median([seconds[(name, s)] for s in range(args.seeds)])),
            "distinct_plans": [distinct[(name, s)] for s in range(args.seeds)],
        }
    results = {
        "config": vars(args) | {"samplers": ",".join(names)},
        "summary": summary,
        "seconds": round(time.time() - started),
        "reference_point": reference.tolist(),
        # every search's objective values in trial order, as scored: a later run can be tabled with them (--runs-from)
        "runs": {f"{name}/{seed}": values.tolist() for (name, seed), values in runs.items()},
        "seconds_by_run": {f"{name}/{seed}": s for (name, seed), s in seconds.items()},
        "distinct_by_run": {f"{name}/{seed}": d for (name, seed), d in distinct.items()},
    }
    Path(args.out).with_suffix(".json").write_text(json.dumps(results, indent=2))
    lines = [
        "# Samplers compared on the proxy search",
        "",
        f"Generated by `benchmarks/samplers.py` ({results['seconds']} s) on fashion-cnn, study spec `fashion-cnn` "
        f"(search-stage BatchNorm `scoring_batch`), {args.trials} trials per search including the spec's "
        f"{len(spec.anchors)} uniform anchors, {args.seeds} seeds per sampler, samplers interleaved seed by seed. "
        "Hypervolume as a fraction of the best final hypervolume of any run (one reference point for all); "
        "median [IQR] over seeds.",
        "",
        "| sampler | " + " | ".join(f"after {k} trials" for k in summary[names[0]]["at_trials"])
        + " | distinct plans (median [min-max]) | seconds per search (median) |",
        "|---|" + "---:|" * (len(summary[names[0]]["at_trials"]) + 2),
    ]
    for name in names:
        cells = [f"{m:.3f} [{q1:.3f}-{q3:.3f}]" for m, q1, q3 in summary[name]["at_trials"].values()]
        plans = summary[name]["distinct_plans"]
        cells.append(f"{np.median(plans):.0f} [{min(plans)}-{max(plans)}]")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {summary[name]['seconds_median']:.1f} |")
    if args.runs_from:
        lines += ["", f"The rows of {', '.join(earlier['names'])} are the searches stored by an earlier run "
                  f"({Path(args.runs_from).name}), their seconds as measured then; the reference point covers both runs."]
    lines += [
        "",
        "Every sampler is built exactly as a study builds it (`autotune.search.make_sampler`): gp is Optuna 5's "
        "GPSampler (multi-objective), gp-tpe is GPSampler for the first 48 trials and TPE after them, random is RandomSampler; tpe proposes an untried plan where it would repeat one "
        "(`autotune.fresh_plans`), tpe:repeats is TPE alone, tpe:short-start is TPE after gp-tpe's random start-up "
        "(12 trials) instead of a quarter of the budget. The grids are ordered parameters, as in the studies: "
        "a bit-width level per layer (integer) and a stepped pruning ratio per coupled group.",
        "",
    ]
    write_page(args.out, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
