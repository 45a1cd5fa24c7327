"""Applies a plan to a torch model: structured pruning by groups, simulated weight quantization, recovery.

Pruning is real (pruning.py removes channels, coupled layers together); quantization here is simulated
per output channel so proxies can score a plan in seconds. Recovery (BatchNorm re-calibration plus
distillation from the FP32 teacher) is cached by the pruning sub-plan, so plans that differ only in
bit-widths share one recovered model.
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import joblib
import torch
from torch import nn

from autotune.divergence import divergence
from autotune.layers import ModelLayers, index_model
from autotune.layout import channels_last_holds, in_layout
from autotune.paths import cache_dir
from autotune.plan import FULL_PRECISION_BITS, HALF_PRECISION_BITS, Plan
from autotune.pruning import GroupPruner
from autotune.workloads import LabelledData, Workload
from autotune.workloads.base import data_fingerprint
from autotune.workloads.io import call, iter_batches, take, to_device


def fake_quantize_weights(model: nn.Module, plan: Plan, half: torch.dtype = torch.bfloat16) -> nn.Module:
    """Round each planned layer's weights to its bits, in place: integers symmetric per output channel (per
    row for an embedding table), 16 bits to the `half` float format."""
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, bits in plan.bits().items():
            if bits >= FULL_PRECISION_BITS:
                continue
            weight = modules[name].weight
            if bits == HALF_PRECISION_BITS:
                weight.copy_(weight.to(half).float())
                continue
            levels = 2 ** (bits - 1) - 1
            flat = weight.reshape(weight.shape[0], -1)
            scale = (flat.abs().amax(dim=1) / levels).clamp_min(1e-12)
            zero = torch.zeros(weight.shape[0], dtype=torch.int32, device=weight.device)
            weight.copy_(torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -levels, levels))
    return model


def activation_ranges(model: nn.Module, io, inputs, names: list[str], batch_size: int = 128) -> dict[str, tuple[float, float]]:
    """Per named layer, the min and max of its input over `inputs` (the calibration a static quantizer runs)."""
    modules = dict(model.named_modules())
    ranges: dict[str, list[float]] = {}

    def record(name: str):
        def hook(module, args):
            value = args[0].detach()
            low, high = float(value.min()), float(value.max())
            seen = ranges.setdefault(name, [low, high])
            seen[0], seen[1] = min(seen[0], low), max(seen[1], high)

        return hook

    handles = [modules[name].register_forward_pre_hook(record(name)) for name in names]
    try:
        with torch.no_grad():
            io.run_batched(model, inputs, batch_size)
    finally:
        for handle in handles:
            handle.remove()
    return {name: (low, high) for name, (low, high) in ranges.items()}


def quantize_activations(model: nn.Module, names: list[str], ranges: dict[str, tuple[float, float]]) -> nn.Module:
    """Round the inputs of the named layers to 8 bits per tensor with calibrated ranges, as static INT8 runtimes do:
    unsigned [0, max] where the calibrated input is never negative (after a ReLU), else symmetric signed."""
    modules = dict(model.named_modules())
    for name in names:
        if name not in ranges:
            continue  # a layer the calibration never reached
        low, high = ranges[name]
        if low >= 0:
            scale, lowest, highest = max(high, 1e-12) / 255, 0, 255
        else:
            scale, lowest, highest = max(-low, high, 1e-12) / 127, -128, 127

        def hook(module, args, scale=scale, lowest=lowest, highest=highest):
            return (torch.fake_quantize_per_tensor_affine(args[0], scale, 0, lowest, highest), *args[1:])

        modules[name].register_forward_pre_hook(hook)
    return model


@dataclass(frozen=True)
class RecoveryConfig:
    """How a pruned model is recovered: BatchNorm re-calibration, then distillation steps."""

    batch_size: int = 128
    learning_rate: float = 1e-3
    temperature: float = 2.0
    task_loss_weight: float = 0.5
    recalibration_samples: int = 2560  # inputs that re-estimate BatchNorm statistics after pruning
    seed: int = 0
    channel_multiple: int = 1  # pruning keeps a multiple of this many channels (part of the model's identity)
    device: str = "cpu"  # where recovery runs; the result is always returned on the CPU
    precision: str = "f32"  # distillation's arithmetic: "f32", or "bf16" autocast (forward and loss; f32 weights)

    def to_json(self, distils: bool = True) -> str:
        """Identity of the recovery recipe (the device does not change results beyond float noise; bf16 does, when
        there is distillation; f32 is left out so states cached before the setting existed still match)."""
        fields = {k: v for k, v in asdict(self).items() if k != "device"}
        if fields["precision"] == "f32" or not distils:
            del fields["precision"]
        return json.dumps(fields, sort_keys=True)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Where the forward pass and the loss compute: bf16 autocast, or as they are (f32)."""
        if self.precision == "f32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device, dtype=torch.bfloat16)


def _batchnorms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def recalibrate_batchnorm(
    model: nn.Module, data: LabelledData, config: RecoveryConfig, layout: torch.memory_format = torch.contiguous_format
) -> None:
    """Re-estimate BatchNorm statistics on the pruned model (cumulative average over fixed batches). `layout`: the
    memory layout the passes run in (`Recovery.training_layout`: channels_last re-calibrated pruned fashion-cnn plans
    1.34x faster on an AMX Xeon, median of 12 interleaved pairs, 1.27x-1.53x; the same statistics to float rounding);
    the model is returned in the default layout."""
    if not _batchnorms(model):
        return
    model.to(memory_format=layout)
    try:
        with batchnorm_from_batches(model):
            inputs = take(data.inputs, slice(0, config.recalibration_samples))
            with torch.no_grad():
                for part in iter_batches(inputs, config.batch_size):
                    call(model, in_layout(to_device(part, config.device), layout))
    finally:
        model.to(memory_format=torch.contiguous_format)


@contextlib.contextmanager
def batchnorm_from_batches(model: nn.Module) -> Iterator[nn.Module]:
    """Inside, BatchNorm layers normalise with each batch's own statistics and accumulate them (a
    cumulative average); every other module stays in eval mode (no dropout). The model leaves in eval mode
    with the accumulated statistics, so one forward pass both re-calibrates and scores a pruned model."""
    model.eval()
    for norm in _batchnorms(model):
        norm.reset_running_stats()
        norm.momentum = None
        norm.train()
    try:
        yield model
    finally:
        model.eval()


class TeacherAnswers:
    """The teacher's output on each distillation step's batch, computed once and reused by every plan: the seed fixes
    the batch order, so every student of a study sees the same batches and only the student runs per step (a 200-step
    recovery of a 50%-pruned fashion-cnn ran 1.6-1.8x faster, same weights). Kept up to `limit_bytes`; later steps
    run the teacher."""

    def __init__(self, teacher: nn.Module, io, limit_bytes: int = 256 << 20) -> None:
        self.teacher, self.io, self.limit_bytes = teacher, io, limit_bytes
        self.answers: list[torch.Tensor] = []
        self.bytes = 0

    def __call__(self, step: int, inputs) -> torch.Tensor:
        if step < len(self.answers):
            return self.answers[step]
        with torch.no_grad():
            answer = self.io.run(self.teacher, inputs)
        size = answer.numel() * answer.element_size() if isinstance(answer, torch.Tensor) else None
        if step == len(self.answers) and size is not None and self.bytes + size <= self.limit_bytes:
            self.answers.append(answer)
            self.bytes += size
        return answer


def distill(
    student: nn.Module,
    teacher: nn.Module,
    workload: Workload,
    steps: int,
    config: RecoveryConfig,
    answers: TeacherAnswers | None = None,
    layout: torch.memory_format = torch.contiguous_format,
    first_step: int = 0,
) -> None:
    """Fine-tune the student on the teacher's outputs (+ the workload's task loss when labels exist).

    The loss follows the output kind (KL on logits with a temperature, cosine on embeddings, normalised
    MSE otherwise). The seed fixes initial state and batch order, so a plan always recovers the same way.
    `answers`: the teacher's outputs per step, shared across plans (computed here when absent). `layout`: the
    student's memory layout while it trains (`Recovery.training_layout`); it is returned in the default layout.
    `first_step`: run steps `first_step` ... `steps - 1` only (a recovery continued from an earlier one: the batches a
    fresh run would see there, under a cosine schedule and an optimiser of their own).
    """
    data, io = workload.recovery, workload.io
    answers = answers if answers is not None else TeacherAnswers(teacher, io, limit_bytes=0)
    student.to(memory_format=layout)
    try:
        _train(student, data, io, workload, range(first_step, steps), config, answers, layout)
    finally:
        student.to(memory_format=torch.contiguous_format)
        student.eval()


def _train(student, data, io, workload, steps: range, config: RecoveryConfig, answers: TeacherAnswers, layout) -> None:
    torch.manual_seed(config.seed)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(config.seed))
    optimizer = torch.optim.AdamW(student.parameters(), lr=config.learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=len(steps))
    use_labels = data.labels is not None and workload.task_loss is not None and config.task_loss_weight > 0
    student.train()
    for step in steps:
        start = (step * config.batch_size) % max(1, len(data) - config.batch_size + 1)
        batch = order[start : start + config.batch_size]
        inputs = to_device(take(data.inputs, batch), config.device)
        reference = answers(step, inputs)  # the teacher's answers stay f32
        with config.autocast():
            outputs = io.run(student, in_layout(inputs, layout))
            loss = divergence(io.output_kind, reference, outputs, config.temperature)
            if use_labels:
                labels = data.labels[batch]
                labels = labels.to(config.device) if isinstance(labels, torch.Tensor) else labels
                loss = loss + config.task_loss_weight * workload.task_loss(outputs, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()


class Recovery:
    """Builds pruned-and-recovered float models for a workload, cached on disk by pruning sub-plan.

    The model's layers and pruning groups are analysed once (one dependency-graph trace).
    """

    def __init__(self, workload: Workload, config: RecoveryConfig, teacher: nn.Module | None = None) -> None:
        self.workload = workload
        self.config = config
        self._teacher = teacher if teacher is not None else workload.fp32_model()
        example = workload.example_input
        self.pruner = GroupPruner(self._teacher, workload.io, example, index_model(self._teacher, workload.io, example))
        self.identity = f"{workload.fingerprint}-{data_fingerprint(workload.calibration, workload.recovery.inputs)}"
        self._memory = joblib.Memory(cache_dir("recovery"), verbose=0)
        self._recovered_state = self._memory.cache(_recovered_state, ignore=["recovery"])
        self._recent: OrderedDict[str, dict] = OrderedDict()  # recovered states of this run, newest last
        self.last_seconds: dict[str, float] = {}  # phases of the last recovery computed (not cached)
        self._answers: TeacherAnswers | None = None  # the teacher's outputs per distillation step, on config.device
        self.training_layout = self._training_layout()  # the student's memory layout while it distils

    @property
    def teacher(self) -> nn.Module:
        return self._teacher

    def _training_layout(self) -> torch.memory_format:
        """channels_last where the model runs the same that way (checked once on the example; not a model that calls
        `.view` on a conv output): oneDNN's convolutions train faster on it (steps per second at batch 128 on 2 AMD EPYC
        cores, channels_last over the default, median of 5 interleaved pairs: fashion-cnn 1.20x, at half its width
        1.03x, the test zoo's sequential 1.39x, depthwise 1.17x, shared-branch 1.21x). No result changes beyond float
        rounding."""
        example = take(self.workload.example_input, slice(0, 2))
        holds = channels_last_holds(self._teacher, self.workload.io, example)
        return torch.channels_last if holds else torch.contiguous_format

    @property
    def layers(self) -> ModelLayers:
        return self.pruner.layers

    def pruned(self, plan: Plan) -> nn.Module:
        """The FP32 model with the plan's channels removed and no recovery."""
        return self.pruner.prune(plan, self.config.channel_multiple)

    def recovered(self, plan: Plan, steps: int, after: int = 0) -> nn.Module:
        """The pruned model after BatchNorm re-calibration and `steps` distillation steps.

        `after` (0 < after < steps): the first `after` steps are the plan's `after`-step recovery (the re-score's,
        usually cached), continued for the remaining steps instead of recovered again from the start.
        An unpruned plan needs no recovery and returns the FP32 model itself (a copy).
        """
        ratios = self.pruner.group_ratios(plan)
        model = self.pruner.apply(ratios, self.config.channel_multiple)
        if not ratios or (steps == 0 and not _batchnorms(model)):
            return model  # nothing to recover: no cache entry (a transformer's state is tens of MB per plan)
        model.load_state_dict(self._state(ratios, steps, after if 0 < after < steps else 0))
        return model.eval()

    def _state(self, ratios: dict[str, float], steps: int, after: int) -> dict[str, torch.Tensor]:
        key = json.dumps([ratios, steps, after], sort_keys=True)
        state = self._recent.get(key)
        if state is None:
            recipe = self.config.to_json(distils=steps > 0)  # re-calibration alone runs in f32 whatever the precision
            state = self._recovered_state(self.identity, json.dumps(ratios, sort_keys=True), steps, recipe, self, after)
            self._recent[key] = state
            while len(self._recent) > 8:
                self._recent.popitem(last=False)
        return state

    def recover(self, ratios: dict[str, float], steps: int, after: int = 0) -> dict[str, torch.Tensor]:
        config = self.config
        earlier = self._state(ratios, after, 0) if after else None  # cached, or recovered here first
        started = time.perf_counter()
        model = self.pruner.apply(ratios, config.channel_multiple).to(config.device)
        self.last_seconds["prune"] = time.perf_counter() - started
        if earlier is not None:
            model.load_state_dict(earlier)  # its statistics were re-estimated after its last step
        else:
            started = time.perf_counter()
            recalibrate_batchnorm(model, self.workload.recovery, config, self.training_layout)
            self.last_seconds["recalibrate"] = time.perf_counter() - started
        if steps > after:
            started = time.perf_counter()
            if self._answers is None:
                teacher = copy.deepcopy(self._teacher).to(config.device) if config.device != "cpu" else self._teacher
                self._answers = TeacherAnswers(teacher, self.workload.io)
            distill(
                model, self._answers.teacher, self.workload, steps, config, self._answers, self.training_layout, after
            )
            recalibrate_batchnorm(model, self.workload.recovery, config, self.training_layout)
            self.last_seconds["distill"] = time.perf_counter() - started
            self.last_seconds["distill_steps_per_s"] = (steps - after) / self.last_seconds["distill"]
        return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _recovered_state(
    identity: str, ratios_json: str, steps: int, config_json: str, recovery: Recovery, after: int = 0
) -> dict:
    """Cached by (model and data identity, group ratios, steps, recipe, the recovery it continues); the Recovery
    object is not hashed."""
    return recovery.recover(json.loads(ratios_json), steps, after)
