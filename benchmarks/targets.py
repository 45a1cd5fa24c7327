"""Benchmark: FP32 vs uniform INT8 vs uniformly pruned INT8 on every CPU target, in one run.

Workload, search space (channel multiple, which layers may be pruned) and recovery budget are the
default study's (studies/fashion-cnn.toml), so the rows are the plans that study would build. Ratios are against the FP32 and INT8 rows measured in the same run (the machine is shared and
noisy; absolute numbers move, ratios much less). Writes docs/targets.md.

    make benchmark        # or: .venv/bin/python benchmarks/targets.py [--targets cpu-openvino cpu-onnxruntime]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

from autotune.context import StudyContext, prepare
from autotune.machine import cpu_model
from autotune.plan import Plan
from autotune.spec import load_hardware, load_study_spec
from autotune.targets import make_target

ROOT = Path(__file__).resolve().parent.parent
STUDY = "fashion-cnn"


def plans(context: StudyContext) -> dict[str, Plan]:
    """FP32 and uniform INT8 (the study's references), and uniform INT8 pruned as far as each layer allows."""
    references = context.reference_plans()
    return {
        "fp32": references["fp32"],
        "int8": references["int8"],
        "int8 + 30% pruned": context.space.uniform_plan(8, 0.3),
        "int8 + 50% pruned": context.space.uniform_plan(8, 0.5),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="+", default=["cpu-openvino", "cpu-onnxruntime"])
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "targets.md")
    args = parser.parse_args()

    context = prepare(load_study_spec(STUDY))
    workload, steps = context.workload, context.spec.recovery.full_steps
    benchmark_plans = plans(context)
    rows: dict[str, list[tuple]] = {}
    started = time.perf_counter()
    for target_name in args.targets:
        target = make_target(load_hardware(target_name))
        rows[target_name] = []
        for label, plan in benchmark_plans.items():
            model = context.recovery.recovered(plan, steps)  # cached: the second target reuses it
            with tempfile.TemporaryDirectory() as folder:
                artifact = target.build(model, plan, context.build_context(), Path(folder))
                accuracy = target.evaluate(artifact, workload.validation, workload.metric)
                measurement = target.measure(artifact, workload.example_input)
            rows[target_name].append((label, accuracy, measurement))
            print(
                f"{target_name:16s} {label:18s} acc {accuracy:.4f} p50 {measurement.latency_p50_ms:.3f} ms "
                f"{measurement.throughput_per_s:,.0f} img/s @{measurement.throughput_batch}"
            )
    write_report(args.output, rows, time.perf_counter() - started, steps)


def write_report(path: Path, rows: dict[str, list[tuple]], seconds: float, steps: int) -> None:
    lines = [
        "# Benchmark: CPU targets on fashion-cnn",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {cpu_model()} ({platform.machine()}), "
        f"2 threads, by `make benchmark` in {seconds:.0f} s. Pruned plans are "
        f"recovered with {steps} distillation steps as in studies/{STUDY}.toml (channels in multiples of 8, the head "
        "unpruned). Ratios compare rows of the same run.",
        "",
    ]
    for target, results in rows.items():
        fp32 = next(m for label, _, m in results if label == "fp32")
        int8 = next(m for label, _, m in results if label == "int8")
        batch = fp32.throughput_batch
        lines += [
            f"## {target}",
            "",
            f"| plan | accuracy | p50 ms @1 | p95 ms @1 | IQR/p50 | img/s @{batch} | vs FP32 @{batch} | vs INT8 @{batch} | MB |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for label, accuracy, m in results:
            lines.append(
                f"| {label} | {accuracy:.4f} | {m.latency_p50_ms:.3f} | {m.latency_p95_ms:.3f} | {m.latency_spread:.2f} "
                f"| {m.throughput_per_s:,.0f} | {m.throughput_per_s / fp32.throughput_per_s:.2f}x "
                f"| {m.throughput_per_s / int8.throughput_per_s:.2f}x | {m.size_mb:.3f} |"
            )
        lines.append("")
    path.write_text("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
