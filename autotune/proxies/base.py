"""The proxy protocol and the context a proxy reads (the compressed model, the teacher's outputs)."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import torch
from torch import nn

from autotune.compress import batchnorm_from_batches
from autotune.errors import AutotuneError, ProxyError
from autotune.layers import trace_layers
from autotune.layout import channels_last
from autotune.plan import Plan
from autotune.workloads.io import Inputs, ModelIO, take, to_device


@dataclass(frozen=True)
class LayerStats:
    params: int  # weight + bias elements
    macs: int  # multiply-accumulates for one input sample


def layer_stats(model: nn.Module, io: ModelIO, example: Inputs) -> dict[str, LayerStats]:
    """Parameters and MACs per layer, measured by running one sample through the model."""
    stats: dict[str, LayerStats] = {}

    def record(name: str, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        params = sum(p.numel() for p in module.parameters(recurse=False))
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            macs = output[0].numel() * per_output
        elif isinstance(module, nn.Linear):
            macs = output[0].numel() * module.in_features  # every position of a sequence
        else:
            macs = 0  # an embedding is a lookup
        previous = stats.get(name)
        stats[name] = LayerStats(params, macs + (previous.macs if previous else 0))  # a module called twice

    trace_layers(model, io, take(example, slice(0, 1)), record)
    return stats


@dataclass
class ProxyContext:
    """What a proxy may look at for one plan. Model outputs are computed once, on first use."""

    plan: Plan
    compressed: nn.Module  # pruned, recovered, weights fake-quantized
    recovered: nn.Module  # pruned and recovered, full-precision weights
    reference: nn.Module  # the FP32 model
    calibration: Inputs
    reference_outputs: torch.Tensor  # the FP32 model's selected outputs on the calibration inputs
    io: ModelIO = ModelIO()
    channel_multiple: int = 1  # how pruning rounds channels, for proxies that prune models themselves
    pruner: Any = None  # the model's GroupPruner, for proxies that build pruned models themselves
    build: Any = None  # the targets' BuildContext, for proxies that build on a runtime
    prune_ratios: dict[str, tuple[float, ...]] | None = None  # per group root, the search space's ratios
    layer_bits: dict[str, tuple[int, ...]] | None = None  # per layer, the search space's bit-widths
    space: Any = None  # the study's SearchSpace, for proxies that draw plans from it (a latency table's check)
    device: str = "cpu"  # where the compressed model runs for output-based proxies
    # BatchNorm statistics come from the calibration batches in the scoring pass itself (the compressed
    # model was pruned but not re-calibrated): one forward pass scores the plan.
    batchnorm_from_calibration: bool = False
    channels_last: bool = False  # run the proxy pass channels-last (see channels_last_holds)

    @cached_property
    def outputs(self) -> torch.Tensor:
        model, inputs = self.compressed, self.calibration
        if self.device != "cpu":
            model, inputs = copy.deepcopy(model).to(self.device), to_device(inputs, self.device)
        if self.channels_last:
            model, inputs = channels_last(model, inputs)
        if self.batchnorm_from_calibration:
            with batchnorm_from_batches(model):
                outputs = self.io.run_batched(model, inputs)
        else:
            outputs = self.io.run_batched(model, inputs)
        return outputs.cpu()

    @cached_property
    def stats(self) -> dict[str, LayerStats]:
        return layer_stats(self.recovered, self.io, self.calibration)

    @cached_property
    def reference_stats(self) -> dict[str, LayerStats]:
        return layer_stats(self.reference, self.io, self.calibration)

    @cached_property
    def other_params(self) -> int:
        """Parameters outside the layers (BatchNorm, LayerNorm, ...), kept in FP32 by every target."""
        total = sum(p.numel() for p in self.recovered.parameters())
        return total - sum(s.params for s in self.stats.values())


class Proxy:
    """A cheap metric of a plan; lower is better. Subclasses set `name` and `unit` and implement `compute`."""

    name: ClassVar[str] = ""
    unit: ClassVar[str] = ""
    description: ClassVar[str] = ""
    per_target: ClassVar[bool] = False  # one instance (and objective) per study target, `name@target`
    output_kinds: ClassVar[tuple[str, ...] | None] = None  # output kinds it applies to (None: any)
    # `compute` reads the plan and the build settings only (no model): it can score plans no trial has built.
    plan_only: ClassVar[bool] = False

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        self.settings = settings or {}

    @classmethod
    def check_settings(cls, fields) -> None:
        """Validate this proxy's table in a recipe; the default accepts none."""
        fields.reject_unknown()

    def compute(self, context: ProxyContext) -> float:
        raise NotImplementedError

    def __call__(self, context: ProxyContext) -> float:
        unknown = sorted(set(context.plan.layers) - set(context.stats))
        if unknown:  # a plan for another model is an error, for every proxy
            raise ProxyError(f"plan names unknown layer(s) {unknown}; the model has {sorted(context.stats)}")
        try:
            value = float(self.compute(context))
        except AutotuneError:  # a target that cannot build, a bad plan: deterministic, not this trial's bad luck
            raise
        except Exception as exc:
            raise ProxyError(f"proxy {self.name!r} raised {type(exc).__name__}: {exc}") from exc
        if not math.isfinite(value):
            raise ProxyError(f"proxy {self.name!r} returned {value} for plan {context.plan.describe()}")
        return value
