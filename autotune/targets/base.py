"""The target protocol: build(model, plan) -> artifact on disk; evaluate; measure."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from torch import nn

from autotune.errors import TargetError
from autotune.layers import ModelLayers
from autotune.plan import FLOAT_BITS, HALF_PRECISION_BITS, Plan
from autotune.targets.measure import summarise, time_calls
from autotune.workloads import LabelledData
from autotune.workloads.io import Inputs, ModelIO, repeat_first


@dataclass(frozen=True)
class BuildContext:
    """What a target needs besides the weights: the layers (and how to find them), how the model is
    called and read, and calibration inputs for static quantization."""

    layers: ModelLayers
    io: ModelIO
    calibration: Inputs
    # The artifact is only timed (latency tables, latency benchmarks): a target may skip steps that change its values
    # but not the compiled graph (OpenVINO: bias correction). Latency does not depend on the weights.
    timing_only: bool = False


@dataclass(frozen=True)
class Artifact:
    """A built, verified compressed model on disk and what it really is."""

    target: str
    directory: Path
    files: tuple[Path, ...]
    plan: Plan
    realised_precision: dict[str, str]  # layer -> precision the runtime really executes
    channels: dict[str, int]  # layer -> output channels after pruning
    io: ModelIO = field(default_factory=ModelIO)

    @property
    def size_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.files)


@dataclass(frozen=True)
class Measurement:
    latency_p50_ms: float
    latency_p95_ms: float
    latency_spread: float  # interquartile range / median at batch 1: how stable the p50 is
    latency_repeats: int
    throughput_batch: int
    batch_latency_ms: float
    throughput_per_s: float
    size_mb: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class Target:
    """Base of every runtime target. Subclasses set `backend` and implement build/predict/timer."""

    backend: ClassVar[str] = ""

    def __init__(self, spec) -> None:
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.name

    @classmethod
    def check_options(cls, fields) -> None:
        """Validate the hardware file's [options] table; the default accepts none."""
        fields.reject_unknown()

    def resolved_options(self) -> dict:
        """The hardware file's [options] as this machine builds them: a target whose options may say "auto" replaces
        it with what it resolved to (recipes record these: the same file builds differently on another CPU)."""
        return dict(self.spec.options)

    @classmethod
    def native_half(cls, options: dict) -> tuple[str | None, str]:
        """The 16-bit float format this machine runs natively for `half = "auto"` ("bf16", "f16"), or None and why."""
        return None, f"backend {cls.backend!r} has no 16-bit float path"

    def runtime_float_default(self) -> str | None:
        """The float precision this runtime picks on this machine when not told (OpenVINO: bf16 on AMX CPUs)."""
        return "f32"

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """Whether this machine can run the target, and why not."""
        return True, ""

    def cpu_variant(self) -> Target | None:
        """This target built for the CPU, when the configured device is absent; None if it has none."""
        return None

    def check_plan(self, plan: Plan, layers: ModelLayers) -> None:
        layers.validate(plan.layers)
        layer_kinds = layers.kinds
        for name, choice in plan.layers.items():
            if not self.spec.supports(layer_kinds[name], choice.bits):
                raise TargetError(
                    f"target {self.name!r} cannot run {layer_kinds[name]} layer {name!r} at {choice.bits} bits "
                    f"(it realises {self.spec.realises(layer_kinds[name])})"
                )
        if not self.spec.float_per_layer:
            # Only kinds the one precision governs: a kind with no 16-bit form (OpenVINO's Gather) stays at 32 anyway.
            governed = [name for name, kind in layer_kinds.items() if self.spec.supports(kind, HALF_PRECISION_BITS)]
            floats = {plan.choice(name).bits for name in governed} & set(FLOAT_BITS)
            if len(floats) > 1:
                raise TargetError(
                    f"target {self.name!r} runs every floating-point layer of a model at one precision; "
                    f"this plan mixes {sorted(floats)} bits"
                )

    def build(self, model: nn.Module, plan: Plan, context: BuildContext, directory: Path) -> Artifact:
        raise NotImplementedError

    def predict(self, artifact: Artifact, inputs: Inputs, batch_size: int = 256) -> np.ndarray:
        """The selected output of the whole input set, as numpy."""
        raise NotImplementedError

    def server(self, artifact: Artifact):
        """A callable answering one request (any inputs) the way a server would: loaded and set up once."""
        return lambda inputs: self.predict(artifact, inputs)

    def runner(self, artifact: Artifact, batch: Inputs):
        """A zero-argument callable that runs the artifact once on `batch` (set-up done beforehand)."""
        raise NotImplementedError

    def time_with(self, call, settings) -> np.ndarray:
        """Milliseconds per call by the shared protocol; a GPU target times with device events instead."""
        return time_calls(call, settings)

    def measure(self, artifact: Artifact, example_input: Inputs) -> Measurement:
        """Latency at the latency batch and throughput at the throughput batch, by the shared protocol."""

        def timed(batch: int) -> dict[str, float]:
            data = repeat_first(example_input, batch)
            return summarise(self.time_with(self.runner(artifact, data), self.spec.measure))

        single = timed(self.spec.latency_batch)
        batched = timed(self.spec.throughput_batch)
        return Measurement(
            latency_p50_ms=single["p50"],
            latency_p95_ms=single["p95"],
            latency_spread=single["spread"],
            latency_repeats=single["repeats"],
            throughput_batch=self.spec.throughput_batch,
            batch_latency_ms=batched["p50"],
            throughput_per_s=self.spec.throughput_batch / batched["p50"] * 1e3,
            size_mb=artifact.size_bytes / 1e6,
            extra={"batch_latency_spread": batched["spread"]},
        )

    def evaluate(self, artifact: Artifact, data: LabelledData, metric) -> float:
        outputs = self.predict(artifact, data.inputs)
        if not np.all(np.isfinite(outputs)):
            raise TargetError(f"target {self.name!r}: the built model produced non-finite outputs")
        return float(metric(outputs, data.labels_numpy()))
