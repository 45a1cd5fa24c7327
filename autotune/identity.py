"""What a study was computed from, field by field, stored on every study so an earlier one is reused neither too
loosely (results of a changed setting) nor too strictly (refused over a field that does not matter).

A warm start reuses plans, never values: every seeded plan is re-evaluated. So a source must only have the same
layers (the plan's currency); the other fields are reported when they differ, not refused.
"""

from __future__ import annotations

import hashlib
import json

import torch
from torch import nn

from autotune.spec import StudySpec, read_toml
from autotune.workloads.base import Workload, data_fingerprint


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def proxies_digest(recipe) -> str:
    """The proxy recipe's file with its settings as the spec holds them (a benchmark variant changes some)."""
    return _digest(read_toml(recipe.path) | recipe.settings)


def study_identity(spec: StudySpec, workload: Workload, replay_fingerprint: str = "") -> dict[str, str]:
    return {
        "model": workload.fingerprint,
        "data": data_fingerprint(workload.calibration, workload.validation.inputs),
        "replay": replay_fingerprint,
        "search_space": _digest(read_toml(spec.search_space.path)),
        "proxies": proxies_digest(spec.proxies),
        "targets": _digest({t.name: read_toml(t.path) for t in spec.targets}),
        "recovery": _digest(spec.recovery),
    }


def layer_fingerprints(model: nn.Module, layers: dict[str, str]) -> dict[str, str]:
    """Per planned layer, a digest of its weight: which layers a model revision left unchanged."""
    modules = dict(model.named_modules())
    found = {}
    for name in layers:
        weight = getattr(modules[name], "weight", None)
        if isinstance(weight, torch.Tensor):
            value = weight.detach().cpu().contiguous()
            found[name] = hashlib.sha256(value.reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()[:16]
    return found


def differing_fields(source: dict[str, str], current: dict[str, str]) -> list[str]:
    return sorted(k for k in set(source) | set(current) if source.get(k) != current.get(k))


def layer_differences(source: dict[str, str], current: dict[str, str]) -> list[str]:
    """Readable differences between two {layer: kind} maps (empty: the same layers)."""
    lines = [f"{name} (only in the source)" for name in sorted(set(source) - set(current))]
    lines += [f"{name} (only in this model)" for name in sorted(set(current) - set(source))]
    lines += [
        f"{name} ({source[name]} in the source, {current[name]} here)"
        for name in sorted(set(source) & set(current))
        if source[name] != current[name]
    ]
    return lines
