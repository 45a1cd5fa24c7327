"""Everything a study run needs, loaded and validated once before anything is written."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from autotune.compress import Recovery, RecoveryConfig
from autotune.errors import SpecError
from autotune.layers import ModelLayers
from autotune.plan import LayerChoice, Plan
from autotune.search_space import SearchSpace, resolve
from autotune.spec import StudySpec
from autotune.targets.base import BuildContext
from autotune.workloads import Workload, load_workload
from autotune.workloads.io import Inputs, take


@dataclass
class StudyContext:
    spec: StudySpec
    workload: Workload
    space: SearchSpace
    recovery: Recovery
    replay_fingerprint: str = ""  # the recorded traffic the study replays, if any (part of its identity)
    _identity: tuple[str, dict] | None = field(default=None, init=False, repr=False, compare=False)

    def identity(self) -> dict[str, str]:
        """Hashes the calibration and validation inputs: computed once, read by the search, evaluator and warm start."""
        from autotune.identity import study_identity

        key = self.replay_fingerprint
        if self._identity is None or self._identity[0] != key:
            self._identity = (key, study_identity(self.spec, self.workload, key))
        return self._identity[1]

    @property
    def layers(self) -> ModelLayers:
        return self.recovery.layers

    @property
    def layer_kinds(self) -> dict[str, str]:
        return self.layers.kinds

    @property
    def calibration(self) -> Inputs:
        return take(self.workload.calibration, slice(0, self.spec.proxies.calibration_samples))

    def build_context(self) -> BuildContext:
        return BuildContext(self.layers, self.workload.io, self.calibration)

    def reference_plans(self) -> dict[str, Plan]:
        """FP32, and INT8 on every layer all the study's targets run at 8 bits (no pruning): evaluated in
        every run for comparison."""
        kinds = self.layer_kinds
        int8 = {
            name: LayerChoice(8 if all(t.supports(kind, 8) for t in self.spec.targets) else 32)
            for name, kind in kinds.items()
        }
        return {"fp32": Plan.uniform(kinds, 32), "int8": Plan(int8)}


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def native_bf16(device: str) -> tuple[bool, str]:
    """Whether `device` trains in bf16 natively (CUDA with bf16; a CPU with AMX tiles), and if not, why."""
    if device == "cuda":
        return (True, "") if torch.cuda.is_bf16_supported() else (False, "this GPU has no native bf16")
    # AMX multiplies bf16 tiles (distillation ran 1.45-1.66x faster on a Xeon). AVX512-BF16 alone (Zen 4) ran 16
    # fashion-cnn recoveries only 1.12x faster, 0.06 points less accurate on ONNX Runtime: f32 there
    # (docs/recovery-precision.md).
    if torch.cpu._is_amx_tile_supported() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return True, ""
    return False, "this CPU has no AMX tiles (torch.cpu._is_amx_tile_supported() is False)"


def resolve_recovery_precision(spec: StudySpec, device: str) -> str:
    """The float format distillation computes in: "auto" takes bf16 autocast where the device runs it natively."""
    requested = spec.recovery.precision
    if requested == "f32":
        return "f32"
    native, why = native_bf16(device)
    if native:
        return "bf16"
    if requested == "auto":
        return "f32"
    raise SpecError(f"{spec.path} [recovery] precision: 'bf16' on {device}, but {why}; use 'auto' or 'f32'")


def prepare(spec: StudySpec, workload: Workload | None = None) -> StudyContext:
    """Load the workload, analyse its model (layers, pruning groups) and resolve the search space against
    it and the study's targets.

    Raises a one-line AutotuneError for every problem the spec can have, before any study is created.
    """
    workload = workload if workload is not None else load_workload(spec.workload)
    _check_gates_fit(spec, workload)
    r = spec.recovery
    device = resolve_device(r.device)
    config = RecoveryConfig(
        batch_size=r.batch_size,
        learning_rate=r.learning_rate,
        temperature=r.temperature,
        task_loss_weight=r.task_loss_weight,
        recalibration_samples=r.recalibration_samples,
        seed=r.seed,
        channel_multiple=spec.search_space.channel_multiple,
        device=device,
        precision=resolve_recovery_precision(spec, device),
    )
    recovery = Recovery(workload, config)
    space = resolve(spec.search_space, recovery.layers, recovery.pruner.groups, spec.targets)
    return StudyContext(spec, workload, space, recovery)


def _check_gates_fit(spec: StudySpec, workload: Workload) -> None:
    """Per-class and calibration gates need a classifier: class logits and integer labels."""
    gates = spec.gates
    if not gates.needs_classes:
        return
    field = "max_class_drop_pts" if gates.max_class_drop_pts is not None else "max_ece_increase"
    if not workload.is_classifier:
        raise SpecError(
            f"{spec.path}: gates.{field}: workload {workload.name!r} is not a classifier (output kind "
            f"{workload.io.output_kind!r}); per-class accuracy and calibration need class logits and integer labels"
        )
