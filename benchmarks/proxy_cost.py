"""Benchmark: what one proxy trial costs on bigger models, by phase, and whether the cheaper trial keeps the
proxy's fidelity.

- Cost: an ImageNet-size CNN from a public wheel (EfficientNet-B0 from `efficientnet-pytorch`, 5.3M
  parameters, depthwise blocks in an nn.ModuleList, 224x224, random weights: timing only), random plans
  over its pruning groups and bits, every arm on the same plans, interleaved plan by plan:
  - before: torch-pruning's MetaPruner traced per trial, 2,560 re-calibration images, 256 calibration images;
  - recalibrate 32/32: dependency graph traced once, pruning replayed by index, 32 re-calibration images
    then 32 calibration images (two passes);
  - scoring batch N: BatchNorm statistics taken from the N calibration images in the scoring pass itself
    (`[recovery] search_batchnorm = "scoring_batch"`, one pass, channels-last).
- MiniLM: the phases of real proxy trials of `studies/minilm.toml` (ProxyScorer, as the search runs them).
- Fidelity: on trained models with BatchNorm (fashion-cnn, and the test zoo's depthwise-separable CNN),
  Spearman between each arm's output divergence and the plan's real accuracy drop (BatchNorm re-calibrated
  on 2,560 images, weights quantized, whole validation set), with a bootstrap interval.
- Recovery: distillation steps per second on this machine's CPU (and on CUDA when there is one).

    make benchmark-proxy      (installs efficientnet-pytorch; writes docs/proxy-cost.md)
"""

from __future__ import annotations

import argparse
import copy
import platform
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch_pruning as tp

from autotune.compress import (
    Recovery,
    RecoveryConfig,
    batchnorm_from_batches,
    distill,
    fake_quantize_weights,
    recalibrate_batchnorm,
)
from autotune.divergence import divergence
from autotune.layout import channels_last_holds
from autotune.plan import LayerChoice, Plan
from autotune.proxies import ProxyContext
from autotune.workloads import LabelledData, Workload, load_workload, top1_accuracy
from autotune.workloads.io import batch_size, take

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.metrics import resampled_spearman  # noqa: E402
from benchmarks.pages import write_page  # noqa: E402

RATIOS = (0.0, 0.25, 0.5)


@dataclass(frozen=True)
class Arm:
    """How one proxy trial gets its BatchNorm statistics and how many images it scores."""

    calibration: int
    recalibration: int = 0  # images of a separate re-calibration pass (0: statistics from the scoring pass)
    metapruner: bool = False  # the old pruning path: a MetaPruner traced per trial

    @property
    def scoring_batch(self) -> bool:
        return self.recalibration == 0


COST_ARMS = {
    "before: MetaPruner per trial, 2,560 re-calibration, 256 calibration": Arm(256, 2560, metapruner=True),
    "recalibrate 32, then score 32 (two passes)": Arm(32, 32),
    "scoring batch 64 (one pass)": Arm(64),
    "scoring batch 32 (one pass)": Arm(32),
    "scoring batch 16 (one pass)": Arm(16),
}
FIDELITY_ARMS = {
    "before: 2,560 re-calibration, 256 calibration": Arm(256, 2560),
    "recalibrate 32, then score 32": Arm(32, 32),
    "scoring batch 256": Arm(256),
    "scoring batch 64": Arm(64),
    "scoring batch 32": Arm(32),
    "scoring batch 16": Arm(16),
}


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


def random_plan(recovery: Recovery, rng: random.Random, bits: tuple[int, ...]) -> Plan:
    ratio = {g.root: rng.choice(RATIOS) for g in recovery.pruner.prunable}
    choices = {}
    for name in recovery.layers.layers:
        group = recovery.pruner.by_layer.get(name)
        prune = ratio.get(group.root, 0.0) if group is not None and not group.protected else 0.0
        choices[name] = LayerChoice(rng.choice(bits), prune)
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


def reference_outputs(recovery: Recovery, arm: Arm) -> torch.Tensor:
    """The teacher's outputs as the arm compares them (batch statistics for a scoring-batch arm)."""
    io, calibration = recovery.workload.io, take(recovery.workload.calibration, slice(0, arm.calibration))
    if arm.scoring_batch:
        with batchnorm_from_batches(copy.deepcopy(recovery.teacher)) as model:
            return io.run_batched(model, calibration)
    return io.run_batched(recovery.teacher, calibration)


def proxy_trial(recovery: Recovery, plan: Plan, arm: Arm, reference: torch.Tensor, layout: bool) -> tuple[float, dict]:
    """(output divergence, seconds per phase) of one proxy trial under the arm's recipe."""
    workload = recovery.workload
    seconds = {}
    started = time.perf_counter()
    if arm.metapruner:
        model = metapruner_prune(recovery.teacher, plan, workload.example_input, recovery.layers.outputs)
    else:
        model = recovery.pruned(plan)
    seconds["prune"] = time.perf_counter() - started
    started = time.perf_counter()
    if not arm.scoring_batch:
        recalibrate_batchnorm(model, workload.recovery, RecoveryConfig(batch_size=64, recalibration_samples=arm.recalibration))
    seconds["recalibrate"] = time.perf_counter() - started
    started = time.perf_counter()
    compressed = fake_quantize_weights(copy.deepcopy(model), plan)
    calibration = take(workload.calibration, slice(0, arm.calibration))
    if arm.scoring_batch:  # the code path the search runs
        context = ProxyContext(plan, compressed, model, recovery.teacher, calibration, reference, workload.io,
                               batchnorm_from_calibration=True, channels_last=layout)
        outputs = context.outputs
    else:
        outputs = workload.io.run_batched(compressed, calibration, 64)
    score = divergence(workload.io.output_kind, reference, outputs).item()
    seconds["score"] = time.perf_counter() - started
    seconds["total"] = sum(seconds.values())
    return score, seconds


def cost(trials: int) -> tuple[dict, dict]:
    workload = efficientnet_workload(max(a.recalibration for a in COST_ARMS.values()))
    started = time.perf_counter()
    recovery = Recovery(workload, RecoveryConfig())
    layout = channels_last_holds(recovery.teacher, workload.io, take(workload.calibration, slice(0, 2)))
    setup = {"analyse_model_s": time.perf_counter() - started, "groups": len(recovery.pruner.groups),
             "prunable_groups": len(recovery.pruner.prunable), "layers": len(recovery.layers.layers),
             "params_m": sum(p.numel() for p in recovery.teacher.parameters()) / 1e6}
    rng = random.Random(0)
    plans = [random_plan(recovery, rng, (8, 32)) for _ in range(trials)]
    references = {name: reference_outputs(recovery, arm) for name, arm in COST_ARMS.items()}
    rows: dict[str, list[dict]] = {name: [] for name in COST_ARMS}
    for index, plan in enumerate(plans):  # arms interleaved plan by plan: the machine's load drifts
        for name, arm in COST_ARMS.items():
            if arm.metapruner and index >= 2:
                continue  # minutes per trial: two plans show it
            rows[name].append(proxy_trial(recovery, plan, arm, references[name], layout)[1])
            print(name, {k: round(v, 2) for k, v in rows[name][-1].items()}, flush=True)
    results = {
        name: {k: (statistics.median(r[k] for r in found), min(r[k] for r in found), max(r[k] for r in found))
               for k in found[0]} | {"n": len(found)}
        for name, found in rows.items()
    }
    return setup, results


def spearman_interval(x: np.ndarray, y: np.ndarray, draws: int = 1000) -> tuple[float, float, float]:
    found = resampled_spearman(x, y, draws, percentiles=(2.5, 97.5))
    point = found["spearman"] if found["spearman"] is not None else float("nan")  # constant scores: no ranking
    return point, found["low"], found["high"]


def fidelity(workload: Workload, plans: int) -> dict:
    """Spearman of each arm's divergence against the plans' real accuracy drop (after full re-calibration)."""
    recovery = Recovery(workload, RecoveryConfig(channel_multiple=8))
    layout = channels_last_holds(recovery.teacher, workload.io, take(workload.calibration, slice(0, 2)))
    validation = workload.validation
    baseline = workload.metric(workload.io.run_batched(recovery.teacher, validation.inputs), validation.labels)
    references = {name: reference_outputs(recovery, arm) for name, arm in FIDELITY_ARMS.items()}
    rng = random.Random(1)
    sample = [random_plan(recovery, rng, (4, 8, 32)) for _ in range(plans)]
    drops, scores = [], {name: [] for name in FIDELITY_ARMS}
    for plan in sample:
        model = recovery.pruned(plan)
        recalibrate_batchnorm(model, workload.recovery, RecoveryConfig(recalibration_samples=2560))
        compressed = fake_quantize_weights(model, plan)
        accuracy = workload.metric(workload.io.run_batched(compressed, validation.inputs), validation.labels)
        drops.append(100 * (baseline - accuracy))
        for name, arm in FIDELITY_ARMS.items():
            scores[name].append(proxy_trial(recovery, plan, arm, references[name], layout)[0])
    truth = np.asarray(drops)
    print(workload.name, "accuracy drops (points):", np.round(truth, 1).tolist(), flush=True)
    before = np.asarray(scores[next(iter(FIDELITY_ARMS))])
    result = {}
    for name, values in scores.items():
        values = np.asarray(values)
        result[name] = {"truth": spearman_interval(values, truth), "before": spearman_interval(values, before)}
        print(workload.name, name, result[name], flush=True)
    return {"arms": result, "baseline": baseline, "drops": (float(truth.min()), float(np.median(truth)), float(truth.max()))}


def minilm_phases(trials: int) -> dict:
    """Seconds per phase of real MiniLM proxy trials (the ProxyScorer of studies/minilm.toml)."""
    from autotune.context import prepare
    from autotune.scoring import ProxyScorer
    from autotune.spec import load_study_spec

    started = time.perf_counter()
    context = prepare(load_study_spec("minilm"))
    scorer = ProxyScorer(context)
    scorer.reference_outputs()
    setup = time.perf_counter() - started
    rng = random.Random(2)
    rows = []
    for _ in range(trials):
        plan = random_plan(context.recovery, rng, (4, 8, 32))
        plan = Plan({n: LayerChoice(c.bits if context.layer_kinds[n] != "embedding" or c.bits != 4 else 8, c.prune)
                     for n, c in plan.layers.items()})
        started = time.perf_counter()
        scorer.score(plan, 0)
        rows.append(scorer.last_seconds | {"total": time.perf_counter() - started})
        print("minilm", {k: round(v, 3) for k, v in rows[-1].items()}, flush=True)
    phases = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    return {"setup_s": setup, "phases": phases, "samples": batch_size(context.calibration)}


def distill_rate(workload: Workload, steps: int, batch: int, device: str) -> float:
    recovery = Recovery(workload, RecoveryConfig(batch_size=batch, device=device))
    ratios = {g.root: 0.25 for g in recovery.pruner.prunable}
    student = recovery.pruner.apply(ratios).to(device)
    teacher = copy.deepcopy(recovery.teacher).to(device)
    config = RecoveryConfig(batch_size=batch, device=device)
    distill(student, teacher, workload, 1, config)  # warm-up (allocations, kernels)
    started = time.perf_counter()
    distill(student, teacher, workload, steps, config)
    if device == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - started)


def recovery_rates() -> list[tuple[str, int, str, float]]:
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    cases = [("fashion-cnn", lambda: load_workload("fashion-cnn"), 128, 20),
             ("minilm", lambda: load_workload("minilm"), 16, 4),
             ("efficientnet-b0 (224x224)", lambda: efficientnet_workload(256), 32, 3)]
    rows = []
    for name, make, batch, steps in cases:
        workload = make()
        for device in devices:
            rate = distill_rate(workload, steps if device == "cpu" else 10 * steps, batch, device)
            rows.append((name, batch, device, rate))
            print("distillation", name, batch, device, round(rate, 2), "steps/s", flush=True)
    return rows


def _cell(values: tuple[float, float, float]) -> str:
    median, low, high = values
    return f"{median:.2f} ({low:.2f}-{high:.2f})"


def report(args, setup, results, fidelities, minilm, rates) -> str:
    lines = [
        "# Proxy-trial cost on bigger models",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `make benchmark-proxy` (`benchmarks/proxy_cost.py`) on "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}. "
        "Shared machine: compare rows within one run, not across runs.",
        "",
        "## One proxy trial on EfficientNet-B0, by phase",
        "",
        f"efficientnet-pytorch, random weights (timing only): {setup['params_m']:.2f}M parameters, {setup['layers']} "
        f"conv/linear layers, {setup['groups']} pruning groups ({setup['prunable_groups']} prunable), 224x224. The "
        f"dependency graph and groups are analysed once per model ({setup['analyse_model_s']:.1f} s). Random plans "
        "(group ratios 0 / 0.25 / 0.5, bits 8 / 32), the same plans in every arm, arms interleaved plan by plan. "
        "Seconds, median (min-max):",
        "",
        "| arm | plans | prune | BN re-calibration | quantize + score | total |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in results.items():
        lines.append(f"| {name} | {row['n']} | {_cell(row['prune'])} | {_cell(row['recalibrate'])} | "
                     f"{_cell(row['score'])} | **{_cell(row['total'])}** |")
    lines += [
        "",
        "\"Scoring batch\" is `[recovery] search_batchnorm = \"scoring_batch\"` in a study spec: the pruned model "
        "normalises each calibration batch with that batch's own statistics, so one forward pass both re-calibrates "
        "BatchNorm and scores the plan (the FP32 reference is computed the same way, so an unpruned FP32 plan scores "
        "0). Image models also run channels-last in the proxy pass.",
        "",
        "## Fidelity: does the cheaper trial rank plans as well?",
        "",
        f"{args.fidelity_plans} random plans per model (group ratios 0 / 0.25 / 0.5, bits 4 / 8 / 32). Truth: the "
        "plan's top-1 accuracy drop on the validation set after re-calibrating BatchNorm on 2,560 images (what the "
        "search-stage proxy stands for). Spearman of each arm's output divergence against the truth, and against the "
        "before arm, with 95% bootstrap intervals (1,000 resamples):",
        "",
        "| model | arm | vs accuracy drop | vs before |",
        "| --- | --- | --- | --- |",
    ]
    for model, found in fidelities.items():
        for name, row in found["arms"].items():
            truth, before = row["truth"], row["before"]
            lines.append(f"| {model} | {name} | {truth[0]:+.3f} [{truth[1]:+.3f}, {truth[2]:+.3f}] | "
                         f"{before[0]:+.3f} [{before[1]:+.3f}, {before[2]:+.3f}] |")
    lines.append("")
    for model, found in fidelities.items():
        low, median, high = found["drops"]
        lines.append(f"- {model}: FP32 accuracy {found['baseline']:.4f}; plan drops {low:.1f} / {median:.1f} / "
                     f"{high:.1f} points (min / median / max).")
    if minilm:
        phases = minilm["phases"]
        lines += [
            "",
            "## One proxy trial on MiniLM, by phase",
            "",
            f"`studies/minilm.toml` as the search runs it ({minilm['samples']} calibration sentences x 256 tokens, "
            f"no BatchNorm, so nothing to re-calibrate); model analysis and FP32 reference once: {minilm['setup_s']:.1f} s. "
            "Median seconds over random plans (heads, FFN neurons, bits 4 / 8 / 32):",
            "",
            "| phase | seconds |",
            "| --- | ---: |",
        ]
        for phase, value in phases.items():
            lines.append(f"| {phase} | {value:.3f} |")
    if rates:
        lines += [
            "",
            "## Recovery: distillation steps per second",
            "",
            "A quarter of every prunable group's channels removed; student forward + backward, teacher forward.",
            "",
            "| model | batch | device | steps/s |",
            "| --- | ---: | --- | ---: |",
        ]
        for name, batch, device, rate in rates:
            lines.append(f"| {name} | {batch} | {device} | {rate:.2f} |")
        if not torch.cuda.is_available():
            lines.append("\nNo GPU on this machine: `[recovery] device = \"auto\"` runs proxies and recovery on CUDA "
                         "where there is one.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--fidelity-plans", type=int, default=30)
    parser.add_argument("--only-fidelity", action="store_true")
    parser.add_argument("--output", default=str(ROOT / "docs" / "proxy-cost.md"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    sys.path.insert(0, str(ROOT / "tests"))
    from zoo import depthwise_cnn  # the test zoo's trained depthwise-separable CNN (not ours in shape)

    fidelities = {
        "fashion-cnn": fidelity(load_workload("fashion-cnn"), args.fidelity_plans),
        "zoo depthwise CNN": fidelity(depthwise_cnn(), args.fidelity_plans),
    }
    setup, results, minilm, rates = {}, {}, {}, []
    if not args.only_fidelity:
        minilm = minilm_phases(args.trials)
        setup, results = cost(args.trials)
        rates = recovery_rates()
    text = report(args, setup, results, fidelities, minilm, rates) if results else str(fidelities)
    if results:
        write_page(args.output, text)
    print(text)


if __name__ == "__main__":
    main()
