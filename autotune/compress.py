"""Applies a plan to a torch model: structured pruning, simulated weight quantization, recovery.

Pruning is real (torch-pruning removes channels, coupled layers together); quantization here
is simulated per output channel so proxies can score a plan in seconds. Recovery (BatchNorm
re-calibration plus distillation from the FP32 teacher) is cached by the pruning sub-plan,
so plans that differ only in bit-widths share one recovered model.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass

import joblib
import torch
import torch_pruning as tp
from torch import nn
from torch.nn import functional as F

from autotune.errors import PlanError
from autotune.paths import cache_dir
from autotune.plan import FULL_PRECISION_BITS, Plan
from autotune.workloads import LabelledData, Workload

LAYER_KINDS = {nn.Conv2d: "conv", nn.Linear: "linear"}


def layer_kind(module: nn.Module) -> str | None:
    for cls, kind in LAYER_KINDS.items():
        if isinstance(module, cls):
            return kind
    return None


def prunable_layers(model: nn.Module) -> dict[str, str]:
    """Qualified names of the conv and linear layers, in model order, with their kind."""
    return {name: kind for name, module in model.named_modules() if (kind := layer_kind(module))}


def trace_layers(model: nn.Module, example_input: torch.Tensor, visit) -> object:
    """Run one sample through the model calling `visit(name, module, inputs, output)` for each conv/linear
    layer; returns the model's output."""
    hooks = [
        module.register_forward_hook(lambda m, inputs, output, name=name: visit(name, m, inputs, output))
        for name, module in model.named_modules()
        if layer_kind(module)
    ]
    try:
        with torch.no_grad():
            return model(example_input[:1])
    finally:
        for hook in hooks:
            hook.remove()


def output_layers(model: nn.Module, example_input: torch.Tensor) -> set[str]:
    """Layers whose output tensor is the model's output: their channels are the model's contract."""
    produced: dict[int, str] = {}
    output = trace_layers(model, example_input, lambda name, m, i, out: produced.__setitem__(id(out), name))
    outputs = output if isinstance(output, (tuple, list)) else [output]
    return {produced[id(out)] for out in outputs if id(out) in produced}


def output_channels(model: nn.Module) -> dict[str, int]:
    channels = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            channels[name] = module.out_channels
        elif isinstance(module, nn.Linear):
            channels[name] = module.out_features
    return channels


def prune(model: nn.Module, plan: Plan, example_input: torch.Tensor, channel_multiple: int = 1) -> nn.Module:
    """Remove output channels in place as the plan asks; coupled layers are pruned together.

    Remaining channel counts are rounded up to `channel_multiple` (CPU kernels run multiples of 8
    or 16 best), so the real ratio can be below the planned one: read the result, not the plan.
    """
    ratios = plan.pruning()
    if not ratios:
        return model
    modules = dict(model.named_modules())
    plan.validate_layers(prunable_layers(model))
    protected = output_layers(model, example_input)
    if clash := sorted(set(ratios) & protected):
        raise PlanError(f"plan prunes {clash}, whose outputs are the model's outputs")
    pruner = tp.pruner.MetaPruner(
        model,
        example_input,
        importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=0.0,  # layers the plan does not name keep their channels (the default is 0.5)
        pruning_ratio_dict={modules[name]: ratio for name, ratio in ratios.items()},
        ignored_layers=[modules[name] for name in protected],
        round_to=channel_multiple if channel_multiple > 1 else None,
    )
    pruner.step()
    return model


def fake_quantize_weights(model: nn.Module, plan: Plan) -> nn.Module:
    """Round each planned layer's weights to its bits, symmetric per output channel, in place."""
    modules = dict(model.named_modules())
    plan.validate_layers(prunable_layers(model))
    with torch.no_grad():
        for name, bits in plan.bits().items():
            if bits >= FULL_PRECISION_BITS:
                continue
            weight = modules[name].weight
            levels = 2 ** (bits - 1) - 1
            flat = weight.reshape(weight.shape[0], -1)
            scale = (flat.abs().amax(dim=1) / levels).clamp_min(1e-12)
            zero = torch.zeros(weight.shape[0], dtype=torch.int32)
            weight.copy_(torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -levels, levels))
    return model


@dataclass(frozen=True)
class RecoveryConfig:
    """How a pruned model is recovered: BatchNorm re-calibration, then distillation steps."""

    batch_size: int = 128
    learning_rate: float = 1e-3
    temperature: float = 2.0
    task_loss_weight: float = 0.5
    calibration_batches: int = 20
    seed: int = 0
    channel_multiple: int = 1  # pruning keeps a multiple of this many channels (part of the model's identity)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def recalibrate_batchnorm(model: nn.Module, data: LabelledData, config: RecoveryConfig) -> None:
    """Re-estimate BatchNorm statistics on the pruned model (cumulative average over fixed batches)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.train()
    with torch.no_grad():
        for index, (inputs, _) in enumerate(data.batches(config.batch_size)):
            if index >= config.calibration_batches:
                break
            model(inputs)
    model.eval()


def distill(student: nn.Module, teacher: nn.Module, data: LabelledData, steps: int, config: RecoveryConfig) -> None:
    """Fine-tune the student on the teacher's soft outputs (+ the task loss when labels exist).

    The seed fixes initial state and batch order, so the same plan always recovers the same way.
    """
    torch.manual_seed(config.seed)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(config.seed))
    optimizer = torch.optim.AdamW(student.parameters(), lr=config.learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    temperature = config.temperature
    student.train()
    for step in range(steps):
        start = (step * config.batch_size) % max(1, len(data) - config.batch_size + 1)
        batch = order[start : start + config.batch_size]
        inputs = data.inputs[batch]
        with torch.no_grad():
            soft_targets = F.log_softmax(teacher(inputs) / temperature, dim=1)
        logits = student(inputs)
        loss = F.kl_div(
            F.log_softmax(logits / temperature, dim=1), soft_targets, log_target=True, reduction="batchmean"
        )
        loss = loss * temperature**2
        if data.labels is not None and config.task_loss_weight > 0:
            loss = loss + config.task_loss_weight * F.cross_entropy(logits, data.labels[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    student.eval()


class Recovery:
    """Builds pruned-and-recovered float models for a workload, cached on disk by pruning sub-plan."""

    def __init__(self, workload: Workload, config: RecoveryConfig) -> None:
        self.workload = workload
        self.config = config
        self._teacher = workload.fp32_model()
        self._memory = joblib.Memory(cache_dir("recovery"), verbose=0)
        self._recovered_state = self._memory.cache(_recovered_state, ignore=["workload", "teacher"])

    @property
    def teacher(self) -> nn.Module:
        return self._teacher

    def pruned(self, plan: Plan) -> nn.Module:
        """The FP32 model with the plan's channels removed and no recovery."""
        return prune(copy.deepcopy(self._teacher), plan, self.workload.example_input, self.config.channel_multiple)

    def recovered(self, plan: Plan, steps: int) -> nn.Module:
        """The pruned model after BatchNorm re-calibration and `steps` distillation steps.

        An unpruned plan needs no recovery and returns the FP32 model itself (a copy).
        """
        model = self.pruned(plan)
        if not plan.pruning():
            return model
        pruning_json = json.dumps(plan.pruning(), sort_keys=True)
        state = self._recovered_state(
            self.workload.fingerprint, pruning_json, steps, self.config.to_json(), self.workload, self._teacher
        )
        model.load_state_dict(state)
        return model.eval()


def _recovered_state(
    fingerprint: str, pruning_json: str, steps: int, config_json: str, workload: Workload, teacher: nn.Module
) -> dict[str, torch.Tensor]:
    """Cached by (fingerprint, pruning sub-plan, steps, config); workload and teacher are not hashed."""
    config = RecoveryConfig(**json.loads(config_json))
    plan = Plan.from_dict({"layers": {n: {"bits": 32, "prune": r} for n, r in json.loads(pruning_json).items()}})
    model = prune(copy.deepcopy(teacher), plan, workload.example_input, config.channel_multiple)
    recalibrate_batchnorm(model, workload.recovery, config)
    if steps > 0:
        distill(model, teacher, workload.recovery, steps, config)
        recalibrate_batchnorm(model, workload.recovery, config)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
