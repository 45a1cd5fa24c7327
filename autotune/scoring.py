"""Scores a plan with the recipe's proxies after a recovery of a given budget."""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable

import torch

from autotune.compress import activation_ranges, batchnorm_from_batches, fake_quantize_weights, quantize_activations
from autotune.context import StudyContext
from autotune.errors import SpecError
from autotune.layout import channels_last_holds
from autotune.plan import Plan
from autotune.proxies import Proxy, ProxyContext, registered_proxies
from autotune.spec import HardwareSpec
from autotune.workloads.io import take


def _instances(name: str, settings: dict, targets: tuple[HardwareSpec, ...]) -> list[tuple[str, Proxy]]:
    """A per-target proxy becomes one metric per study target, named `name@target`."""
    cls = registered_proxies()[name]
    if not cls.per_target:
        return [(name, cls(settings))]
    return [(f"{name}@{t.name}", cls(settings | {"target": t})) for t in targets]


class ProxyScorer:
    def __init__(self, context: StudyContext) -> None:
        self.context = context
        recipe = context.spec.proxies
        self.proxies: dict[str, Proxy] = {}
        self.objectives: list[str] = []
        output_kind = context.workload.io.output_kind
        for name in recipe.metrics:
            kinds = registered_proxies()[name].output_kinds
            if kinds is not None and output_kind not in kinds:
                if name in recipe.objectives:
                    raise SpecError(
                        f"{recipe.path}: objective {name!r} reads {list(kinds)} outputs, but workload "
                        f"{context.workload.name!r} gives {output_kind!r}; use output_divergence"
                    )
                continue  # a reported metric that does not apply to this output is left out, not an error
            for metric, proxy in _instances(name, recipe.settings.get(name, {}), context.spec.targets):
                self.proxies[metric] = proxy
                if name in recipe.objectives:
                    self.objectives.append(metric)
        self.reference = context.recovery.teacher
        example = take(context.calibration, slice(0, 2))
        self.channels_last = channels_last_holds(self.reference, context.workload.io, example)
        self._reference_outputs: dict[bool, torch.Tensor] = {}
        self._activation_ranges: dict[str, tuple[float, float]] | None = None

        self.last_seconds: dict[str, float] = {}
        self.history_until: float | None = None  # see learn_latency_until

    def learn_latency_until(self, until: float) -> None:
        """Latency proxies learn only from plans measured before `until` (epoch s): a resumed study keeps its proxy."""
        self.history_until = until
        for proxy in self.proxies.values():
            if hasattr(proxy, "history_until"):
                proxy.history_until = until

    def latency_learnt_from(self) -> dict[str, int]:
        """Per latency proxy that learnt a correction from earlier full evaluations, how many plans it learnt from."""
        return {name: proxy.learnt_from for name, proxy in self.proxies.items() if getattr(proxy, "learnt_from", 0)}

    def latency_checks(self) -> dict[str, dict]:
        """Per latency proxy whose table was checked against whole plans timed on its target, the check."""
        return {name: proxy.check.to_dict() for name, proxy in self.proxies.items() if getattr(proxy, "check", None)}

    def activation_ranges(self) -> dict[str, tuple[float, float]]:
        """Each layer's input range on the calibration inputs through the FP32 model, computed once."""
        if self._activation_ranges is None:
            io, calibration = self.context.workload.io, self.context.calibration
            self._activation_ranges = activation_ranges(self.reference, io, calibration, list(self.context.layer_kinds))
        return self._activation_ranges

    def reference_outputs(self, batchnorm_from_calibration: bool = False) -> torch.Tensor:
        """The FP32 model's outputs on the calibration inputs; with BatchNorm statistics from the calibration
        batches when the compressed models are scored that way (so an unpruned FP32 plan diverges by 0)."""
        if batchnorm_from_calibration not in self._reference_outputs:
            io, calibration = self.context.workload.io, self.context.calibration
            if batchnorm_from_calibration:
                with batchnorm_from_batches(copy.deepcopy(self.reference)) as model:
                    outputs = io.run_batched(model, calibration)
            else:
                outputs = io.run_batched(self.reference, calibration)
            self._reference_outputs[batchnorm_from_calibration] = outputs
        return self._reference_outputs[batchnorm_from_calibration]

    def _proxy_context(self, plan: Plan, compressed, recovered, reference_outputs, from_calibration=False) -> ProxyContext:
        return ProxyContext(
            plan=plan,
            compressed=compressed,
            recovered=recovered,
            reference=self.reference,
            calibration=self.context.calibration,
            reference_outputs=reference_outputs,
            io=self.context.workload.io,
            channel_multiple=self.context.recovery.config.channel_multiple,
            pruner=self.context.recovery.pruner,
            build=self.context.build_context(),
            prune_ratios=self.context.space.prune_ratios(),
            layer_bits=self.context.space.layer_bits(),
            space=self.context.space,
            device=self.context.recovery.config.device,
            batchnorm_from_calibration=from_calibration,
            channels_last=self.channels_last,
        )

    def latency_estimators(self) -> dict[str, Callable[[Plan], float]]:
        """Per target, plan -> its latency objective's estimate, for the per-target objectives that read the plan alone
        (a measured table: the first call measures it, as a first trial would); no model is built."""
        template = self._proxy_context(Plan(), None, None, None)
        estimators = {}
        for name in self.objectives:
            proxy = self.proxies[name]
            if proxy.per_target and proxy.plan_only:
                estimators[proxy.settings["target"].name] = lambda plan, proxy=proxy: float(
                    proxy.compute(dataclasses.replace(template, plan=plan))
                )
        return estimators

    def score(self, plan: Plan, recovery_steps: int) -> dict[str, float]:
        """Every metric of the recipe for `plan`; raises ProxyError on a failure or a non-finite value.

        `last_seconds` holds the time of each phase of this call (pruning, recovery, quantization, each proxy).
        """
        recovery = self.context.recovery
        recovery.last_seconds = {}
        started = time.perf_counter()
        from_calibration = recovery_steps == 0 and self.context.spec.recovery.search_batchnorm == "scoring_batch"
        recovered = recovery.pruned(plan) if from_calibration else recovery.recovered(plan, recovery_steps)
        seconds = dict(recovery.last_seconds)
        seconds["recovered_model"] = time.perf_counter() - started
        started = time.perf_counter()
        compressed = fake_quantize_weights(copy.deepcopy(recovered), plan)
        if self.context.spec.proxies.activations == "int8":
            kinds = self.context.layer_kinds
            static = [n for n, bits in plan.bits().items() if bits == 8 and kinds[n] in ("conv", "linear")]
            quantize_activations(compressed, static, self.activation_ranges())
        seconds["quantize"] = time.perf_counter() - started
        proxy_context = self._proxy_context(plan, compressed, recovered, self.reference_outputs(from_calibration), from_calibration)
        scores = {}
        for name, proxy in self.proxies.items():
            started = time.perf_counter()
            scores[name] = proxy(proxy_context)
            seconds[f"proxy.{name}"] = time.perf_counter() - started
        self.last_seconds = seconds
        return scores
