"""Everything a study run needs, loaded and validated once before anything is written."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from autotune.compress import Recovery, RecoveryConfig, output_layers, prunable_layers
from autotune.plan import Plan
from autotune.search_space import SearchSpace, resolve
from autotune.spec import StudySpec
from autotune.workloads import Workload, load_workload


@dataclass
class StudyContext:
    spec: StudySpec
    workload: Workload
    space: SearchSpace
    layer_kinds: dict[str, str]
    recovery: Recovery

    @property
    def calibration(self) -> torch.Tensor:
        return self.workload.calibration[: self.spec.proxies.calibration_samples]

    def reference_plans(self) -> dict[str, Plan]:
        """FP32 and uniform INT8 (every layer, no pruning): evaluated in every run for comparison."""
        names = list(self.layer_kinds)
        return {"fp32": Plan.uniform(names, 32), "int8": Plan.uniform(names, 8)}


def prepare(spec: StudySpec) -> StudyContext:
    """Load the workload and resolve the search space against its model and the study's targets.

    Raises a one-line AutotuneError for every problem the spec can have, before any study is created.
    """
    workload = load_workload(spec.workload)
    model = workload.fp32_model()
    layer_kinds = prunable_layers(model)
    space = resolve(spec.search_space, layer_kinds, output_layers(model, workload.example_input), spec.targets)
    r = spec.recovery
    config = RecoveryConfig(
        batch_size=r.batch_size,
        learning_rate=r.learning_rate,
        temperature=r.temperature,
        task_loss_weight=r.task_loss_weight,
        seed=r.seed,
        channel_multiple=spec.search_space.channel_multiple,
    )
    return StudyContext(spec, workload, space, layer_kinds, Recovery(workload, config))
