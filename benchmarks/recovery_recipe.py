"""Two or more recovery recipes compared on the same pruned plans: each plan recovered with every value of one field
of the study's recovery recipe (learning rate, precision, ...) at the study's full budget, or with each budget
(`full_steps`: the distillation steps of a full evaluation), built for every target of the study and scored on the
whole validation set, with each recovery's seconds.

Plans: the uniform sweep (INT8, 0.1 ... 0.7) and random plans of the search space, pruned ones only. A plan's
recoveries run back to back in a fresh workspace (no cached state), their order rotating from plan to plan.

Run: `python -m benchmarks.recovery_recipe --field learning_rate --values 0.001 0.003 [--study fashion-cnn]
[--plans 16]` (writes docs/recovery-<field>.md; one study per run, a section each); `--field full_steps --values 600 300`
compares budgets, and `--values 600 100+500` a fresh 600-step recovery with the 100-step one (recovered first, as the
re-score does) continued for 500 steps.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from autotune.compress import Recovery, RecoveryConfig
from autotune.context import prepare
from autotune.evaluate import tool_versions
from autotune.spec import load_study_spec
from autotune.targets import make_target
from benchmarks import methods
from benchmarks.pages import fresh_workspace, quiet_libraries, write_study_section
from benchmarks.run import machine

# What a recipe may vary: not the device (results equal up to float noise) nor the channel multiple (a model's identity).
FIELDS = tuple(f.name for f in dataclasses.fields(RecoveryConfig) if f.name not in ("device", "channel_multiple"))
STEPS = "full_steps"  # the study's budget, not a RecoveryConfig field: each value is a number of distillation steps


def compared_plans(context, count: int) -> list:
    """The sweep first, then random plans, keeping only plans that prune (an unpruned plan is not recovered)."""
    pruned = [p for p in methods.sweep_plans(context) if context.recovery.pruner.group_ratios(p)]
    for plan in context.space.random_plans(4 * count, seed=7):
        if len(pruned) >= count:
            break
        if context.recovery.pruner.group_ratios(plan) and plan.digest() not in {p.digest() for p in pruned}:
            pruned.append(plan)
    return pruned[:count]


def parse_value(field: str, text: str):
    """A value for `field`, typed like the recipe's own (`--values 0.001 0.003` for the learning rate); a budget is a
    number of steps, or `A+B`: B steps continuing an A-step recovery."""
    if field == STEPS:
        return text if "+" in text and all(part.isdigit() for part in text.split("+", 1)) else int(text)
    default = getattr(RecoveryConfig(), field)
    return type(default)(text)


def measure(study: str, count: int, field: str, values: list, base_overrides: dict | None = None) -> dict:
    """Every plan recovered with each value of `field` (the rest of the study's recipe unchanged), built, scored."""
    with fresh_workspace("autotune-recipe-"):
        spec = load_study_spec(study)
        recovery = dataclasses.replace(spec.recovery, **(base_overrides or {}))
        context = prepare(dataclasses.replace(spec, recovery=recovery))
        afters = [0] * len(values)
        if field == STEPS:  # one recipe, each budget (the cosine schedule spans each budget, or each part, whole)
            recoveries, steps = [context.recovery] * len(values), [budget_steps(v) for v in values]
            afters = [budget_after(v) for v in values]
        else:
            recoveries = [
                Recovery(context.workload, dataclasses.replace(context.recovery.config, **{field: value}), context.recovery.teacher)
                for value in values
            ]
            steps = [spec.recovery.full_steps] * len(values)
        workload = context.workload
        labels = workload.validation.labels_numpy()
        targets = [make_target(h) for h in spec.targets]
        rows = []
        for index, plan in enumerate(compared_plans(context, count)):
            row = {"plan": plan.describe()}
            shift = index % len(values)  # rotate which recipe runs first: none always finds the machine warm
            for position in [*range(shift, len(values)), *range(shift)]:
                label = str(values[position])
                if afters[position]:  # the re-score's recovery, done before the full evaluation in a cycle
                    recoveries[position].recovered(plan, afters[position])
                started = time.perf_counter()
                model = recoveries[position].recovered(plan, steps[position], afters[position])
                row[f"{label}.recovery_s"] = time.perf_counter() - started
                for target in targets:
                    with tempfile.TemporaryDirectory() as folder:
                        artifact = target.build(model, plan, context.build_context(), Path(folder))
                        outputs = target.predict(artifact, workload.validation.inputs)
                    row[f"{label}.{target.name}"] = float(workload.metric(outputs, labels))
            rows.append(row)
            print(row, flush=True)
    return {
        "rows": rows,
        "field": field,
        "labels": [str(v) for v in values],
        "base": dataclasses.asdict(context.recovery.config),
        "targets": [t.name for t in spec.targets],
        "steps": spec.recovery.full_steps if field != STEPS else None,
        "metric": workload.metric_name,
    }


def budget_steps(value: int | str) -> int:
    """The distillation steps a model has had in all: A+B for a continued recovery."""
    return sum(int(part) for part in str(value).split("+"))


def budget_after(value: int | str) -> int:
    """The steps of the recovery a budget continues (0: it starts from the pruned model)."""
    return int(str(value).split("+")[0]) if "+" in str(value) else 0


def interval(values: np.ndarray, draws: int = 2000) -> tuple[float, float]:
    """5th-95th percentile of the mean over bootstrap resamples of the plans."""
    rng = np.random.default_rng(0)
    means = rng.choice(values, (draws, len(values))).mean(axis=1)
    return float(np.percentile(means, 5)), float(np.percentile(means, 95))


def comparison_table(found: dict, baseline: str, other: str) -> list[str]:
    """Per target: the mean change `other - baseline` over plans, its bootstrap interval, and the rank agreement."""
    rows = found["rows"]
    lines = [
        f"| built for | mean {found['metric']} change, {other} - {baseline} (points) [5th-95th] | largest change | "
        f"plans better / worse | rank agreement (Spearman over plans) | {baseline} range |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for target in found["targets"]:
        before = 100 * np.array([r[f"{baseline}.{target}"] for r in rows])
        after = 100 * np.array([r[f"{other}.{target}"] for r in rows])
        change = after - before
        low, high = interval(change)
        largest = change[np.argmax(np.abs(change))]
        agreement = spearmanr(before, after).statistic if len(rows) > 2 else float("nan")
        lines.append(
            f"| {target} | {change.mean():+.3f} [{low:+.3f}, {high:+.3f}] | {largest:+.2f} | "
            f"{int((change > 0).sum())} / {int((change < 0).sum())} | {agreement:+.2f} | {before.min():.2f}-{before.max():.2f} |"
        )
    return lines


def seconds_line(found: dict, baseline: str, other: str) -> str:
    rows = found["rows"]
    ratio = np.array([r[f"{baseline}.recovery_s"] / r[f"{other}.recovery_s"] for r in rows])
    total = {label: sum(r[f"{label}.recovery_s"] for r in rows) for label in found["labels"]}
    return (
        "Recovery: " + ", ".join(f"{total[label]:.0f} s with {label}" for label in found["labels"]) + " for all plans; "
        f"per plan, {baseline} took {np.median(ratio):.2f}x as long as {other} (median; {ratio.min():.2f}x-{ratio.max():.2f}x)."
    )


def plan_table(found: dict) -> list[str]:
    labels, targets = found["labels"], found["targets"]
    lines = [
        "| plan | " + " | ".join(f"{label} {t}" for t in targets for label in labels) + " | "
        + " | ".join(f"{label} s" for label in labels) + " |",
        "|---|" + "---:|" * (len(labels) * (len(targets) + 1)),
    ]
    for r in found["rows"]:
        accuracies = " | ".join(f"{100 * r[f'{label}.{t}']:.2f}" for t in targets for label in labels)
        seconds = " | ".join(f"{r[f'{label}.recovery_s']:.1f}" for label in labels)
        lines.append(f"| `{r['plan']}` | {accuracies} | {seconds} |")
    return lines


def section(study: str, found: dict, note: str = "") -> list[str]:
    """One study's figures: each value against the first (the baseline), then every plan."""
    baseline, others = found["labels"][0], found["labels"][1:]
    base = found["base"]
    recipe = ", ".join(f"{k} {base[k]}" for k in ("batch_size", "learning_rate", "precision") if k != found["field"])
    budget = f"{found['steps']} distillation steps each" if found["steps"] else "distillation steps"
    lines = [
        f"## {study}",
        "",
        f"{len(found['rows'])} pruned plans, {budget} ({recipe}), `{found['field']}` "
        f"{' vs '.join(found['labels'])}, measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on "
        f"{machine()['cpu']} ({machine()['cores']} cores).{note}",
        "",
    ]
    for other in others:
        lines += [*comparison_table(found, baseline, other), "", seconds_line(found, baseline, other), ""]
    return lines + [*plan_table(found), ""]


def header(field: str) -> list[str]:
    return [
        f"# Recovery recipes compared: `{field}`",
        "",
        f"Generated by `python -m benchmarks.recovery_recipe --field {field}`. Versions: "
        + ", ".join(f"{k} {v}" for k, v in tool_versions().items())
        + ". The same plans recovered with each value (the rest of the study's recipe unchanged), then built for each "
        "target and scored on the whole validation set. On fashion-cnn one accuracy (10,000 images) has a standard error "
        "near 0.3 points, but the plans are scored on the same images, so a change's noise is the recoveries' own.",
        "",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="fashion-cnn")
    parser.add_argument("--field", required=True, choices=sorted((*FIELDS, STEPS)))
    parser.add_argument("--values", nargs="+", required=True, help="the first is the baseline the others are compared with")
    parser.add_argument("--plans", type=int, default=16)
    parser.add_argument("--out", default=None, help="default docs/recovery-<field>.md")
    args = parser.parse_args(argv)
    if len(args.values) < 2:
        parser.error("--values: give at least two values to compare")
    quiet_libraries()
    values = [parse_value(args.field, v) for v in args.values]
    if args.field == "precision" and not set(values) <= {"f32", "bf16"}:
        parser.error(f"--values: {values}: a recovery runs in 'f32' or 'bf16'")
    if args.field == STEPS and min(budget_steps(v) for v in values) < 1:
        parser.error(f"--values: {values}: a budget is at least 1 step")
    found = measure(args.study, args.plans, args.field, values)
    out = Path(args.out or f"docs/recovery-{args.field.replace('_', '-')}.md")
    write_study_section(out, header(args.field), args.study, section(args.study, found))
    print(out.read_text())


if __name__ == "__main__":
    main()
