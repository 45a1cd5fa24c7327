"""Per-layer latency tables measured in context on a target's real runtime, cached on disk.

The whole network is built and timed at the target's throughput batch once as a base plan (INT8
where the target runs it, else FP32); then the same network with only one thing changed: one layer
at each other precision the target realises, or one pruning group at half its width. A plan's
latency is estimated as base x the product of its layers' measured ratios to the base (pruning
interpolated in log space): each saving applies to what is left, so estimates stay positive where a
sum of deltas would cross zero.
Measuring in context, rather than each layer alone, keeps the costs that only exist inside a
network: precision conversions at the boundaries of an FP32 layer, fused activations, the
consumers of a pruned layer reading fewer channels.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import joblib
import numpy as np
from torch import nn

from autotune.paths import cache_dir, workspace
from autotune.plan import LayerChoice, Plan
from autotune.progress import progress_bar
from autotune.pruning import GroupPruner
from autotune.spec import HardwareSpec, MeasureSettings
from autotune.targets.base import BuildContext
from autotune.targets.measure import summarise
from autotune.workloads.io import repeat_first, take

PROBE_PRUNE = 0.5
PROBE_MEASURE = MeasureSettings(warmup=5, min_repeats=30, min_seconds=0.3, max_repeats=1000)


def architecture_key(model: nn.Module) -> str:
    """Identity of a model's shapes: latency depends on them, not on the weights."""
    shapes = [(name, tuple(p.shape)) for name, p in model.state_dict().items()]
    return hashlib.sha256(repr(shapes).encode()).hexdigest()[:16]


def _target_identity(spec: HardwareSpec) -> str:
    fields = {"backend": spec.backend, "threads": spec.threads, "batch": spec.throughput_batch, "options": spec.options}
    return json.dumps(fields, sort_keys=True)


def _plan_latency_ms(
    target_json: str,
    architecture: str,
    plan_json: str,
    channel_multiple: int,
    spec: HardwareSpec,
    pruner: GroupPruner,
    build: BuildContext,
) -> float:
    """Build the whole model for `plan` on the target and time one throughput batch (cached on disk)."""
    from autotune.targets import make_target

    plan = Plan.from_json(plan_json)
    pruned = pruner.prune(plan, channel_multiple)
    target = make_target(spec)
    builds = workspace() / "builds"
    builds.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=builds) as folder:
        artifact = target.build(pruned, plan, build, Path(folder))
        runner = target.runner(artifact, repeat_first(build.calibration, spec.throughput_batch))
        return summarise(target.time_with(runner, PROBE_MEASURE))["p50"]


class LatencyTable:
    """Base latency of a throughput batch and in-context ratios to it per (layer, bits) and per pruned group."""

    def __init__(self, spec: HardwareSpec, pruner: GroupPruner, build: BuildContext, channel_multiple: int = 1) -> None:
        self.spec = spec
        kinds = build.layers.kinds
        self.base = Plan({name: LayerChoice(8 if spec.supports(kind, 8) else 32) for name, kind in kinds.items()})
        bit_probes = [
            (name, bits) for name, kind in kinds.items() for bits in spec.weight_bits.get(kind, (32,))
            if bits != self.base.choice(name).bits
        ]
        groups = pruner.prunable
        memory = joblib.Memory(cache_dir("latency"), verbose=0)
        measure = memory.cache(_plan_latency_ms, ignore=["spec", "pruner", "build"])
        identity, architecture = _target_identity(spec), architecture_key(pruner.teacher)
        samples = BuildContext(build.layers, build.io, take(build.calibration, slice(0, 32)))

        def timed(plan: Plan) -> float:
            return measure(identity, architecture, plan.to_json(), channel_multiple, spec, pruner, samples)

        with progress_bar() as progress:
            task = progress.add_task(f"latency table on {spec.name}", total=len(bit_probes) + len(groups) + 1)
            self.base_ms = timed(self.base)
            progress.update(task, advance=1)
            self.log_ratios: dict[tuple[str, int], float] = {}
            for name, bits in bit_probes:
                changed = Plan(dict(self.base.layers) | {name: LayerChoice(bits)})
                self.log_ratios[(name, bits)] = float(np.log(timed(changed) / self.base_ms))
                progress.update(task, advance=1)
            self.log_prune_ratios: dict[str, float] = {}
            for group in groups:
                changed = Plan(
                    dict(self.base.layers)
                    | {m: LayerChoice(self.base.choice(m).bits, PROBE_PRUNE) for m in group.layers}
                )
                self.log_prune_ratios[group.root] = float(np.log(timed(changed) / self.base_ms))
                progress.update(task, advance=1)
        self.group_of = {m: g.root for g in groups for m in g.layers}

    def estimate_ms(self, plan: Plan) -> float:
        """Estimated latency of one throughput batch: base x each layer's measured ratio for its bits x each
        pruned group's measured ratio, interpolated in log space by its ratio."""
        log_total = 0.0
        for name in self.base.layers:
            log_total += self.log_ratios.get((name, plan.choice(name).bits), 0.0)
        for root, log_ratio in self.log_prune_ratios.items():
            log_total += log_ratio * plan.choice(root).prune / PROBE_PRUNE
        return self.base_ms * float(np.exp(log_total))
