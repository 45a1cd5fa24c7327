"""A/B on representative traffic: recorded requests replayed through the FP32 model, the deployed version and each
candidate, compared side by side (agreement, output divergence, accuracy where labels exist, per-request latency).

A recording is an npz file (one array per model input, named like the inputs; `labels` optional) or a parquet
file (one column per model input holding each request's values, flattened; `labels` optional).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from autotune.divergence import divergence
from autotune.errors import SpecError
from autotune.workloads.base import Workload, file_sha256
from autotune.workloads.io import Inputs, batch_size, input_names, iter_batches, take

WARMUP_REQUESTS = 5


@dataclass(frozen=True)
class Recording:
    path: Path
    inputs: Inputs
    labels: np.ndarray | None
    fingerprint: str

    def __len__(self) -> int:
        return batch_size(self.inputs)


def load_recording(path: str | Path, workload: Workload) -> Recording:
    """Read recorded requests shaped like the workload's inputs; every problem names the file and the array."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"replay.inputs: {path}: no such file")
    columns = _read_columns(path)
    labels = columns.pop("labels", None)
    example = workload.example_input
    names = input_names(example)
    if isinstance(example, torch.Tensor) and len(columns) == 1:
        columns = {names[0]: next(iter(columns.values()))}
    missing = [n for n in names if n not in columns]
    if missing:
        raise SpecError(f"replay.inputs: {path}: no array for model input(s) {missing}; it has {sorted(columns)}")
    tensors = {}
    for name, reference in zip(names, _tensors(example), strict=True):
        values = np.asarray(columns[name])
        try:
            values = values.reshape(len(values), *reference.shape[1:])
        except ValueError as exc:
            raise SpecError(
                f"replay.inputs: {path}: {name!r} has shape {values.shape}; the model takes {tuple(reference.shape[1:])} "
                "per request"
            ) from exc
        tensors[name] = torch.from_numpy(np.ascontiguousarray(values)).to(reference.dtype)
    counts = {len(v) for v in tensors.values()}
    if len(counts) != 1 or 0 in counts:
        raise SpecError(f"replay.inputs: {path}: input arrays have different or zero lengths {sorted(counts)}")
    if isinstance(example, torch.Tensor):
        inputs: Inputs = tensors[names[0]]
    elif isinstance(example, Mapping):
        inputs = tensors
    else:
        inputs = tuple(tensors[n] for n in names)
    if labels is not None and len(labels) != counts.pop():
        raise SpecError(f"replay.inputs: {path}: {len(labels)} labels for {batch_size(inputs)} requests")
    return Recording(path, inputs, None if labels is None else np.asarray(labels), file_sha256(path)[:16])


def _tensors(inputs: Inputs) -> list[torch.Tensor]:
    if isinstance(inputs, torch.Tensor):
        return [inputs]
    return list(inputs.values()) if isinstance(inputs, Mapping) else list(inputs)


def _read_columns(path: Path) -> dict[str, np.ndarray]:
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                return {name: data[name] for name in data.files}
        if path.suffix == ".parquet":
            import pandas as pd

            frame = pd.read_parquet(path)
            return {name: np.stack([np.asarray(v) for v in frame[name]]) for name in frame.columns}
    except Exception as exc:
        raise SpecError(f"replay.inputs: {path}: cannot read: {type(exc).__name__}: {exc}") from exc
    raise SpecError(f"replay.inputs: {path}: expected an .npz or .parquet file")


def output_histogram(outputs: torch.Tensor, kind: str, edges: list[float] | None = None) -> dict:
    """The distribution drift is measured on: predicted classes for logits, else the output norm in bins."""
    if kind == "logits":
        classes = outputs.reshape(-1, outputs.shape[-1]).argmax(dim=-1)
        counts = torch.bincount(classes, minlength=outputs.shape[-1]).double()
        return {"kind": "class", "shares": (counts / counts.sum()).tolist()}
    norms = outputs.reshape(len(outputs), -1).float().norm(dim=1).numpy()
    if edges is None:
        edges = np.quantile(norms, np.linspace(0, 1, 11)[1:-1]).tolist()
    counts = np.bincount(np.searchsorted(edges, norms), minlength=len(edges) + 1)
    return {"kind": "norm", "edges": edges, "shares": (counts / counts.sum()).tolist()}


def psi(reference: dict, current: dict, floor: float = 1e-4) -> float:
    """Population stability index between two histograms of the same bins (0: identical; > 0.2: a real shift)."""
    expected = np.maximum(np.asarray(reference["shares"]), floor)
    actual = np.maximum(np.asarray(current["shares"]), floor)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


class ReplayComparison:
    """Replays one recording through every evaluated build; the FP32 model's answers are the reference, the
    deployed version's (when evaluated first) a second one."""

    def __init__(self, recording: Recording, workload: Workload, teacher: torch.nn.Module, requests: int) -> None:
        self.recording, self.workload, self.requests = recording, workload, requests
        self.fp32 = workload.io.run_batched(teacher, recording.inputs)
        self.deployed: dict[str, torch.Tensor] = {}

    def compare(self, target, artifact, candidate) -> dict:
        answer = target.server(artifact)  # compiled once, for the answers and the timed requests alike
        outputs = self._answers(answer)
        if candidate.role == "deployed":
            self.deployed[target.name] = outputs
        result = {"requests": len(self.recording), **self._against("fp32", self.fp32, outputs)}
        if target.name in self.deployed and candidate.role != "deployed":
            result |= self._against("deployed", self.deployed[target.name], outputs)
        if self.recording.labels is not None:
            result["metric"] = float(self.workload.metric(outputs.numpy(), self.recording.labels))
        result["latency_ms"] = self._latencies(answer)
        return result

    def remember_deployed(self, target, artifact) -> None:
        self.deployed[target.name] = self._answers(target.server(artifact))

    def _answers(self, answer, batch: int = 256) -> torch.Tensor:
        parts = [np.asarray(answer(part)) for part in iter_batches(self.recording.inputs, batch)]
        return torch.from_numpy(np.concatenate(parts))

    def _against(self, name: str, reference: torch.Tensor, outputs: torch.Tensor) -> dict:
        kind = self.workload.io.output_kind
        found = {f"divergence_{name}": float(divergence(kind, reference, outputs).item())}
        if kind == "logits":
            found[f"agreement_{name}"] = float((reference.argmax(-1) == outputs.argmax(-1)).float().mean())
        return found

    def _latencies(self, answer) -> dict:
        """Each recorded request answered alone, in recorded order, as a server would see them."""
        inputs = self.recording.inputs
        count = min(self.requests, len(self.recording))
        for index in range(min(WARMUP_REQUESTS, count)):
            answer(take(inputs, slice(index, index + 1)))
        times = []
        for index in range(count):
            request = take(inputs, slice(index, index + 1))
            started = time.perf_counter()
            answer(request)
            times.append((time.perf_counter() - started) * 1e3)
        values = np.asarray(times)
        return {q: float(np.percentile(values, p)) for q, p in (("p50", 50), ("p95", 95), ("p99", 99))} | {
            "mean": float(values.mean()),
            "timed": count,
        }
