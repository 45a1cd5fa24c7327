"""Model inputs and outputs of any shape: one tensor, a tuple, or a dict of tensors (tokenizer output) in;
a tensor, tuple, dict or HF `ModelOutput` out, of which the workload names the one autotune reads.

Every part that calls a model (proxies, recovery, export, the runtimes) goes through `ModelIO`, so none
of them assumes one image tensor in and class logits out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np
import torch
from torch import nn

from autotune.errors import WorkloadError

Inputs = Union[torch.Tensor, tuple, Mapping[str, torch.Tensor]]  # noqa: UP007 (a runtime alias)
OutputSelector = Union[None, str, int, Callable[[Any, Inputs], torch.Tensor]]  # noqa: UP007

OUTPUT_KINDS = ("logits", "embedding", "values")


def batch_size(inputs: Inputs) -> int:
    """Samples in a batch: the length of the first axis, which every input tensor shares."""
    return len(first_tensor(inputs))


def first_tensor(inputs: Inputs) -> torch.Tensor:
    if isinstance(inputs, torch.Tensor):
        return inputs
    values = list(inputs.values()) if isinstance(inputs, Mapping) else list(inputs)
    if not values or not isinstance(values[0], torch.Tensor):
        raise WorkloadError(f"model inputs must be a tensor, a tuple or a dict of tensors, got {type(inputs).__name__}")
    return values[0]


def take(inputs: Inputs, index) -> Inputs:
    """The samples at `index` (a slice or an index tensor) of every input tensor."""
    if isinstance(inputs, torch.Tensor):
        return inputs[index]
    if isinstance(inputs, Mapping):
        return {name: value[index] for name, value in inputs.items()}
    return tuple(value[index] for value in inputs)


def map_tensors(inputs: Inputs, function: Callable[[torch.Tensor], torch.Tensor]) -> Inputs:
    if isinstance(inputs, torch.Tensor):
        return function(inputs)
    if isinstance(inputs, Mapping):
        return {name: function(value) for name, value in inputs.items()}
    return tuple(function(value) for value in inputs)


def to_device(inputs: Inputs, device: torch.device | str) -> Inputs:
    return map_tensors(inputs, lambda value: value.to(device))


def repeat_first(inputs: Inputs, count: int) -> Inputs:
    """A batch of `count` copies of the first sample (for timing at a fixed batch size)."""
    return take(inputs, torch.zeros(count, dtype=torch.long))


def input_names(inputs: Inputs) -> list[str]:
    """Names of the graph inputs: `input` for one tensor, `input_<i>` for a tuple, the keys of a dict."""
    if isinstance(inputs, torch.Tensor):
        return ["input"]
    if isinstance(inputs, Mapping):
        return list(inputs)
    return [f"input_{i}" for i in range(len(inputs))]


def flatten(inputs: Inputs) -> list[torch.Tensor]:
    if isinstance(inputs, torch.Tensor):
        return [inputs]
    return list(inputs.values()) if isinstance(inputs, Mapping) else list(inputs)


def call(model: nn.Module, inputs: Inputs):
    """Call the model the way its inputs are laid out: model(x), model(*xs) or model(**named)."""
    if isinstance(inputs, torch.Tensor):
        return model(inputs)
    if isinstance(inputs, Mapping):
        return model(**inputs)
    return model(*inputs)


@dataclass(frozen=True)
class ModelIO:
    """How a workload's model is called and read.

    `output` names what the proxies and the metric read: None (the output itself, or the first element
    of a tuple / ModelOutput), a key (`"logits"`, `"last_hidden_state"`), an index, or a function
    `(raw_output, inputs) -> tensor` (e.g. mean pooling with the attention mask).
    `output_kind` chooses the divergence: KL for class `logits`, cosine distance for an `embedding`,
    normalised MSE for other `values`. `dynamic_axes` maps input names to their dynamic axes
    (`{"input_ids": {0: "batch", 1: "sequence"}}`); by default only axis 0 (batch) of every input is.
    """

    output: OutputSelector = None
    output_kind: str = "logits"
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = field(default=None)

    def __post_init__(self) -> None:
        if self.output_kind not in OUTPUT_KINDS:
            raise WorkloadError(f"output_kind={self.output_kind!r}: expected one of {list(OUTPUT_KINDS)}")

    def select(self, raw, inputs: Inputs) -> torch.Tensor:
        """The tensor autotune reads from a model's raw output."""
        selector = self.output
        try:
            if callable(selector):
                value = selector(raw, inputs)
            elif selector is None:
                value = raw if isinstance(raw, torch.Tensor) else _first_value(raw)
            else:
                value = raw[selector]
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise WorkloadError(
                f"cannot read output {selector!r} from the model's {type(raw).__name__} output: {exc!r}"
            ) from exc
        if not isinstance(value, torch.Tensor):
            raise WorkloadError(f"output {selector!r} is a {type(value).__name__}, not a tensor")
        return value

    def run(self, model: nn.Module, inputs: Inputs) -> torch.Tensor:
        return self.select(call(model, inputs), inputs)

    def run_batched(self, model: nn.Module, inputs: Inputs, batch: int = 256) -> torch.Tensor:
        """Selected outputs over many samples, `batch` at a time, without gradients."""
        with torch.no_grad():
            return torch.cat([self.run(model, part) for part in iter_batches(inputs, batch)])

    def axes(self, inputs: Inputs) -> dict[str, dict[int, str]]:
        axes = {name: {0: "batch"} for name in input_names(inputs)}
        for name, extra in (self.dynamic_axes or {}).items():
            if name not in axes:
                raise WorkloadError(f"dynamic_axes names input {name!r}; the model's inputs are {list(axes)}")
            axes[name] = dict(extra)
        return axes

    def exportable(self, model: nn.Module, example: Inputs) -> nn.Module:
        """A module taking the inputs as positional tensors and returning the selected output (for ONNX)."""
        return ExportWrapper(model, self, example)

    def feed(self, inputs: Inputs) -> dict[str, np.ndarray]:
        """Runtime feed: graph input name -> numpy array."""
        return {name: value.numpy() for name, value in zip(input_names(inputs), flatten(inputs), strict=True)}


def iter_batches(inputs: Inputs, size: int) -> Iterator[Inputs]:
    for start in range(0, batch_size(inputs), size):
        yield take(inputs, slice(start, start + size))


def _first_value(raw):
    if isinstance(raw, Mapping):  # dicts and HF ModelOutput (an OrderedDict of its non-None fields)
        return next(iter(raw.values()))
    if isinstance(raw, (tuple, list)):
        return raw[0]
    return raw


EXPORT_PREFIX = "model."


class ExportWrapper(nn.Module):
    """Positional tensors in, the selected output tensor out. Parameter names gain the prefix `model.`."""

    def __init__(self, model: nn.Module, io: ModelIO, example: Inputs) -> None:
        super().__init__()
        self.model = model
        self.io = io
        self.names = input_names(example)
        self.layout = "tensor" if isinstance(example, torch.Tensor) else "dict" if isinstance(example, Mapping) else "tuple"

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        if self.layout == "tensor":
            inputs: Inputs = tensors[0]
        elif self.layout == "dict":
            inputs = dict(zip(self.names, tensors, strict=True))
        else:
            inputs = tuple(tensors)
        return self.io.run(self.model, inputs)
