"""ONNX Runtime INT8 with 8-bit against 7-bit weights (`reduce_range`) on this machine: the same recovered plans built
both ways, scored on the whole validation set and timed in interleaved rounds, beside the OpenVINO build of the same
model. On an x86 CPU without VNNI, ONNX Runtime sums u8 x s8 products in 16 bits, which saturate; this is the evidence
behind `int8_reduce_range = "auto"` in hardware/cpu-onnxruntime.toml.

Run: `python -m benchmarks.onnxruntime_reduce_range [--study fashion-cnn] [--plans 12] [--rounds 3]` (writes
docs/onnxruntime-reduce-range.md; one study per run, a section each).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np

from autotune.context import prepare
from autotune.evaluate import tool_versions
from autotune.spec import load_hardware, load_study_spec
from autotune.targets import make_target
from autotune.targets.onnxruntime import x86_without_vnni
from benchmarks.pages import fresh_workspace, quiet_libraries, write_study_section
from benchmarks.recovery_recipe import compared_plans, interval
from benchmarks.run import machine
from benchmarks.timing import interleaved_rounds

WAYS = {"8-bit": False, "7-bit": True}


def measure(study: str, count: int, rounds: int) -> dict:
    with fresh_workspace("autotune-reduce-range-"), tempfile.TemporaryDirectory() as scratch:
        spec = load_study_spec(study)
        context = prepare(spec)
        workload = context.workload
        labels = workload.validation.labels_numpy()
        # The study's ONNX Runtime target, or the built-in one where the study has none.
        onnxruntime = next((h for h in spec.targets if h.backend == "onnxruntime"), None) or load_hardware("cpu-onnxruntime")
        others = [make_target(h) for h in spec.targets if h.backend != "onnxruntime"]
        targets = {
            way: make_target(dataclasses.replace(onnxruntime, options={**onnxruntime.options, "int8_reduce_range": reduce}))
            for way, reduce in WAYS.items()
        }
        plans = {"fp32": context.reference_plans()["fp32"], "int8": context.reference_plans()["int8"]}
        plans |= {plan.digest(): plan for plan in compared_plans(context, count - 1)}
        rows, artifacts = [], {}
        for key, plan in plans.items():
            model = context.recovery.recovered(plan, spec.recovery.full_steps)
            row = {"key": key, "plan": plan.describe()}
            for way, target in targets.items():
                artifact = target.build(model, plan, context.build_context(), Path(scratch) / way / key)
                row[way] = float(workload.metric(target.predict(artifact, workload.validation.inputs), labels))
                artifacts[f"{way}/{key}"] = artifact
            for other in others:
                with tempfile.TemporaryDirectory() as folder:
                    artifact = other.build(model, plan, context.build_context(), Path(folder))
                    row[other.name] = float(workload.metric(other.predict(artifact, workload.validation.inputs), labels))
            rows.append(row)
            print(row, flush=True)
        timings = interleaved_rounds(targets["8-bit"], artifacts, workload.example_input, rounds)
        for row in rows:
            full, reduced = (np.array(timings[f"{way}/{row['key']}"]["throughput_per_s"]) for way in WAYS)
            row["speed_ratio"] = float(np.median(reduced / full))  # within a round: 7-bit over 8-bit samples/s
    return {
        "rows": rows,
        "target": onnxruntime.name,
        "others": [t.name for t in others],
        "steps": spec.recovery.full_steps,
        "rounds": rounds,
        "metric": workload.metric_name,
        "detected": x86_without_vnni(),
    }


def section(study: str, found: dict) -> list[str]:
    rows = found["rows"]
    fp32 = next(r for r in rows if r["key"] == "fp32")
    quantized = [r for r in rows if r["key"] != "fp32"]
    change = 100 * np.array([r["7-bit"] - r["8-bit"] for r in quantized])
    low, high = interval(change)
    ratios = np.array([r["speed_ratio"] for r in quantized])
    others = found["others"]
    lines = [
        f"## {study}",
        "",
        f"{len(quantized)} quantized plans (uniform INT8, the pruned uniform sweep, random plans; pruned ones recovered "
        f"with {found['steps']} distillation steps) and FP32, built for {found['target']} both ways; measured "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()['cpu']} ({machine()['cores']} cores). "
        f"`auto` here: {found['detected'][1]}.",
        "",
        f"| | mean {found['metric']} change, 7-bit - 8-bit (points) [5th-95th] | plans better / worse | speed, 7-bit over "
        "8-bit (median of plans [min-max]) |",
        "|---|---:|---:|---:|",
        f"| {found['target']} | {change.mean():+.2f} [{low:+.2f}, {high:+.2f}] | {int((change > 0).sum())} / "
        f"{int((change < 0).sum())} | {np.median(ratios):.2f}x [{ratios.min():.2f}-{ratios.max():.2f}] |",
        "",
        f"Drops against FP32 built for {found['target']} ({100 * fp32['8-bit']:.2f}); speed is samples/s at the throughput "
        f"batch, each build timed once per round in {found['rounds']} interleaved rounds, the ratio taken within a round.",
        "",
        "| plan | 8-bit drop | 7-bit drop | " + " | ".join(f"{o} drop" for o in others) + " | speed 7-bit / 8-bit |",
        "|---|---:|---:|" + "---:|" * len(others) + "---:|",
    ]
    for r in quantized:
        drops = [100 * (fp32[way] - r[way]) for way in WAYS] + [100 * (fp32[o] - r[o]) for o in others]
        lines.append(f"| `{r['plan']}` | " + " | ".join(f"{d:+.2f}" for d in drops) + f" | {r['speed_ratio']:.2f}x |")
    return lines + [""]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="fashion-cnn")
    parser.add_argument("--plans", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="docs/onnxruntime-reduce-range.md")
    args = parser.parse_args(argv)
    quiet_libraries()
    found = measure(args.study, args.plans, args.rounds)
    header = [
        "# ONNX Runtime INT8: 8-bit or 7-bit weights",
        "",
        "Generated by `python -m benchmarks.onnxruntime_reduce_range`. Versions: "
        + ", ".join(f"{k} {v}" for k, v in tool_versions().items())
        + ". Where an x86 CPU lacks VNNI, ONNX Runtime's INT8 kernels sum u8 x s8 products in 16 bits and saturate; "
        "7-bit weights (`reduce_range`) keep the sums in range. The same models built both ways; drops are points "
        "below the FP32 model built for the same runtime, on the whole validation set.",
        "",
    ]
    out = Path(args.out)
    write_study_section(out, header, args.study, section(args.study, found))
    print(out.read_text())


if __name__ == "__main__":
    main()
