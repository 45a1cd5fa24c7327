"""The Workload record and loading a workload by built-in name or import path."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from autotune.errors import WorkloadError
from autotune.workloads.io import Inputs, ModelIO, batch_size, flatten, take

BUILT_IN = {
    "fashion-cnn": "autotune.workloads.fashion_mnist:fashion_cnn",
    "fashion-cnn-tiny": "autotune.workloads.fashion_mnist:fashion_cnn_tiny",
    "minilm": "autotune.workloads.minilm:minilm",
}


@dataclass(frozen=True)
class LabelledData:
    """Model inputs (a tensor, a tuple or a dict of tensors) with optional per-sample labels.

    A workload without labels is recovered by distillation alone.
    """

    inputs: Inputs
    labels: Any = None  # a tensor or array indexed like the inputs' first axis, or None

    def __len__(self) -> int:
        return batch_size(self.inputs)

    def take(self, index) -> LabelledData:
        return LabelledData(take(self.inputs, index), None if self.labels is None else self.labels[index])

    def batches(self, size: int) -> Iterator[tuple[Inputs, Any]]:
        for start in range(0, len(self), size):
            part = self.take(slice(start, start + size))
            yield part.inputs, part.labels

    def labels_numpy(self) -> np.ndarray | None:
        if self.labels is None:
            return None
        return self.labels.numpy() if isinstance(self.labels, torch.Tensor) else np.asarray(self.labels)


@dataclass(frozen=True)
class Diagnostic:
    """A score recorded beside the metric on every measured model (not an objective), on its own data."""

    name: str
    data: LabelledData
    score: Callable[[np.ndarray, Any], float]


@dataclass(frozen=True)
class Workload:
    """Everything autotune needs to know about a model it compresses.

    `model_factory` returns a fresh trained FP32 model in eval mode on every call.
    `calibration` holds model inputs (no labels) for the proxies and for INT8 calibration.
    `metric(outputs, labels)` scores the selected outputs (numpy) of the whole validation set;
    `higher_is_better` gives its direction. `io` says how the model is called and which output is read.
    `fingerprint` identifies the trained weights (e.g. the checkpoint's sha256); when empty, it is
    computed from the weights, so two models never share cached recoveries.
    """

    name: str
    model_factory: Callable[[], nn.Module]
    calibration: Inputs
    recovery: LabelledData
    validation: LabelledData
    metric: Callable[[np.ndarray, Any], float]
    metric_name: str = "accuracy"
    higher_is_better: bool = True
    io: ModelIO = field(default_factory=ModelIO)
    fingerprint: str = ""
    task_loss: Callable[[torch.Tensor, Any], torch.Tensor] | None = None  # recovery loss on labels, if any
    diagnostics: tuple[Diagnostic, ...] = ()

    @property
    def example_input(self) -> Inputs:
        return take(self.calibration, slice(0, 1))

    def fp32_model(self) -> nn.Module:
        try:
            model = self.model_factory()
        except Exception as exc:
            raise WorkloadError(
                f"workload {self.name!r}: model_factory raised {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(model, nn.Module):
            raise WorkloadError(
                f"workload {self.name!r}: model_factory returned {type(model).__name__}, not a torch.nn.Module"
            )
        return model.eval()

    @property
    def is_classifier(self) -> bool:
        """Class logits with integer validation labels: per-class accuracy and calibration can be measured."""
        labels = self.validation.labels_numpy()
        return self.io.output_kind == "logits" and labels is not None and np.issubdtype(labels.dtype, np.integer)

    def quality_drop(self, reference: float, value: float) -> float:
        """How much worse `value` is than `reference`, in points (x100), whatever the metric's direction."""
        return (reference - value) * 100 if self.higher_is_better else (value - reference) * 100


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def with_checkpoint(workload: Workload, path) -> Workload:
    """The workload with its model's weights loaded from a checkpoint: a state dict saved by `torch.save` (or a
    dict holding one under `state_dict`). The checkpoint's sha256 becomes the model fingerprint."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise WorkloadError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WorkloadError(f"{path}: cannot load as a state dict: {type(exc).__name__}: {exc}") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WorkloadError(f"{path}: not a state dict (a mapping of parameter names to tensors)")
    factory = workload.model_factory

    def model_factory() -> nn.Module:
        model = factory()
        model.load_state_dict(state)
        return model.eval()

    try:
        workload.fp32_model().load_state_dict(state)
    except RuntimeError as exc:
        raise WorkloadError(
            f"{path}: does not fit workload {workload.name!r}'s model: {' '.join(str(exc).split())[:400]}"
        ) from exc
    return dataclasses.replace(workload, model_factory=model_factory, fingerprint=file_sha256(path))


def top1_accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(outputs).argmax(axis=1) == np.asarray(labels)).mean())


def weights_fingerprint(model: nn.Module) -> str:
    """sha256 over every parameter and buffer (name, dtype, shape, bytes) of the model."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


def data_fingerprint(*parts: Inputs) -> str:
    """sha256 over input tensors: recoveries depend on the data as well as on the weights."""
    digest = hashlib.sha256()
    for inputs in parts:
        for tensor in flatten(inputs):
            value = tensor.detach().cpu().contiguous()
            digest.update(f"{value.dtype}|{tuple(value.shape)}".encode())
            digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()[:16]


def _check(workload: Workload, reference: str) -> Workload:
    """Shape checks a user's workload can fail, with the field named; fills in a missing fingerprint."""
    where = f"workload {reference!r}"
    for label, inputs in (("calibration", workload.calibration), ("validation.inputs", workload.validation.inputs)):
        try:
            count = batch_size(inputs)
        except WorkloadError as exc:
            raise WorkloadError(f"{where}: {label}: {exc}") from exc
        if count == 0:
            raise WorkloadError(f"{where}: {label} is empty")
    if not workload.fingerprint:
        workload = dataclasses.replace(workload, fingerprint=weights_fingerprint(workload.fp32_model()))
    return workload


def load_workload(reference: str) -> Workload:
    """Load a workload by built-in name or `package.module:function` import path."""
    path = BUILT_IN.get(reference, reference)
    module_name, sep, function_name = path.partition(":")
    if not sep or not module_name or not function_name:
        raise WorkloadError(
            f"workload {reference!r}: expected a built-in name ({', '.join(BUILT_IN)}) or 'package.module:function'"
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an import can fail in any way; the user needs the reason, not our stack
        raise WorkloadError(
            f"workload {reference!r}: cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    factory = getattr(module, function_name, None)
    if not callable(factory):
        raise WorkloadError(f"workload {reference!r}: module {module_name!r} has no function {function_name!r}")
    try:
        workload = factory()
    except WorkloadError:
        raise
    except Exception as exc:
        raise WorkloadError(f"workload {reference!r}: {function_name}() raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(workload, Workload):
        raise WorkloadError(
            f"workload {reference!r}: {function_name}() returned {type(workload).__name__}, expected autotune.Workload"
        )
    return _check(workload, reference)
