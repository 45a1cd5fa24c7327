"""Latency proxy fidelity on plans from the whole search space, without any full evaluation.

Latency does not depend on the weights, so a plan's latency is measured on its pruned, unrecovered model: every plan
is built for each target and timed at the throughput batch in interleaved rounds (every plan once per round, in a
new random order), and the median is the truth each latency table variant is ranked against. Half the plans are drawn
uniformly from the search space (float layers included, as the search explores them), half keep every layer at INT8
with random pruning (the fast end, where promoted plans lie). The benchmark run's fidelity (docs/benchmarks.md) ranks
only the plans its methods promoted; this one ranks what the search sees.

Run: `python -m benchmarks.latency_fidelity` (writes docs/latency-fidelity.md and its JSON; about 20 min on 2 cores
for fashion-cnn's 160 plans on both CPU targets).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
import types
from pathlib import Path

import numpy as np

from autotune.context import StudyContext, prepare
from autotune.errors import TargetError
from autotune.latency_check import CHECK_MIN_SPEARMAN, FALLBACK, FALLBACK_MARGIN, clearly_better
from autotune.latency_history import LatencyCorrection, load_observations, observations_path
from autotune.latency_table import architecture_key, time_in_rounds, timing_context
from autotune.plan import LayerChoice, Plan
from autotune.spec import MeasureSettings, load_hardware, load_study_spec
from benchmarks.fidelity import DEFAULT, FORMER, corrected_table, fitted_latency, plan_interval, scorer_for
from benchmarks.metrics import spearman
from benchmarks.pages import quiet_libraries, run_record, write_page, write_results

ROOT = Path(__file__).resolve().parents[1]
PER_PRECISION = {"bases": "per_precision"}
NO_PAIRS = {"boundaries": "none"}  # variants take the rest of their settings from the study's recipe
ROUNDS = {"probe_rounds": 6}
EVERY = FORMER | {"pruning_probes": "every_width", "pruning_precisions": "every"}
VARIANTS = {  # key: (label, `[latency_measured]` settings)
    "former": ("former table (one INT8 base, half-width probes, base precision)", FORMER),
    "former-per-precision": ("former table, a base per precision", FORMER | PER_PRECISION),
    "default": ("default settings with one timing per probe (the default before 2026-12-02 14:30 UTC)", DEFAULT),
    "default-sum": ("default, time deltas summed", DEFAULT | {"composition": "sum"}),
    "default-per-precision": ("default, a base per precision", DEFAULT | PER_PRECISION),
    "default-rounds": ("**default**: every width on OpenVINO, every precision on ONNX Runtime, probes timed in 6 interleaved rounds, pair terms on ONNX Runtime", DEFAULT | ROUNDS),
    "default-rounds-pairless": ("the default without pair terms (the default before 2026-12-04)", DEFAULT | ROUNDS | NO_PAIRS),
    "fallback-rounds": ("the check's fallback: the default with a base per precision and time deltas summed", DEFAULT | ROUNDS | FALLBACK),
    "fallback-rounds-pairless": ("the check's fallback without pair terms (where the check drops them)", DEFAULT | ROUNDS | FALLBACK | NO_PAIRS),
    "default-per-precision-rounds": (
        "default, a base per precision, probes timed in 6 interleaved rounds",
        DEFAULT | PER_PRECISION | ROUNDS,
    ),
    "every": ("every width and every precision everywhere", EVERY),
    "every-per-precision": ("every width and every precision, a base per precision", EVERY | PER_PRECISION),
}


def sample_plans(context: StudyContext, count: int, seed: int) -> tuple[dict[str, Plan], int]:
    """`count` distinct plans: half uniform over the space, half all-INT8 (where a layer allows 8) with random pruning;
    and how many of the first are the uniform ones."""
    plans = {p.digest(): p for p in context.space.random_plans(count // 2, seed)}
    uniform = len(plans)
    rng = np.random.default_rng(seed + 1)
    choices = context.space.choices()
    allowed = {layer.name: layer.bits for layer in context.space.layers}
    for _ in range(count * 50):
        if len(plans) >= count:
            break
        drawn = context.space.plan_from_params({name: values[rng.integers(len(values))] for name, values in choices.items()})
        plan = Plan({n: LayerChoice(8 if 8 in allowed[n] else c.bits, c.prune) for n, c in drawn.layers.items()})
        plans.setdefault(plan.digest(), plan)
    return plans, uniform


def measure_plans(context: StudyContext, hardware, plans: dict[str, Plan], rounds: int, seconds: float) -> dict[str, list[float]]:
    """Every plan built once for `hardware` and timed at its throughput batch in `rounds` rounds interleaved over all
    the plans (one chunk: the truth's rounds span the whole run), in ms."""
    build = context.build_context()
    samples = timing_context(build)
    protocol = MeasureSettings(warmup=5, min_repeats=20, min_seconds=seconds, max_repeats=5000)
    pruner, multiple = context.recovery.pruner, context.recovery.config.channel_multiple
    times = time_in_rounds(hardware, plans, pruner, samples, multiple, rounds, protocol, chunk=len(plans))
    if refused := {key: reason for key, reason in times.items() if isinstance(reason, str)}:
        key, reason = next(iter(refused.items()))
        raise TargetError(f"{hardware.name} refused {len(refused)} plans of the search space, e.g. {key}: {reason}")
    return times


def table_context(context: StudyContext) -> types.SimpleNamespace:
    """What a latency table reads from a proxy context, without scoring a plan."""
    return types.SimpleNamespace(
        pruner=context.recovery.pruner,
        build=context.build_context(),
        channel_multiple=context.recovery.config.channel_multiple,
        prune_ratios=context.space.prune_ratios(),
        layer_bits=context.space.layer_bits(),
        space=None,  # each table setting as configured: no check against whole plans, no fallback
    )


def observed_correction(table, plans: list[Plan], estimate: np.ndarray, truth: np.ndarray, observed: list, origin: str) -> dict:
    """The table corrected from measurements a workspace recorded (an earlier cycle's full evaluations), ranked on the
    plans it did not learn from beside the table alone, with a paired bootstrap of the gain."""
    correction = LatencyCorrection(table.estimate_ms, observed, list(table.base.layers))
    seen = {plan.digest() for plan, _ in observed}
    held = np.array([i for i, plan in enumerate(plans) if plan.digest() not in seen], dtype=int)
    if len(held) < 3:
        return {"origin": origin, "learnt_from": len(observed), "skipped": "fewer than 3 plans left to rank"}
    alone, truth = estimate[held], truth[held]
    corrected = np.array([correction.corrected_ms(estimate[i], plans[i]) for i in held])
    quantized = np.array([all(c.bits <= 8 for c in plans[i].layers.values()) for i in held])
    rng = np.random.default_rng(0)
    gains = []
    for _ in range(2000):
        draw = rng.integers(0, len(held), len(held))
        gains.append(spearman(corrected[draw], truth[draw]) - spearman(alone[draw], truth[draw]))
    return {
        "origin": origin,
        "learnt_from": len(observed),
        "with_float_layers": sum(any(c.bits >= 16 for c in plan.layers.values()) for plan, _ in observed),
        "alpha": float(correction.model.alpha_),
        "observed": [[plan.to_dict(), ms] for plan, ms in observed],
        "table": [spearman(alone, truth), plan_interval(alone, truth)],
        "corrected": [spearman(corrected, truth), plan_interval(corrected, truth)],
        "gain": [float(np.median(gains)), [float(v) for v in np.percentile(gains, [5, 95])]],
        "table_int8": spearman(alone[quantized], truth[quantized]),
        "corrected_int8": spearman(corrected[quantized], truth[quantized]),
    }


def rank_variants(
    context: StudyContext,
    target: str,
    plans: dict[str, Plan],
    times: dict[str, list[float]],
    variants: list[str],
    observed: tuple[list, str] | None = None,
) -> list[dict]:
    keys = list(plans)
    truth = np.array([np.median(times[k]) for k in keys])
    quantized = np.array([all(c.bits <= 8 for c in plans[k].layers.values()) for k in keys])
    found = []
    for key in variants:
        name, settings = VARIANTS[key]
        started = time.perf_counter()
        table = scorer_for(context, "none", settings).proxies[f"latency_measured@{target}"].table(table_context(context))
        seconds = time.perf_counter() - started
        estimate = np.array([table.estimate_ms(plans[k]) for k in keys])
        found.append({
            "variant": name,
            "key": key,
            "spearman": spearman(estimate, truth),
            "interval": plan_interval(estimate, truth),
            "spearman_int8": spearman(estimate[quantized], truth[quantized]),
            "interval_int8": plan_interval(estimate[quantized], truth[quantized]),
            "median_abs_log_error": float(np.median(np.abs(np.log(estimate / truth)))),
            "table_seconds": seconds,
            "estimates_ms": dict(zip(keys, estimate.tolist(), strict=True)),
            # The table corrected by what earlier full evaluations measured (autotune.latency_history), learnt from N
            # random plans or from N all-INT8 ones (as promoted plans mostly are), ranked on the others.
            "corrected": {
                "random plans": corrected_table([plans[k] for k in keys], estimate, truth),
                "INT8 plans": corrected_table([plans[k] for k in keys], estimate, truth, learn_from=quantized),
            },
        })
        if observed:
            found[-1]["observed"] = observed_correction(table, [plans[k] for k in keys], estimate, truth, *observed)
        print(f"{target}: {name}: {found[-1]['spearman']:+.3f}", flush=True)
    return found


def round_agreement(times: dict[str, list[float]]) -> float | None:
    """Median Spearman between two timing rounds: how well the timing ranks the plans against itself."""
    rounds = np.array(list(times.values()))
    pairs = [(i, j) for i in range(rounds.shape[1]) for j in range(i + 1, rounds.shape[1])]
    values = [spearman(rounds[:, i], rounds[:, j]) for i, j in pairs]
    return float(np.median(values)) if values else None


CHECK_THRESHOLDS = (0.5, 0.7, 0.8, 0.9)


def check_rule(found: dict, uniform: int, check_plans: int = 12, draws: int = 2000) -> dict | None:
    """The latency check's rule (autotune.latency_check.checked_table) replayed at several thresholds on the first
    `uniform` plans (drawn uniformly from the space, as the check's are): `check_plans` of them drawn at a time; the
    default table's pair terms dropped where its pairless variant ranks them clearly better; the fallback (pairless
    likewise, where that variant was measured) tried below the threshold and used where it ranks them clearly
    better. Per threshold: how often the fallback was measured and used, and the mean over draws of the chosen
    table's Spearman over all the plans and over the INT8 ones. None without the default and the fallback."""
    rows = {row["key"]: row for row in found["variants"]}
    if not {"default-rounds", "fallback-rounds"} <= set(rows):
        return None
    keys = list(found["times_ms"])[:uniform]
    truth = np.array([np.median(found["times_ms"][k]) for k in keys])
    estimates = {key: np.array([row["estimates_ms"][k] for k in keys]) for key, row in rows.items()}
    pairless = "default-rounds-pairless" if "default-rounds-pairless" in rows else None
    pairless_fallback = "fallback-rounds-pairless" if "fallback-rounds-pairless" in rows else "fallback-rounds"
    rng = np.random.default_rng(0)
    drawn_sets = [rng.choice(len(keys), min(check_plans, len(keys)), replace=False) for _ in range(draws)]
    found_rows = []
    for threshold in CHECK_THRESHOLDS:
        measured, chosen = 0, []
        for drawn in drawn_sets:
            table, fallback = "default-rounds", "fallback-rounds"
            ranked = spearman(estimates[table][drawn], truth[drawn])
            if pairless and clearly_better(without := spearman(estimates[pairless][drawn], truth[drawn]), ranked):
                table, ranked, fallback = pairless, without, pairless_fallback
            if ranked is None or ranked < threshold:
                measured += 1
                if clearly_better(spearman(estimates[fallback][drawn], truth[drawn]), ranked):
                    table = fallback
            chosen.append(table)
        found_rows.append({
            "threshold": threshold,
            "measured": measured / draws,
            "used": sum(key.startswith("fallback") for key in chosen) / draws,
            "expected": float(np.mean([rows[key]["spearman"] for key in chosen])),
            "expected_int8": float(np.mean([rows[key]["spearman_int8"] for key in chosen])),
        })
    return {"plans": len(keys), "pairless_fallback": pairless_fallback != "fallback-rounds", "rows": found_rows}


def render(results: dict) -> str:
    drift = ", each round's drift removed (`without_round_drift`)" if results.get("drift_removed") else ""
    lines = [
        "# Latency proxy fidelity across the search space",
        "",
        f"Generated by `{results['command']}` on {results['date']} in {results['seconds']} s; {results['machine']}. "
        f"{results['plans']} plans of study `{results['study']}` (seed {results['seed']}): half drawn uniformly from the "
        "search space, half all-INT8 with random pruning. Each built once per target, unrecovered (latency does not "
        f"depend on the weights), and timed at the throughput batch in {results['rounds']} interleaved rounds of at "
        f"least {results['round_seconds']} s each{drift}; the truth is the median. Spearman of each latency table variant "
        "against it, [5th-95th percentile] of 2,000 bootstrap resamples of the plans; the INT8 column ranks only the "
        "plans with every layer at 8 bits or fewer. Tables are measured as a study measures them (one timing per probe "
        "unless the variant times them in rounds; cached on disk, so a table measured earlier on this machine is read "
        "back). \"table built in s\" is this run's time for it (near 0 when read from the cache). The fitted latency is the ridge regression of docs/proxy-fidelity.md "
        "(10-fold on these plans, and learnt from N of them).",
        "",
    ]
    for target, found in results["targets"].items():
        lines += [
            f"## {target}",
            "",
            f"Timing against itself: two rounds rank the plans at Spearman {found['round_agreement']:+.3f} (median over "
            "pairs of rounds); the median of the rounds is steadier than one.",
            "",
            "| latency table | Spearman | INT8 plans only | median abs log error | table built in s |",
            "|---|---:|---:|---:|---:|",
        ]
        for row in found["variants"]:
            label = VARIANTS[row["key"]][0] if row.get("key") in VARIANTS else row["variant"]
            lines.append(
                f"| {label} | {row['spearman']:+.3f} [{row['interval'][0]:+.2f}, {row['interval'][1]:+.2f}] "
                f"| {row['spearman_int8']:+.3f} [{row['interval_int8'][0]:+.2f}, {row['interval_int8'][1]:+.2f}] "
                f"| {row['median_abs_log_error']:.2f} | {row['table_seconds']:.0f} |"
            )
        for how, (value, (low, high)) in found["fitted"].items():
            lines.append(f"| latency fitted on measured plans ({how}) | {value:+.3f} [{low:+.2f}, {high:+.2f}] | - | - | - |")
        lines.append("")
        if rule := check_rule(found, results.get("uniform_plans", results["plans"])):
            stand_in = "" if rule["pairless_fallback"] else " (the fallback without pair terms was not measured: the fallback with them stands in)"
            lines += [
                f"The latency check's rule replayed on these plans: 12 at a time drawn from the {rule['plans']} drawn "
                f"uniformly from the space, as the check's are, 2,000 draws; pair terms dropped where the table ranks "
                f"them better by {FALLBACK_MARGIN} without; the fallback measured where the table ranks them below the "
                f"threshold{stand_in}, used where it ranks them better by {FALLBACK_MARGIN}. The check's threshold is "
                f"{CHECK_MIN_SPEARMAN}. How often the fallback is measured and used, and the mean Spearman of the chosen "
                "table over all the plans and over the INT8 ones (the columns above).",
                "",
                "| threshold | fallback measured | fallback used | chosen table: Spearman | INT8 plans only |",
                "|---:|---:|---:|---:|---:|",
                *(
                    f"| {r['threshold']} | {r['measured']:.0%} | {r['used']:.0%} | {r['expected']:+.3f} | {r['expected_int8']:+.3f} |"
                    for r in rule["rows"]
                ),
                "",
            ]
        corrected = [row for row in found["variants"] if row.get("corrected")]
        if corrected:
            lines += [
                "The table corrected by a regression learnt from N measured plans (`learn_from_measured`, "
                "autotune/latency_history.py), ranked on the plans it did not learn from, against the table alone on the "
                "same plans: median [5th-95th percentile] over 50 draws of the plans learnt from.",
                "",
                "| latency table | learnt from | table alone | corrected | gain |",
                "|---|---|---:|---:|---:|",
            ]
            for row in corrected:
                label = VARIANTS[row["key"]][0].replace("**", "").split(":")[0]
                for pool, sizes in row["corrected"].items():
                    for how, cells in sizes.items():
                        text = " | ".join(f"{v:+.3f} [{lo:+.2f}, {hi:+.2f}]" for v, (lo, hi) in cells.values())
                        lines.append(f"| {label} | {how.removeprefix('learnt from ')} {pool} | {text} |")
            lines.append("")
            for row in (r for r in corrected if r.get("observed") and "skipped" not in r["observed"]):
                seen = row["observed"]
                label = VARIANTS[row["key"]][0].replace("**", "").split(":")[0]
                cells = " | ".join(f"{seen[k][0]:+.3f} [{seen[k][1][0]:+.2f}, {seen[k][1][1]:+.2f}]" for k in ("table", "corrected", "gain"))
                lines += [
                    f"Learnt from the {seen['learnt_from']} plans an earlier run measured ({seen['with_float_layers']} "
                    f"with a float layer; `{seen['origin']}`; penalty {seen['alpha']:g}), ranked on the other plans "
                    f"(gain: paired bootstrap): {label}: table alone, corrected, gain: {cells}. All-INT8 plans only: "
                    f"{seen['table_int8']:+.3f} alone, {seen['corrected_int8']:+.3f} corrected.",
                    "",
                ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="fashion-cnn")
    parser.add_argument("--plans", type=int, default=160)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--round-seconds", type=float, default=0.4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--targets", default=None, help="comma-separated hardware files to time on (default: the study's)")
    parser.add_argument(
        "--observed",
        default=None,
        help="a folder of measured-latency records (a workspace's cache/latency-observed, e.g. kept from a cycle): "
        "also rank the table corrected from them",
    )
    parser.add_argument("--out", default=str(ROOT / "docs" / "latency-fidelity.md"))
    parser.add_argument("--render", action="store_true", help="re-render the page from its .json beside it, measuring nothing")
    args = parser.parse_args(argv)
    if args.render:
        out = Path(args.out)
        write_page(out, render(json.loads(out.with_suffix(".json").read_text())))
        print(f"wrote {out}")
        return
    variants = args.variants.split(",")
    if unknown := [v for v in variants if v not in VARIANTS]:
        parser.error(f"--variants: unknown {unknown}; expected some of {list(VARIANTS)}")
    quiet_libraries()
    started = time.time()
    spec = load_study_spec(args.study)
    context = prepare(spec)
    plans, uniform = sample_plans(context, args.plans, args.seed)
    results = run_record("benchmarks.latency_fidelity", argv, args, ("study", "seed", "rounds", "round_seconds")) | {
        "plans": len(plans),
        "uniform_plans": uniform,
        "drift_removed": True,  # by time_in_rounds, since 2026-12-04
        "targets": {},
        "plan_recipes": {k: p.to_dict() for k, p in plans.items()},
    }
    if args.targets:
        spec = dataclasses.replace(spec, targets=tuple(load_hardware(name) for name in args.targets.split(",")))
        context = dataclasses.replace(context, spec=spec)
    for hardware in spec.targets:
        times = measure_plans(context, hardware, plans, args.rounds, args.round_seconds)
        truth = np.array([np.median(times[k]) for k in plans])
        observed = None
        if args.observed:
            recovery = context.recovery
            name = observations_path(hardware, architecture_key(recovery.pruner.teacher), recovery.config.channel_multiple).name
            records = load_observations(Path(args.observed) / name)
            observed = (records, f"{args.observed}/{name}") if records else None
            if not records:
                print(f"{hardware.name}: no measured-latency records in {args.observed}/{name}", flush=True)
        results["targets"][hardware.name] = {
            "times_ms": times,
            "round_agreement": round_agreement(times),
            "variants": rank_variants(context, hardware.name, plans, times, variants, observed),
            "fitted": fitted_latency(list(plans.values()), truth),
        }
    write_results(args.out, results, render, started)


if __name__ == "__main__":
    main()
