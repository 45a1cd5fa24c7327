"""Proxy variants scored on the plans a benchmark run already measured (no new full evaluation): the accuracy proxy
with weights-only or W8A8 simulation, the latency table's variants (bases, pruning probes, composition), and a latency
model fitted on other measured plans (what a study could learn from the plans its earlier cycles measured). Spearman
against the measured drop and the measured latency at the throughput batch, with a bootstrap interval over plans.

Run: `python -m benchmarks.fidelity --folder .autotune/benchmarks/fashion-cnn --results docs/benchmarks.json`
(writes docs/proxy-fidelity.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import optuna

from autotune.context import prepare
from autotune.evaluate import trial_key
from autotune.latency_history import LatencyCorrection, plan_features
from autotune.plan import Plan
from autotune.scoring import ProxyScorer
from autotune.spec import load_study_spec
from autotune.studies import measured_study_name
from benchmarks.fidelity_spread import scores_once
from benchmarks.metrics import spearman
from benchmarks.pages import quiet_libraries, write_page

# Accuracy simulation, and the latency table's settings (`latency_measured` in a proxy recipe): each variant sets every
# setting, so the figures do not follow the default recipe.
FORMER = {"bases": "int8", "pruning_probes": "half_width", "pruning_precisions": "base", "composition": "product"}
PREVIOUS = FORMER | {"pruning_probes": {"openvino": "every_width"}, "pruning_precisions": "every"}
DEFAULT = FORMER | {
    "pruning_probes": {"openvino": "every_width"},
    "pruning_precisions": {"openvino": "base", "onnxruntime": "every"},
}
VARIANTS = {
    "weights only, former table (one INT8 base, half-width probes)": {"activations": "none", "latency": FORMER},
    "W8A8 simulated, former table": {"activations": "int8", "latency": FORMER},
    "former table, a base per precision": {"activations": "none", "latency": FORMER | {"bases": "per_precision"}},
    "former table, time deltas summed": {"activations": "none", "latency": FORMER | {"composition": "sum"}},
    "former table, every pruned width probed": {"activations": "none", "latency": FORMER | {"pruning_probes": "every_width"}},
    "former table, pruning probed at every precision of the group's first layer": {
        "activations": "none",
        "latency": FORMER | {"pruning_precisions": "every"},
    },
    "every width at every precision": {
        "activations": "none",
        "latency": FORMER | {"pruning_probes": "every_width", "pruning_precisions": "every"},
    },
    "every precision, every width on OpenVINO (the default benchmarked on 2026-12-02)": {
        "activations": "none",
        "latency": PREVIOUS,
    },
    "**default**: every width on OpenVINO, every precision on ONNX Runtime": {"activations": "none", "latency": DEFAULT},
    "default, W8A8 simulated": {"activations": "int8", "latency": DEFAULT},
}


def ranking_cell(proxy: np.ndarray, measured: np.ndarray) -> str:
    """A table cell: the Spearman with its interval over plans, or "-" where the plans rank nothing (fewer than 3, or
    one distinct value)."""
    value = spearman(proxy, measured)
    if value is None:
        return "-"
    low, high = plan_interval(proxy, measured)
    return f"{value:+.3f} [{low:+.2f}, {high:+.2f}]"


def plan_interval(proxy: np.ndarray, measured: np.ndarray, draws: int = 2000, seed: int = 0) -> list[float]:
    """90% bootstrap interval of the Spearman over plans: every resample ranked at once (ties averaged), resamples
    that rank nothing (one distinct value) left out."""
    from scipy.stats import rankdata

    proxy, measured = np.asarray(proxy, dtype=float), np.asarray(measured, dtype=float)
    which = np.random.default_rng(seed).integers(len(proxy), size=(draws, len(proxy)))
    a, b = rankdata(proxy[which], axis=1), rankdata(measured[which], axis=1)
    a, b = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    scale = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    ranked = scale > 0
    values = (a * b).sum(axis=1)[ranked] / scale[ranked]
    return [float(v) for v in np.percentile(values, [5, 95])]


FITTED_TRAIN_SIZES = (16, 32, 48)  # measured plans to learn from: one, two, three cycles of 16 full evaluations


def fitted_latency(plans: list[Plan], latencies: np.ndarray, seed: int = 0) -> dict:
    """A ridge regression of log latency on `plan_features`: Spearman of its 10-fold out-of-fold predictions, and of
    its predictions for the unseen plans when it learns from only N random plans (median [5th-95th] over 50 draws).
    Each figure needs plans enough to hold out: none below 10 plans."""
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold, cross_val_predict

    layers = list(dict.fromkeys(name for plan in plans for name in plan.layers))
    x, y = np.array([plan_features(p, layers) for p in plans]), np.log(latencies)
    model = RidgeCV(alphas=np.logspace(-3, 2, 12))
    if len(y) < 10:
        return {}
    predicted = cross_val_predict(model, x, y, cv=KFold(10, shuffle=True, random_state=seed))
    found = {"10-fold": (spearman(predicted, y), plan_interval(predicted, y))}
    rng = np.random.default_rng(seed)
    for size in FITTED_TRAIN_SIZES:
        if size >= len(y) - 5:
            continue
        values = []
        for _ in range(50):
            order = rng.permutation(len(y))
            model.fit(x[order[:size]], y[order[:size]])
            values.append(spearman(model.predict(x[order[size:]]), y[order[size:]]))
        found[f"learnt from {size}"] = (float(np.median(values)), [float(v) for v in np.percentile(values, [5, 95])])
    return found


def corrected_table(
    plans: list[Plan], estimates: np.ndarray, truth: np.ndarray, learn_from: np.ndarray | None = None, seed: int = 0
) -> dict:
    """The table corrected by `LatencyCorrection` learnt from N measured plans, ranked on the plans it did not learn
    from, against the table alone on the same plans: per N, median [5th-95th] over 50 draws of the Spearmans and of their
    paired difference. `learn_from` limits the plans drawn to learn from (e.g. the all-INT8 ones, as the promoted plans of
    earlier cycles mostly are); every other plan is ranked."""
    layers = list(dict.fromkeys(name for plan in plans for name in plan.layers))
    by_digest = {plan.digest(): float(e) for plan, e in zip(plans, estimates, strict=True)}
    pool = np.flatnonzero(learn_from if learn_from is not None else np.ones(len(plans), dtype=bool))
    rng = np.random.default_rng(seed)
    found = {}
    for size in FITTED_TRAIN_SIZES:
        if size > len(pool) - 5:
            continue
        alone, corrected = [], []
        for _ in range(50):
            learnt = rng.choice(pool, size, replace=False)
            held = np.setdiff1d(np.arange(len(plans)), learnt)
            correction = LatencyCorrection(lambda plan: by_digest[plan.digest()], [(plans[i], truth[i]) for i in learnt], layers)
            predicted = np.array([correction.corrected_ms(estimates[i], plans[i]) for i in held])
            alone.append(spearman(estimates[held], truth[held]))
            corrected.append(spearman(predicted, truth[held]))
        alone, corrected = np.array(alone), np.array(corrected)
        found[f"learnt from {size}"] = {
            "table": [float(np.median(alone)), [float(v) for v in np.percentile(alone, [5, 95])]],
            "corrected": [float(np.median(corrected)), [float(v) for v in np.percentile(corrected, [5, 95])]],
            "gain": [float(np.median(corrected - alone)), [float(v) for v in np.percentile(corrected - alone, [5, 95])]],
        }
    return found


def scorer_for(context, activations: str, latency: dict) -> ProxyScorer:
    proxies = context.spec.proxies
    settings = dict(proxies.settings)
    settings["latency_measured"] = dict(settings.get("latency_measured", {})) | latency
    proxies = dataclasses.replace(proxies, activations=activations, settings=settings)
    return ProxyScorer(dataclasses.replace(context, spec=dataclasses.replace(context.spec, proxies=proxies)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", required=True)
    parser.add_argument("--results", required=True)
    parser.add_argument("--out", default="docs/proxy-fidelity.md")
    args = parser.parse_args()
    quiet_libraries()
    results = json.loads(Path(args.results).read_text())
    folder = Path(args.folder).resolve()
    spec = load_study_spec(results["config"]["study"])
    targets = tuple(t for t in spec.targets if t.name in results["targets"])
    spec = dataclasses.replace(spec, name="bench", storage=f"sqlite:///{folder / 'bench.db'}", targets=targets)
    context = prepare(spec)
    storage = optuna.storages.RDBStorage(spec.storage)
    # Every target's latency proxy comes from the same scoring, so each plan is scored once per variant.
    scorers = {name: scores_once(scorer_for(context, **choice), spec.recovery.search_steps) for name, choice in VARIANTS.items()}
    objective = spec.proxies.objectives[0]
    lines = [
        "# Proxy variants on the measured plans",
        "",
        f"Generated by `python -m benchmarks.fidelity` from the benchmark run of {results['date']} ({results['command']}): "
        "every measured candidate plan of every method, re-scored by each proxy variant with the search's recovery "
        "budget. Spearman against the measured accuracy drop (whole validation set) and the measured latency at the "
        "throughput batch (median of the interleaved rounds); [5th-95th percentile] of 2,000 bootstrap resamples of the plans.",
        "",
        "Latency table variants (`[latency_measured]` settings, docs/study-spec.md): one INT8 base or a base per "
        "precision; pruning probed at half width and interpolated, or at every width the search space keeps; with the "
        "group's first layer at the base's precision only, or at every precision it may take; ratios multiplied or time "
        "deltas summed. The last column ranks only the plans with every layer at 8 bits or fewer: where the fast end "
        "of the front lies, and where pruning alone separates the plans.",
        "",
        "The fitted latency is a ridge regression of log latency on each layer's kept channels and precision class "
        "(float, 8 or 4 bits), not a proxy the search uses: \"10-fold\" predicts each plan from the other nine tenths "
        "of this run's plans; \"learnt from N\" from N random plans only, as a study with N measured plans from earlier "
        "cycles would (median [5th-95th percentile] over 50 draws). The plans come from few methods, so the 10-fold "
        "figure flatters it; the learning curve is the one to read.",
        "",
    ]
    for target in targets:
        summary = results["targets"][target.name]
        rows, roles = summary["rows"], summary["roles"]
        study = optuna.load_study(study_name=measured_study_name("bench", target.name), storage=storage)
        plans = {trial_key(t): Plan.from_dict(t.user_attrs["plan"]) for t in study.get_trials(deepcopy=False) if "plan" in t.user_attrs}
        keys = [k for k in rows if k in plans and k not in roles.values()]
        drops = np.array([rows[k]["drop_pts"] for k in keys])
        latencies = np.array([rows[k]["batch_latency_ms"] for k in keys])
        quantized = np.array([all(c.bits <= 8 for c in plans[k].layers.values()) for k in keys])
        lines += [
            f"## {target.name} ({len(keys)} plans, {int(quantized.sum())} with no float layer)",
            "",
            "| variant | accuracy Spearman | latency Spearman | latency Spearman, no float layer |",
            "|---|---:|---:|---:|",
        ]
        for name, score in scorers.items():
            scores = [score(plans[k]) for k in keys]
            accuracy = np.array([s[objective] for s in scores])
            latency = np.array([s[f"latency_measured@{target.name}"] for s in scores])
            cells = [
                ranking_cell(accuracy, drops),
                ranking_cell(latency, latencies),
                ranking_cell(latency[quantized], latencies[quantized]),
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
        for how, (value, (low, high)) in fitted_latency([plans[k] for k in keys], latencies).items():
            lines.append(f"| latency fitted on other measured plans ({how}) | - | {value:+.3f} [{low:+.2f}, {high:+.2f}] | - |")
            print(lines[-1], flush=True)
        lines.append("")
    write_page(args.out, "\n".join(lines))


if __name__ == "__main__":
    main()
