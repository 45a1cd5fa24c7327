"""Per-layer latency tables measured on a target's real runtime, cached on disk.

Each conv/linear layer is rebuilt alone (same kernel, stride, input size) at full width and at half
width, for each weight precision the search may choose, compiled by the target exactly as a full
model would be, and timed at the target's throughput batch by the shared protocol. A layer's
latency is then fitted as fixed cost + cost per MAC, so any pruned width can be estimated.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import joblib
import numpy as np
import torch
from torch import nn

from autotune.compress import trace_layers
from autotune.paths import cache_dir, workspace
from autotune.plan import LayerChoice, Plan
from autotune.progress import progress_bar
from autotune.spec import HardwareSpec, MeasureSettings
from autotune.targets.measure import summarise, time_calls

PROBE_WIDTHS = (1.0, 0.5)
PROBE_MEASURE = MeasureSettings(warmup=5, min_repeats=20, min_seconds=0.2, max_repeats=500)


@dataclass(frozen=True)
class LayerGeometry:
    """Everything that decides a layer's cost on a runtime, independent of its weights."""

    kind: str
    in_channels: int
    out_channels: int
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    input_hw: tuple[int, int] = (1, 1)

    def scaled(self, keep: float) -> LayerGeometry:
        def width(channels: int) -> int:
            return max(self.groups, int(round(channels * keep / self.groups)) * self.groups)

        return LayerGeometry(
            self.kind,
            width(self.in_channels),
            width(self.out_channels),
            self.kernel,
            self.stride,
            self.padding,
            self.groups,
            self.input_hw,
        )

    def module(self) -> nn.Module:
        if self.kind == "conv":
            return nn.Conv2d(
                self.in_channels, self.out_channels, self.kernel, self.stride, self.padding, groups=self.groups
            )
        return nn.Linear(self.in_channels, self.out_channels)

    def input_shape(self) -> tuple[int, ...]:
        return (self.in_channels, *self.input_hw) if self.kind == "conv" else (self.in_channels,)

    def macs(self) -> int:
        probe = self.module()
        with torch.no_grad():
            out = probe(torch.zeros(1, *self.input_shape()))
        if self.kind == "conv":
            return out[0].numel() * self.in_channels // self.groups * self.kernel[0] * self.kernel[1]
        return self.in_channels * self.out_channels


def layer_geometries(model: nn.Module, example_input: torch.Tensor) -> dict[str, LayerGeometry]:
    found: dict[str, LayerGeometry] = {}

    def record(name: str, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            found[name] = LayerGeometry(
                "conv",
                module.in_channels,
                module.out_channels,
                tuple(module.kernel_size),
                tuple(module.stride),
                tuple(module.padding),
                module.groups,
                tuple(inputs[0].shape[-2:]),
            )
        else:
            found[name] = LayerGeometry("linear", module.in_features, module.out_features)

    trace_layers(model, example_input, record)
    return found


class _Probe(nn.Module):
    """A one-layer model; its layer is named `layer` so targets find it like any other."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


def _target_identity(spec: HardwareSpec) -> str:
    fields = {"backend": spec.backend, "threads": spec.threads, "batch": spec.throughput_batch, "options": spec.options}
    return json.dumps(fields, sort_keys=True)


def _probe_latency_ms(target_json: str, geometry_json: str, bits: int, spec: HardwareSpec) -> float:
    """Build one layer at `bits` on the target and time it at the throughput batch (cached on disk)."""
    from autotune.targets import make_target

    geometry = LayerGeometry(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(geometry_json).items()}
    )
    torch.manual_seed(0)
    probe = _Probe(geometry.module()).eval()
    calibration = torch.randn(32, *geometry.input_shape())
    target = make_target(spec)
    builds = workspace() / "builds"
    builds.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=builds) as folder:
        artifact = target.build(probe, Plan({"layer": LayerChoice(bits)}), calibration, Path(folder))
        batch = np.repeat(calibration[:1].numpy(), spec.throughput_batch, axis=0)
        return summarise(time_calls(target.runner(artifact, batch), PROBE_MEASURE))["p50"]


@dataclass(frozen=True)
class LayerCost:
    fixed_ms: float
    per_mac_ms: float


class LatencyTable:
    """Per (layer, bits): fixed cost + cost per MAC on one target, from measured probes."""

    def __init__(self, spec: HardwareSpec, geometries: dict[str, LayerGeometry]) -> None:
        self.spec = spec
        memory = joblib.Memory(cache_dir("latency"), verbose=0)
        probe = memory.cache(_probe_latency_ms, ignore=["spec"])
        # Every precision the target realises for the layer's kind: a superset of what a search may pick.
        bits = {name: spec.weight_bits[geometry.kind] for name, geometry in geometries.items()}
        jobs = [(name, b, keep) for name in geometries for b in bits[name] for keep in PROBE_WIDTHS]
        measured: dict[tuple[str, int, float], tuple[int, float]] = {}
        with progress_bar() as progress:
            task = progress.add_task(f"latency table on {spec.name}", total=len(jobs))
            for name, b, keep in jobs:
                geometry = geometries[name].scaled(keep)
                latency = probe(_target_identity(spec), json.dumps(asdict(geometry)), b, spec)
                measured[(name, b, keep)] = (geometry.macs(), latency)
                progress.update(task, advance=1)
        self.costs: dict[tuple[str, int], LayerCost] = {}
        for name in geometries:
            for b in bits[name]:
                (macs_full, ms_full), (macs_half, ms_half) = (measured[(name, b, k)] for k in PROBE_WIDTHS)
                per_mac = max(0.0, (ms_full - ms_half) / max(1, macs_full - macs_half))
                self.costs[(name, b)] = LayerCost(max(0.0, ms_full - per_mac * macs_full), per_mac)

    def estimate_ms(self, plan: Plan, macs: dict[str, int]) -> float:
        """Estimated latency of one throughput batch for `plan` whose pruned layers have `macs` per sample."""
        total = 0.0
        for name, layer_macs in macs.items():
            cost = self.costs[(name, plan.choice(name).bits)]
            total += cost.fixed_ms + cost.per_mac_ms * layer_macs  # probes timed the whole batch
        return total
