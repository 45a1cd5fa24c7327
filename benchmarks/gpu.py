"""GPU figures for gpu-torchao on fashion-cnn: FP32 vs bf16 vs INT8 vs INT4 vs a pruned INT8 candidate (accuracy,
latency at batch 1, throughput at the target's batch, peak GPU memory, compile time) and recovery steps per second.

Runs where a CUDA GPU is (the device tool): `python -m benchmarks.gpu --out DIR [--compile-mode reduce-overhead]`.
Each result is appended to DIR/gpu.jsonl as soon as it is measured, so a run cut short keeps what it finished.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch

from autotune.compress import distill
from autotune.context import prepare
from autotune.plan import LayerChoice, Plan
from autotune.spec import load_hardware, load_study_spec
from autotune.targets import make_target


def plans(context) -> dict[str, Plan]:
    """Linear layers at each precision, convolutions and the 10-class head in bf16 (INT8 needs widths in 8s)."""
    kinds = context.layer_kinds

    def uniform(linear: int, prune: float = 0.0) -> Plan:
        choices = {}
        for name, kind in kinds.items():
            bits = 16 if kind != "linear" or name == "head" else linear
            choices[name] = LayerChoice(bits, prune if name not in context.layers.outputs else 0.0)
        return Plan(choices)

    pruned = context.space.uniform_plan(8, 0.5)
    candidate = Plan({n: LayerChoice(16 if kinds[n] != "linear" or n == "head" else 8, c.prune) for n, c in pruned.layers.items()})
    return {
        "fp32": Plan.uniform(kinds, 32),
        "bf16": Plan.uniform(kinds, 16),
        "int8": uniform(8),
        "int4": uniform(4),
        "pruned-50%-int8": candidate,
    }


def recovery_steps_per_s(context, device: str, steps: int) -> float:
    """Distillation steps per second of a 50%-pruned student on `device` (the full stage's work)."""
    student = context.recovery.pruned(context.space.uniform_plan(8, 0.5)).to(device)
    teacher = context.recovery.teacher.to(device) if device != "cpu" else context.recovery.teacher
    config = dataclasses.replace(context.recovery.config, device=device)
    started = time.perf_counter()
    distill(student, teacher, context.workload, steps, config)
    if device == "cuda":
        torch.cuda.synchronize()
    context.recovery.teacher.to("cpu")
    return steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--compile-mode", default="reduce-overhead")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--plans", default="", help="comma-separated subset of the plans (default: all)")
    parser.add_argument("--skip-recovery-timing", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "gpu.jsonl"

    def record(entry: dict) -> None:
        with log.open("a") as handle:
            handle.write(json.dumps(entry) + "\n")
        print(json.dumps(entry), flush=True)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    hardware = load_hardware("gpu-torchao")
    hardware = dataclasses.replace(hardware, options={**hardware.options, "compile_mode": args.compile_mode, "device": device})
    # The CPU search space lists 8-bit convolutions, which torchao cannot run: the plans below are made for it.
    context = prepare(dataclasses.replace(load_study_spec("fashion-cnn"), targets=()))
    record({"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "torch": torch.__version__,
            "compile_mode": args.compile_mode})
    if not args.skip_recovery_timing:
        record({"recovery_steps_per_s": recovery_steps_per_s(context, device, args.steps), "device": device,
                "batch_size": context.recovery.config.batch_size})
    target = make_target(hardware)
    context.recovery.config = dataclasses.replace(context.recovery.config, device=device)
    chosen = set(args.plans.split(",")) if args.plans else None
    for name, plan in plans(context).items():
        if chosen is not None and name not in chosen:
            continue
        try:
            measure_plan(context, target, name, plan, args.steps, device, record)
        except Exception as exc:  # one plan a runtime refuses must not lose the others' figures
            record({"plan": name, "error": f"{type(exc).__name__}: {exc}"[:500]})


def measure_plan(context, target, name: str, plan: Plan, steps: int, device: str, record) -> None:
    workload = context.workload
    started = time.perf_counter()
    model = context.recovery.recovered(plan, steps)
    with tempfile.TemporaryDirectory() as folder:
        artifact = target.build(model, plan, context.build_context(), Path(folder))
        built = time.perf_counter() - started
        accuracy = target.evaluate(artifact, workload.validation, workload.metric)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        measurement = target.measure(artifact, workload.example_input)
        peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
        record({
            "plan": name,
            "accuracy": accuracy,
            "latency_p50_ms": measurement.latency_p50_ms,
            "latency_p95_ms": measurement.latency_p95_ms,
            "throughput_per_s": measurement.throughput_per_s,
            "throughput_batch": measurement.throughput_batch,
            "size_mb": measurement.size_mb,
            "peak_gpu_mib": peak,
            "build_s": built,
            "compile_s": measurement.extra.get("compile_seconds"),
            "realised": sorted(set(artifact.realised_precision.values())),
        })
        target.release()


if __name__ == "__main__":
    main()
