"""The Workload record and loading a workload by built-in name or import path."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from autotune.errors import WorkloadError

BUILT_IN = {
    "fashion-cnn": "autotune.workloads.fashion_mnist:fashion_cnn",
    "fashion-cnn-tiny": "autotune.workloads.fashion_mnist:fashion_cnn_tiny",
}


@dataclass(frozen=True)
class LabelledData:
    """Inputs with optional labels; a workload without labels is recovered by distillation alone."""

    inputs: torch.Tensor
    labels: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.inputs)

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        for start in range(0, len(self.inputs), batch_size):
            stop = start + batch_size
            yield self.inputs[start:stop], None if self.labels is None else self.labels[start:stop]


@dataclass(frozen=True)
class Workload:
    """Everything autotune needs to know about a model it compresses.

    `model_factory` returns a fresh trained FP32 model in eval mode on every call.
    `metric(outputs, labels)` scores model outputs, higher is better (e.g. accuracy in [0, 1]).
    `fingerprint` identifies the trained weights (e.g. the checkpoint's sha256) so caches of
    recovered models are invalidated when the model changes.
    """

    name: str
    model_factory: Callable[[], nn.Module]
    calibration: torch.Tensor
    recovery: LabelledData
    validation: LabelledData
    metric: Callable[[np.ndarray, np.ndarray], float]
    metric_name: str = "accuracy"
    fingerprint: str = ""

    @property
    def example_input(self) -> torch.Tensor:
        return self.calibration[:1]

    def fp32_model(self) -> nn.Module:
        model = self.model_factory()
        if not isinstance(model, nn.Module):
            raise WorkloadError(
                f"workload {self.name!r}: model_factory returned {type(model).__name__}, not a torch.nn.Module"
            )
        return model.eval()


def top1_accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(outputs).argmax(axis=1) == np.asarray(labels)).mean())


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
    return workload
