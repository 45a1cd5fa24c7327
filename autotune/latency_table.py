"""Per-layer latency tables measured in context on a target's real runtime, cached on disk.

The whole network is built and timed at the target's throughput batch once as a base plan (INT8
where the target runs it, else FP32); then, for every layer, each precision the target realises
and an unpruned and a half-pruned width, the same network with only that layer changed. A plan's
latency is estimated as base x the product of its layers' measured ratios to the base (pruning
interpolated in log space): each saving applies to what is left, so estimates stay positive where a
sum of deltas would cross zero.
Measuring in context, rather than each layer alone, keeps the costs that only exist inside a
network: precision conversions at the boundaries of an FP32 layer, fused activations, the
consumers of a pruned layer reading fewer channels.
"""

from __future__ import annotations

import copy
import hashlib
import json
import tempfile
from pathlib import Path

import joblib
import numpy as np
import torch
from torch import nn

from autotune.compress import output_layers, prunable_layers, prune
from autotune.paths import cache_dir, workspace
from autotune.plan import LayerChoice, Plan
from autotune.progress import progress_bar
from autotune.spec import HardwareSpec, MeasureSettings
from autotune.targets.measure import summarise

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
    model: nn.Module,
    calibration: torch.Tensor,
) -> float:
    """Build the whole model for `plan` on the target and time one throughput batch (cached on disk)."""
    from autotune.targets import make_target

    plan = Plan.from_json(plan_json)
    pruned = prune(copy.deepcopy(model), plan, calibration[:1], channel_multiple)
    target = make_target(spec)
    builds = workspace() / "builds"
    builds.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=builds) as folder:
        artifact = target.build(pruned, plan, calibration, Path(folder))
        batch = np.repeat(calibration[:1].numpy(), spec.throughput_batch, axis=0)
        runner = target.runner(artifact, batch)
        return summarise(target.time_with(runner, PROBE_MEASURE))["p50"]


class LatencyTable:
    """Base latency of a throughput batch and in-context ratios to it per (layer, bits, pruning)."""

    def __init__(
        self, spec: HardwareSpec, model: nn.Module, calibration: torch.Tensor, channel_multiple: int = 1
    ) -> None:
        self.spec = spec
        kinds = prunable_layers(model)
        protected = output_layers(model, calibration)
        self.base = Plan({name: LayerChoice(8 if spec.supports(kind, 8) else 32) for name, kind in kinds.items()})
        probes: list[tuple[str, int, float]] = []
        for name, kind in kinds.items():
            for bits in spec.weight_bits[kind]:
                for ratio in (0.0,) if name in protected else (0.0, PROBE_PRUNE):
                    if (bits, ratio) != (self.base.choice(name).bits, 0.0):
                        probes.append((name, bits, ratio))
        memory = joblib.Memory(cache_dir("latency"), verbose=0)
        measure = memory.cache(_plan_latency_ms, ignore=["spec", "model", "calibration"])
        identity, architecture = _target_identity(spec), architecture_key(model)
        samples = calibration[:32]

        def timed(plan: Plan) -> float:
            return measure(identity, architecture, plan.to_json(), channel_multiple, spec, model, samples)

        with progress_bar() as progress:
            task = progress.add_task(f"latency table on {spec.name}", total=len(probes) + 1)
            self.base_ms = timed(self.base)
            progress.update(task, advance=1)
            self.log_ratios: dict[tuple[str, int, float], float] = {}
            for name, bits, ratio in probes:
                changed = Plan(dict(self.base.layers) | {name: LayerChoice(bits, ratio)})
                self.log_ratios[(name, bits, ratio)] = float(np.log(timed(changed) / self.base_ms))
                progress.update(task, advance=1)

    def estimate_ms(self, plan: Plan) -> float:
        """Estimated latency of one throughput batch: base x each layer's measured ratio for its choice."""
        log_total = 0.0
        for name in self.base.layers:
            choice = plan.choice(name)
            unpruned = self.log_ratios.get((name, choice.bits, 0.0), 0.0)
            log_total += unpruned
            half = self.log_ratios.get((name, choice.bits, PROBE_PRUNE))
            if choice.prune > 0 and half is not None:
                log_total += (half - unpruned) * choice.prune / PROBE_PRUNE
        return self.base_ms * float(np.exp(log_total))
