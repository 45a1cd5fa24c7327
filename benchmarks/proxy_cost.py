"""Benchmark: what one proxy trial costs on a bigger model, by phase, before and after part 6 of the
"any model" work, and whether cheaper BatchNorm re-calibration keeps the proxy's ranking.

- Cost: an ImageNet-size CNN from a public wheel (EfficientNet-B0 from `efficientnet-pytorch`, 5.3M
  parameters, depthwise blocks in an nn.ModuleList, 224x224, random weights: timing only), random plans
  over its pruning groups and bits. "before" reproduces the old path (torch-pruning's MetaPruner traced per
  trial, 2,560 re-calibration images, 256 calibration images); "after" is autotune's (dependency graph
  traced once, pruning replayed by index, fewer re-calibration and calibration images).
- Fidelity: on the trained default model (fashion-cnn), Spearman between the output divergence with the
  full re-calibration and with fewer images, over random plans (with its bootstrap interval).

    .venv/bin/pip install efficientnet-pytorch && .venv/bin/python benchmarks/proxy_cost.py
Writes docs/proxy-cost.md.
"""

from __future__ import annotations

import argparse
import copy
import platform
import random
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch_pruning as tp
from scipy.stats import spearmanr

from autotune.compress import Recovery, RecoveryConfig, fake_quantize_weights, recalibrate_batchnorm
from autotune.divergence import divergence
from autotune.plan import LayerChoice, Plan
from autotune.workloads import LabelledData, Workload, load_workload, top1_accuracy
from autotune.workloads.io import take

ROOT = Path(__file__).resolve().parent.parent
RATIOS = (0.0, 0.25, 0.5)


def efficientnet_workload(images: int) -> Workload:
    from efficientnet_pytorch import EfficientNet

    torch.manual_seed(0)
    model = EfficientNet.from_name("efficientnet-b0")
    model.set_swish(memory_efficient=False)
    state = model.state_dict()

    def factory():
        fresh = EfficientNet.from_name("efficientnet-b0")
        fresh.set_swish(memory_efficient=False)
        fresh.load_state_dict(state)
        return fresh.eval()

    inputs = torch.randn(images, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    return Workload(
        name="efficientnet-b0",
        model_factory=factory,
        calibration=inputs[:256],
        recovery=LabelledData(inputs),
        validation=LabelledData(inputs[:64], torch.zeros(64, dtype=torch.long)),
        metric=top1_accuracy,
    )


def random_plan(recovery: Recovery, rng: random.Random, output_layers) -> Plan:
    ratio = {g.root: rng.choice(RATIOS) for g in recovery.pruner.prunable}
    choices = {}
    for name in recovery.layers.layers:
        group = recovery.pruner.by_layer.get(name)
        prune = ratio.get(group.root, 0.0) if group is not None and not group.protected else 0.0
        choices[name] = LayerChoice(rng.choice((8, 32)), prune)
    return Plan(choices)


def metapruner_prune(teacher, plan: Plan, example, protected) -> torch.nn.Module:
    """The old path: a MetaPruner (a dependency-graph trace) on a copy for every trial."""
    model = copy.deepcopy(teacher)
    modules = dict(model.named_modules())
    pruner = tp.pruner.MetaPruner(
        model,
        example,
        importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=0.0,
        pruning_ratio_dict={modules[n]: c.prune for n, c in plan.layers.items() if c.prune > 0},
        ignored_layers=[modules[n] for n in protected],
    )
    pruner.step()
    return model


def time_trial(recovery: Recovery, plan: Plan, calibration, reference, recalibration: int, old: bool) -> dict:
    """Seconds per phase of one proxy trial (pruning, re-calibration, divergence)."""
    workload = recovery.workload
    seconds = {}
    started = time.perf_counter()
    if old:
        model = metapruner_prune(recovery.teacher, plan, workload.example_input, recovery.layers.outputs)
    else:
        model = recovery.pruned(plan)
    seconds["prune"] = time.perf_counter() - started
    started = time.perf_counter()
    recalibrate_batchnorm(model, workload.recovery, RecoveryConfig(batch_size=64, recalibration_samples=recalibration))
    seconds["recalibrate"] = time.perf_counter() - started
    started = time.perf_counter()
    compressed = fake_quantize_weights(model, plan)
    outputs = workload.io.run_batched(compressed, calibration, 64)
    divergence(workload.io.output_kind, reference, outputs).item()
    seconds["divergence"] = time.perf_counter() - started
    seconds["total"] = sum(seconds.values())
    return seconds


def cost(arms: dict[str, tuple[int, int, bool]], trials: int) -> tuple[dict, dict]:
    workload = efficientnet_workload(max(r for r, _, _ in arms.values()))
    started = time.perf_counter()
    recovery = Recovery(workload, RecoveryConfig())
    setup = {"analyse_model_s": time.perf_counter() - started, "groups": len(recovery.pruner.groups),
             "prunable_groups": len(recovery.pruner.prunable), "layers": len(recovery.layers.layers),
             "params_m": sum(p.numel() for p in recovery.teacher.parameters()) / 1e6}
    rng = random.Random(0)
    plans = [random_plan(recovery, rng, recovery.layers.outputs) for _ in range(trials)]
    inputs = {}
    for arm, (recalibration, samples, old) in arms.items():
        calibration = take(workload.calibration, slice(0, samples))
        inputs[arm] = (calibration, workload.io.run_batched(recovery.teacher, calibration, 64), recalibration, old)
    rows: dict[str, list[dict]] = {arm: [] for arm in arms}
    for plan in plans:  # arms interleaved plan by plan: the machine's load drifts
        for arm, (calibration, reference, recalibration, old) in inputs.items():
            rows[arm].append(time_trial(recovery, plan, calibration, reference, recalibration, old))
            print(arm, {k: round(v, 2) for k, v in rows[arm][-1].items()}, flush=True)
    results = {arm: {k: statistics.median(r[k] for r in found) for k in found[0]} for arm, found in rows.items()}
    return setup, results


def fidelity(counts: list[int], plans: int, workload_name: str) -> dict:
    workload = load_workload(workload_name)
    recovery = Recovery(workload, RecoveryConfig(channel_multiple=8))
    calibration = take(workload.calibration, slice(0, 256))
    reference = workload.io.run_batched(recovery.teacher, calibration)
    rng = random.Random(1)
    sample = [random_plan(recovery, rng, recovery.layers.outputs) for _ in range(plans)]
    scores = {count: [] for count in counts}
    for plan in sample:
        for count in counts:
            model = recovery.pruned(plan)
            recalibrate_batchnorm(model, workload.recovery, RecoveryConfig(recalibration_samples=count))
            outputs = workload.io.run_batched(fake_quantize_weights(model, plan), calibration)
            scores[count].append(divergence("logits", reference, outputs).item())
    full = np.asarray(scores[max(counts)])
    result = {}
    boot = np.random.default_rng(0)
    for count in counts:
        values = np.asarray(scores[count])
        rho = spearmanr(full, values).statistic
        draws = [spearmanr(full[i], values[i]).statistic for i in (boot.integers(0, plans, plans) for _ in range(500))]
        low, high = np.nanpercentile(draws, [2.5, 97.5])
        result[count] = (float(rho), float(low), float(high))
        print("recalibration", count, result[count], flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--fidelity-plans", type=int, default=30)
    parser.add_argument("--fidelity-workload", default="fashion-cnn")
    parser.add_argument("--only-fidelity", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    arms = {
        "before: MetaPruner per trial, 2560 re-calibration, 256 calibration": (2560, 256, True),
        "after: graph once, 128 re-calibration, 64 calibration": (128, 64, False),
        "after: graph once, 32 re-calibration, 32 calibration": (32, 32, False),
    }
    counts = [32, 128, 512, 2560]
    ranks = fidelity(counts, args.fidelity_plans, args.fidelity_workload)
    if args.only_fidelity:
        return
    setup, results = cost(arms, args.trials)
    lines = [
        "# Proxy-trial cost on a bigger model",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}; `benchmarks/proxy_cost.py`.",
        "",
        f"EfficientNet-B0 (efficientnet-pytorch, random weights): {setup['params_m']:.2f}M parameters, "
        f"{setup['layers']} conv/linear layers, {setup['groups']} pruning groups ({setup['prunable_groups']} prunable); "
        f"dependency graph and groups analysed once in {setup['analyse_model_s']:.1f} s. "
        f"Median seconds per proxy trial over {args.trials} random plans (same plans in every arm):",
        "",
        "| arm | prune | BN re-calibration | divergence | total |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for arm, row in results.items():
        lines.append(f"| {arm} | {row['prune']:.2f} | {row['recalibrate']:.2f} | {row['divergence']:.2f} | {row['total']:.2f} |")
    lines += [
        "",
        f"Ranking kept with fewer re-calibration images ({args.fidelity_workload}, trained; {args.fidelity_plans} random plans; "
        "Spearman of the output divergence against the 2,560-image re-calibration, 95% bootstrap interval):",
        "",
        "| images | Spearman | interval |",
        "| ---: | ---: | --- |",
    ]
    for count, (rho, low, high) in ranks.items():
        lines.append(f"| {count} | {rho:+.3f} | [{low:+.3f}, {high:+.3f}] |")
    (ROOT / "docs" / "proxy-cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
