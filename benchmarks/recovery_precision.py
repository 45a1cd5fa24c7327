"""Distillation in bf16 autocast against f32: the same pruned plans recovered both ways at the study's full budget,
built for every target of the study and scored on the whole validation set, with each recovery's seconds. This is
the evidence behind `[recovery] precision = "auto"` (bf16 where the device multiplies it natively).

Plans: the uniform sweep (INT8, 0.1 ... 0.7) and random plans of the search space, pruned ones only. Both recoveries
of a plan run back to back in a fresh workspace (no cached state), their order alternating from plan to plan.

Run: `python -m benchmarks.recovery_precision [--study fashion-cnn] [--plans 16]` (writes docs/recovery-precision.md;
one study per run, a section each).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from autotune.compress import Recovery
from autotune.context import native_bf16, prepare
from autotune.evaluate import tool_versions
from autotune.spec import load_study_spec
from autotune.targets import make_target
from benchmarks import methods
from benchmarks.pages import fresh_workspace, quiet_libraries, write_study_section
from benchmarks.run import machine

PRECISIONS = ("f32", "bf16")


def compared_plans(context, count: int) -> list:
    """The sweep first, then random plans, keeping only plans that prune (an unpruned plan is not recovered)."""
    pruned = [p for p in methods.sweep_plans(context) if context.recovery.pruner.group_ratios(p)]
    for plan in methods.random_plans(context, 4 * count, seed=7):
        if len(pruned) >= count:
            break
        if context.recovery.pruner.group_ratios(plan) and plan.digest() not in {p.digest() for p in pruned}:
            pruned.append(plan)
    return pruned[:count]


def measure(study: str, count: int) -> dict:
    with fresh_workspace("autotune-precision-"):
        spec = load_study_spec(study)
        context = prepare(dataclasses.replace(spec, recovery=dataclasses.replace(spec.recovery, precision="f32")))
        recoveries = {
            precision: Recovery(
                context.workload,
                dataclasses.replace(context.recovery.config, precision=precision),
                context.recovery.teacher,
            )
            for precision in PRECISIONS
        }
        workload = context.workload
        labels = workload.validation.labels_numpy()
        targets = [make_target(h) for h in spec.targets]
        rows = []
        for index, plan in enumerate(compared_plans(context, count)):
            row = {"plan": plan.describe()}
            for precision in PRECISIONS if index % 2 == 0 else PRECISIONS[::-1]:
                started = time.perf_counter()
                model = recoveries[precision].recovered(plan, spec.recovery.full_steps)
                row[f"{precision}.recovery_s"] = time.perf_counter() - started
                for target in targets:
                    with tempfile.TemporaryDirectory() as folder:
                        artifact = target.build(model, plan, context.build_context(), Path(folder))
                        outputs = target.predict(artifact, workload.validation.inputs)
                    row[f"{precision}.{target.name}"] = float(workload.metric(outputs, labels))
            rows.append(row)
            print(row, flush=True)
    native, why = native_bf16(context.recovery.config.device)
    return {
        "rows": rows,
        "targets": [t.name for t in spec.targets],
        "steps": spec.recovery.full_steps,
        "native": native,
        "why": why,
        "metric": workload.metric_name,
    }


def interval(values: np.ndarray, draws: int = 2000) -> tuple[float, float]:
    """5th-95th percentile of the mean over bootstrap resamples of the plans."""
    rng = np.random.default_rng(0)
    means = [rng.choice(values, len(values)).mean() for _ in range(draws)]
    return float(np.percentile(means, 5)), float(np.percentile(means, 95))


def section(study: str, found: dict) -> list[str]:
    rows = found["rows"]
    machine_note = "" if found["native"] else f" This machine has no native bf16 ({found['why']}): bf16 is emulated here."
    lines = [
        f"## {study}",
        "",
        f"{len(rows)} pruned plans, {found['steps']} distillation steps each, measured "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.{machine_note}",
        "",
        f"| built for | mean {found['metric']} change, bf16 - f32 (points) [5th-95th] | largest change | rank agreement "
        "(Spearman over plans) | f32 range |",
        "|---|---:|---:|---:|---:|",
    ]
    for target in found["targets"]:
        f32 = 100 * np.array([r[f"f32.{target}"] for r in rows])
        bf16 = 100 * np.array([r[f"bf16.{target}"] for r in rows])
        change = bf16 - f32
        low, high = interval(change)
        largest = change[np.argmax(np.abs(change))]
        agreement = spearmanr(f32, bf16).statistic if len(rows) > 2 else float("nan")
        lines.append(
            f"| {target} | {change.mean():+.3f} [{low:+.3f}, {high:+.3f}] | {largest:+.2f} | {agreement:+.2f} | "
            f"{f32.min():.2f}-{f32.max():.2f} |"
        )
    speedup = np.array([r["f32.recovery_s"] / r["bf16.recovery_s"] for r in rows])
    seconds = {p: sum(r[f"{p}.recovery_s"] for r in rows) for p in PRECISIONS}
    lines += [
        "",
        f"Recovery: {seconds['f32']:.0f} s in f32, {seconds['bf16']:.0f} s in bf16 for all plans; per plan, f32 took "
        f"{np.median(speedup):.2f}x as long as bf16 (median; {speedup.min():.2f}x-{speedup.max():.2f}x).",
        "",
        "| plan | " + " | ".join(f"{p} {t}" for t in found["targets"] for p in PRECISIONS) + " | f32 s | bf16 s |",
        "|---|" + "---:|" * (2 * len(found["targets"]) + 2),
    ]
    for r in rows:
        accuracies = " | ".join(f"{100 * r[f'{p}.{t}']:.2f}" for t in found["targets"] for p in PRECISIONS)
        lines.append(f"| `{r['plan']}` | {accuracies} | {r['f32.recovery_s']:.1f} | {r['bf16.recovery_s']:.1f} |")
    return lines + [""]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="fashion-cnn")
    parser.add_argument("--plans", type=int, default=16)
    parser.add_argument("--out", default="docs/recovery-precision.md")
    args = parser.parse_args(argv)
    quiet_libraries()
    found = measure(args.study, args.plans)
    header = [
        "# Recovery in bf16 autocast against f32",
        "",
        f"Generated by `python -m benchmarks.recovery_precision`. Machine: {machine()['cpu']}, {machine()['cores']} "
        "cores. Versions: " + ", ".join(f"{k} {v}" for k, v in tool_versions().items()) + ". The same plans recovered "
        "both ways (the forward pass and the loss in bf16; weights, optimiser and the teacher's answers in f32), then "
        "built for each target and scored on the whole validation set. On fashion-cnn one accuracy (10,000 images) has a "
        "standard error near 0.3 points.",
        "",
    ]
    out = Path(args.out)
    write_study_section(out, header, args.study, section(args.study, found))
    print(out.read_text())


if __name__ == "__main__":
    main()
